"""What a stage policy sees (the history) and what it may decide. Pure data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from autostage.ranking import better


class TrialFailed(Exception):
    """A trial cannot go on (non-finite loss, diverged model); the message is the reason."""


@dataclass(frozen=True)
class Continue:
    """Keep training the current stage."""


@dataclass(frozen=True)
class ScaleLR:
    """Multiply the learning rate by `factor` from now on (kept across stages)."""

    factor: float


@dataclass(frozen=True)
class Advance:
    """End the current stage now; run `to` next (a stage name), or the next planned stage."""

    to: str | None = None


@dataclass(frozen=True)
class Rewind:
    """Restore the best snapshot of the current stage, then multiply the LR by `lr_factor`."""

    lr_factor: float = 1.0


@dataclass(frozen=True)
class Stop:
    """End the trial now (not a failure): `reason` is recorded."""

    reason: str


Decision = Continue | ScaleLR | Advance | Rewind | Stop


def describe(decision: Decision) -> str:
    """A short human label, used in logs and the report."""
    match decision:
        case Continue():
            return "continue"
        case ScaleLR(factor=f):
            return f"scale_lr x{f:g}"
        case Advance(to=None):
            return "advance"
        case Advance(to=to):
            return f"advance to {to}"
        case Rewind(lr_factor=f):
            return "rewind" if f == 1.0 else f"rewind, lr x{f:g}"
        case Stop(reason=r):
            return f"stop: {r}"
    raise TypeError(f"not a decision: {decision!r}")


_DECISIONS = {cls.__name__: cls for cls in (Continue, ScaleLR, Advance, Rewind, Stop)}


def decision_to_json(decision: Decision) -> dict:
    return {"type": type(decision).__name__, **asdict(decision)}


def decision_from_json(data: Mapping) -> Decision:
    fields = {k: v for k, v in data.items() if k != "type"}
    return _DECISIONS[data["type"]](**fields)


@dataclass(frozen=True)
class Eval:
    """One evaluation point of a trial."""

    stage: str
    visit: int  # 0 for the first time this stage runs, 1 for a repeat, ...
    tokens: int  # training tokens of the whole trial so far
    stage_tokens: int  # training tokens of this stage visit so far
    stage_budget: int  # the visit's token budget
    lr: float  # learning rate at the end of the segment
    metrics: Mapping[str, float]  # "eval.<source>.<metric>" and "train.<metric>"
    watch: str  # the metric this stage is judged by: the study's, or the stage's own data
    watch_mode: str = "min"  # whether the watched metric is better "min" or "max"
    decision: Decision | None = None  # filled in once the policy has decided
    # After a Rewind, or where a rewinding policy ends a visit past its best eval: the metrics
    # of the weights the trial goes on with (the restored best eval's), and that eval's
    # `tokens`. `metrics` stays what was measured, so the regression that caused it shows.
    restored: Mapping[str, float] | None = None
    restored_from: int | None = None

    @property
    def current(self) -> Mapping[str, float]:
        """The metrics of the weights after this eval: `restored` after a Rewind, else
        `metrics`. A trial's value, and what trial schedulers see, come from here."""
        return self.restored if self.restored is not None else self.metrics

    @property
    def value(self) -> float:
        """The watched metric's value, for the weights after this eval."""
        return self.current[self.watch]

    @property
    def weights_from(self) -> int | None:
        """The `tokens` of the eval whose weights the trial has after this one: its own, or
        the restored eval's (None: restored by a version that did not record which)."""
        return self.tokens if self.restored is None else self.restored_from

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, the decision structured: `{"type": "ScaleLR", "factor": 0.5}`."""
        data = asdict(self)
        data["metrics"] = dict(self.metrics)
        data["restored"] = dict(self.restored) if self.restored is not None else None
        data["decision"] = decision_to_json(self.decision) if self.decision else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Eval:
        """The inverse of `to_json`; keys it does not know are ignored (newer writers)."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        decision = known.get("decision")
        known["decision"] = decision_from_json(decision) if decision else None
        known["metrics"] = dict(known.get("metrics") or {})
        if known.get("restored") is not None:
            known["restored"] = dict(known["restored"])
        return cls(**known)


@dataclass(frozen=True)
class History:
    """Everything a stage policy may read: evals so far, the metric, what is still planned."""

    evals: tuple[Eval, ...]
    metric: str  # the study's primary metric, e.g. "eval.target.loss"
    mode: str  # "min" or "max"
    stages: tuple[str, ...]  # every stage of the study, in declared order
    remaining: tuple[str, ...]  # stages planned after the current one
    final: str | None  # the final stage, if the study pins one
    seed: int = 0
    max_visits: int = 0  # stage visits the trial loop allows before it fails the trial

    @property
    def last(self) -> Eval:
        return self.evals[-1]

    @property
    def stage(self) -> str:
        return self.evals[-1].stage

    def current_visit(self) -> tuple[Eval, ...]:
        """Evals of the stage visit now running."""
        last = self.evals[-1]
        start = len(self.evals)
        while start > 0 and (self.evals[start - 1].stage, self.evals[start - 1].visit) == (
            last.stage,
            last.visit,
        ):
            start -= 1
        return self.evals[start:]

    def better(self, a: float, b: float) -> bool:
        """True when watched value `a` is better than `b` (the current stage's watch mode)."""
        return better(a, b, self.evals[-1].watch_mode)
