"""Built-in LR schedules: pure multipliers of the peak LR over one stage visit's progress.

`multiplier(done, total)` counts tokens of the current stage visit: the trial loop restarts
`done` at 0 whenever a stage visit starts. So a `warmup` re-warms at every stage visit, the
re-warm + re-decay that continued pretraining needs (Gupta et al. 2023; Ibrahim et al. 2024);
`warmup = 0` starts every visit at the peak. Progress is a fraction of the stage, never a
step count, so one setting fits stages of any length. `done` may pass `total` by part of a
batch (trainers round up to whole batches): every schedule holds its end value there.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from autostage.components import LRSchedule
from autostage.hookspecs import hookimpl

Shape = Literal["linear", "1-sqrt", "cosine"]


def _warmup_field(default: float) -> Any:
    return Field(default, ge=0, le=0.5, description="fraction of the stage spent warming up")


def _warmup(done: int, total: int, warmup: float) -> float | None:
    """The warmup multiplier while warming up, else None."""
    steps = warmup * total
    if steps > 0 and done < steps:
        return (done + 1) / (steps + 1)
    return None


def _after_warmup(done: int, total: int, warmup: float) -> float:
    """Progress through the part of the stage after the warmup, from 0 to 1."""
    start = warmup * total
    return min(1.0, max(0.0, done - start) / max(1.0, total - start))


def _anneal(start: float, end: float, frac: float, shape: Shape = "cosine") -> float:
    """From `start` (frac 0) to `end` (frac 1) along `shape`."""
    if shape == "linear":
        down = frac
    elif shape == "1-sqrt":
        down = math.sqrt(frac)
    else:
        down = 0.5 * (1.0 - math.cos(math.pi * frac))
    return start + (end - start) * down


class Constant(LRSchedule):
    """The peak LR throughout (after an optional linear warmup)."""

    warmup: float = _warmup_field(0.0)

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        return 1.0 if w is None else w


class Linear(LRSchedule):
    """Linear warmup, then a linear decay to `min_ratio` of the peak at the stage's end."""

    warmup: float = _warmup_field(0.05)
    min_ratio: float = Field(0.0, ge=0, le=1)

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        return _anneal(1.0, self.min_ratio, _after_warmup(done, total, self.warmup), "linear")


class Cosine(LRSchedule):
    """Linear warmup, then a half cosine down to `min_ratio` of the peak at the stage's end."""

    warmup: float = _warmup_field(0.05)
    min_ratio: float = Field(0.1, ge=0, le=1, description="~1/10 of the peak, per Chinchilla")

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        return _anneal(1.0, self.min_ratio, _after_warmup(done, total, self.warmup))


class WSD(LRSchedule):
    """Warmup-stable-decay: flat at the peak, decaying only in the last `decay` fraction.

    Suits stages whose length a stage policy decides online (MiniCPM 2024; Hägele 2024 found a
    (1 - sqrt) cooldown better than linear).
    """

    warmup: float = _warmup_field(0.02)
    decay: float = Field(0.2, gt=0, le=1, description="fraction of the stage spent decaying")
    shape: Shape = "1-sqrt"
    min_ratio: float = Field(0.0, ge=0, le=1)

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        decay_start = (1.0 - self.decay) * total
        if done < decay_start:
            return 1.0
        frac = min(1.0, (done - decay_start) / max(1.0, total - decay_start))
        return _anneal(1.0, self.min_ratio, frac, self.shape)


class OneCycle(LRSchedule):
    """One cycle (Smith & Topin 2019): up from `start_ratio` to the peak at fraction `peak` of
    the stage, then down to `end_ratio`, both halves cosine (torch's OneCycleLR defaults:
    start at peak / 25, end near zero)."""

    peak: float = Field(0.3, gt=0, lt=1, description="fraction of the stage where the LR peaks")
    start_ratio: float = Field(0.04, ge=0, le=1, description="multiplier at the stage's start")
    end_ratio: float = Field(0.0, ge=0, le=1, description="multiplier at the stage's end")

    def multiplier(self, done: int, total: int) -> float:
        top = self.peak * total
        if done < top:
            return _anneal(self.start_ratio, 1.0, done / top)
        return _anneal(1.0, self.end_ratio, min(1.0, (done - top) / max(1.0, total - top)))


class Step(LRSchedule):
    """Multiply the LR by `gamma` each time another `every` fraction of the stage is done
    (torch's StepLR, in stage fractions so one setting fits any stage length)."""

    warmup: float = _warmup_field(0.0)
    every: float = Field(0.3, gt=0, le=1, description="fraction of the stage between drops")
    gamma: float = Field(0.3, gt=0, lt=1, description="LR multiplier per drop")

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        # the small epsilon keeps 0.6 / 0.3 from rounding down to 1.999...
        drops = math.floor(min(done, total) / (self.every * total) + 1e-9)
        return self.gamma**drops


class Exponential(LRSchedule):
    """Decay by the same factor per token, to `min_ratio` of the peak at the stage's end
    (torch's ExponentialLR, its per-step gamma set by the stage's length)."""

    warmup: float = _warmup_field(0.0)
    min_ratio: float = Field(0.1, gt=0, le=1, description="multiplier at the stage's end")

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        return self.min_ratio ** _after_warmup(done, total, self.warmup)


class InverseSqrt(LRSchedule):
    """Linear warmup, then the LR falls as one over the square root of the tokens since
    (1 / sqrt(1 + t / timescale)); with `timescale == warmup` this is the Transformer's
    sqrt(warmup / step) (Vaswani et al. 2017). It never reaches zero: no planned end."""

    warmup: float = _warmup_field(0.05)
    timescale: float = Field(0.05, gt=0, le=1, description="fraction of the stage after which "
                             "the LR is 1/sqrt(2) of the peak")

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        since = min(done, total) - self.warmup * total
        return 1.0 / math.sqrt(1.0 + max(0.0, since) / (self.timescale * total))


@hookimpl
def register_lr_schedules(register):
    register("constant", Constant)
    register("linear", Linear)
    register("cosine", Cosine)
    register("wsd", WSD)
    register("one_cycle", OneCycle)
    register("step", Step)
    register("exponential", Exponential)
    register("inverse_sqrt", InverseSqrt)
