"""Built-in LR schedules: pure multipliers of the peak LR over one stage's progress."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from autostage.components import LRSchedule
from autostage.hookspecs import hookimpl


def _warmup(done: int, total: int, warmup: float) -> float | None:
    """The warmup multiplier while warming up, else None."""
    steps = warmup * total
    if steps > 0 and done < steps:
        return (done + 1) / (steps + 1)
    return None


class Constant(LRSchedule):
    """The peak LR throughout (after an optional linear warmup)."""

    warmup: float = Field(0.0, ge=0, le=0.5, description="fraction of the stage spent warming up")

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        return 1.0 if w is None else w


class Linear(LRSchedule):
    """Linear warmup, then a linear decay to `min_ratio` of the peak at the stage's end."""

    warmup: float = Field(0.05, ge=0, le=0.5)
    min_ratio: float = Field(0.0, ge=0, le=1)

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        start = self.warmup * total
        frac = min(1.0, (done - start) / max(1.0, total - start))
        return 1.0 - (1.0 - self.min_ratio) * frac


class Cosine(LRSchedule):
    """Linear warmup, then a half cosine down to `min_ratio` of the peak at the stage's end."""

    warmup: float = Field(0.05, ge=0, le=0.5)
    min_ratio: float = Field(0.1, ge=0, le=1, description="~1/10 of the peak, per Chinchilla")

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        start = self.warmup * total
        frac = min(1.0, (done - start) / max(1.0, total - start))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


class WSD(LRSchedule):
    """Warmup-stable-decay: flat at the peak, decaying only in the last `decay` fraction.

    Suits stages whose length a stage policy decides online (MiniCPM 2024; Hägele 2024 found a
    (1 - sqrt) cooldown better than linear).
    """

    warmup: float = Field(0.02, ge=0, le=0.5)
    decay: float = Field(0.2, gt=0, le=1, description="fraction of the stage spent decaying")
    shape: Literal["linear", "1-sqrt", "cosine"] = "1-sqrt"
    min_ratio: float = Field(0.0, ge=0, le=1)

    def multiplier(self, done: int, total: int) -> float:
        w = _warmup(done, total, self.warmup)
        if w is not None:
            return w
        decay_start = (1.0 - self.decay) * total
        if done < decay_start:
            return 1.0
        frac = min(1.0, (done - decay_start) / max(1.0, total - decay_start))
        if self.shape == "linear":
            down = frac
        elif self.shape == "1-sqrt":
            down = math.sqrt(frac)
        else:
            down = 0.5 * (1.0 - math.cos(math.pi * frac))
        return 1.0 - (1.0 - self.min_ratio) * down


@hookimpl
def register_lr_schedules(register):
    register("constant", Constant)
    register("linear", Linear)
    register("cosine", Cosine)
    register("wsd", WSD)
