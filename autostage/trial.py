"""Run one trial: a stage plan under a stage policy, with an injected trainer and `report`.

Pure Python: imports neither Ray nor torch. The search layer passes Ray's reporting in as
`report`; `autostage trial` passes a printer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from autostage.components import LRSchedule, Optimizer, StagePolicy, StageRun, TrainerRun
from autostage.decisions import (
    Advance,
    Continue,
    Decision,
    Eval,
    History,
    Rewind,
    ScaleLR,
    Stop,
    TrialFailed,
    decision_from_json,
    decision_to_json,
    describe,
)


@dataclass(frozen=True)
class StagePlan:
    """A stage with its components resolved: what one visit of it runs."""

    name: str
    objective: str
    mix: Mapping[str, float]
    tokens: int
    eval_every: int
    evals: tuple[str, ...]
    watch: str  # metric the policy judges this stage by
    watch_mode: str  # "min" or "max"
    optimizer: Optimizer
    lr_schedule: LRSchedule
    final: bool = False


@dataclass(frozen=True)
class TrialPlan:
    stages: Mapping[str, StagePlan]  # every stage of the study, by name
    order: tuple[str, ...]  # the planned order; a policy may change it with Advance(to=...)
    policy: StagePolicy
    metric: str
    mode: str
    seed: int = 0
    max_visits: int = 0  # 0: four times the number of planned stages


@dataclass
class TrialResult:
    status: str  # "completed", "stopped" (a policy's Stop) or "failed"
    reason: str
    metric: str
    evals: list[Eval] = field(default_factory=list)
    tokens: int = 0

    @property
    def value(self) -> float | None:
        """The study metric at the last eval (None when the trial failed or had no eval)."""
        if self.status == "failed" or not self.evals:
            return None
        return self.evals[-1].metrics.get(self.metric)


Report = Callable[[Eval], None]
Checkpoint = Callable[["LoopState"], None]


@dataclass(frozen=True)
class LoopState:
    """The trial loop's own state at a stage boundary (the trainer saves its own beside it):
    enough to resume the trial there, or to branch a new trial from it."""

    evals: tuple[Eval, ...]
    tokens: int
    lr_scale: float
    queue: tuple[str, ...]
    visits: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"evals": [eval_to_json(e) for e in self.evals], "tokens": self.tokens,
                "lr_scale": self.lr_scale, "queue": list(self.queue),
                "visits": dict(self.visits)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopState:
        return cls(tuple(eval_from_json(e) for e in data["evals"]), int(data["tokens"]),
                   float(data["lr_scale"]), tuple(data["queue"]), dict(data["visits"]))


def run_trial(plan: TrialPlan, trainer: TrainerRun, report: Report | None = None,
              checkpoint: Checkpoint | None = None, resume: LoopState | None = None
              ) -> TrialResult:
    """Run `plan` to its end, a Stop, or a failure.

    `report(eval)` is called after every eval. At every stage boundary the trial continues
    past, `checkpoint(state)` is called just before that boundary's eval is reported, so a
    caller can attach a checkpoint to the report. `resume` continues from such a state (the
    trainer must have been restored to the same boundary).
    """
    loop = _Loop(plan, trainer, report or (lambda e: None), checkpoint)
    if resume is not None:
        loop.restore(resume)
    try:
        status, reason = loop.run()
    except TrialFailed as e:
        status, reason = "failed", str(e)
    return TrialResult(status, reason, plan.metric, loop.evals, loop.tokens)


class _Loop:
    def __init__(self, plan: TrialPlan, trainer: TrainerRun, report: Report,
                 checkpoint: Checkpoint | None) -> None:
        self.plan, self.trainer, self.report, self.checkpoint = plan, trainer, report, checkpoint
        self.evals: list[Eval] = []
        self.tokens = 0
        self.lr_scale = 1.0  # product of every ScaleLR / Rewind factor so far
        self.queue = list(plan.order)
        self.visits: Counter[str] = Counter()
        self.max_visits = plan.max_visits or 4 * len(plan.order)

    def state(self) -> LoopState:
        return LoopState(tuple(self.evals), self.tokens, self.lr_scale, tuple(self.queue),
                         dict(self.visits))

    def restore(self, state: LoopState) -> None:
        self.evals, self.tokens, self.lr_scale = list(state.evals), state.tokens, state.lr_scale
        self.queue, self.visits = list(state.queue), Counter(state.visits)

    def run(self) -> tuple[str, str]:
        while self.queue:
            name = self.queue.pop(0)
            if sum(self.visits.values()) >= self.max_visits:
                raise TrialFailed(f"stage policy made more than {self.max_visits} stage visits")
            stage = self.plan.stages[name]
            last, decision = self._visit(stage, self.visits[name])
            self.visits[name] += 1
            if isinstance(decision, Advance) and decision.to is not None:
                self._jump(decision.to)
            ends = isinstance(decision, Stop) or stage.final or not self.queue
            if not ends and self.checkpoint is not None:
                self.checkpoint(self.state())
            self.report(last)
            if isinstance(decision, Stop):
                return "stopped", decision.reason
            if stage.final:
                break  # the final stage ends the trial, whatever was still planned
        return "completed", ""

    def _jump(self, to: str) -> None:
        if to not in self.plan.stages:
            raise TrialFailed(f"stage policy advanced to unknown stage '{to}'; stages: "
                              f"{', '.join(self.plan.stages)}")
        if to in self.queue:
            self.queue.remove(to)
        self.queue.insert(0, to)

    def _visit(self, stage: StagePlan, visit: int) -> tuple[Eval, Decision]:
        """Train one visit of `stage`. Every eval but the last is reported here; the last one
        and the decision that ended the visit are returned, to be reported after the
        boundary's checkpoint."""
        self.trainer.begin_stage(StageRun(
            name=stage.name, objective=stage.objective, mix=stage.mix, tokens=stage.tokens,
            eval_every=stage.eval_every, evals=stage.evals, optimizer=stage.optimizer,
            lr_schedule=stage.lr_schedule, visit=visit, final=stage.final,
        ))
        rewinds = self.plan.policy.rewinds
        best = self.trainer.snapshot() if rewinds else None
        best_eval: Eval | None = None
        done = 0
        while True:
            ev = self._segment(stage, visit, done)
            done = ev.stage_tokens
            decision = self.plan.policy.decide(self._history(ev))
            ev = replace(ev, decision=decision)
            self.evals.append(ev)
            match decision:
                case Continue():
                    pass
                case ScaleLR(factor=f):
                    self.lr_scale *= f
                case Rewind(lr_factor=f):
                    self.trainer.restore(best)
                    self.lr_scale *= f
                    if best_eval is not None:  # the weights are the best eval's again
                        ev = replace(ev, metrics=best_eval.metrics)
                        self.evals[-1] = ev
                case Advance() | Stop():
                    return ev, decision
                case _:
                    raise TrialFailed(f"stage policy returned {decision!r}, not a Decision")
            if done >= stage.tokens:
                return ev, decision
            self.report(ev)
            improved = best_eval is None or _better(ev.value, best_eval.value, stage)
            if rewinds and not isinstance(decision, Rewind) and improved:
                best, best_eval = self.trainer.snapshot(), ev

    def _segment(self, stage: StagePlan, visit: int, done: int) -> Eval:
        """Train up to the next eval, evaluate, and return the (undecided) eval."""
        tokens = min(stage.eval_every, stage.tokens - done)
        peak, scale, schedule, start = stage.optimizer.lr, self.lr_scale, stage.lr_schedule, done

        def lr(t: int) -> float:
            return peak * scale * schedule.multiplier(start + t, stage.tokens)

        result = self.trainer.train(tokens, lr)
        if result.tokens <= 0:
            raise TrialFailed(f"the trainer trained no tokens at stage {stage.name}")
        done = start + result.tokens
        self.tokens += result.tokens
        metrics = {f"train.{k}": float(v) for k, v in result.metrics.items()}
        for source, values in self.trainer.evaluate(stage.evals).items():
            metrics.update({f"eval.{source}.{k}": float(v) for k, v in values.items()})
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise TrialFailed(f"non-finite {bad[0]} at stage {stage.name}, "
                              f"after {self.tokens} tokens")
        if stage.watch not in metrics:
            raise TrialFailed(f"stage {stage.name} watches {stage.watch}, which the trainer "
                              f"did not report; it reported: {', '.join(sorted(metrics))}")
        return Eval(
            stage=stage.name, visit=visit, tokens=self.tokens, stage_tokens=done,
            stage_budget=stage.tokens, lr=lr(result.tokens), metrics=metrics,
            watch=stage.watch, watch_mode=stage.watch_mode,
        )

    def _history(self, latest: Eval) -> History:
        return History(
            evals=(*self.evals, latest), metric=self.plan.metric, mode=self.plan.mode,
            stages=tuple(self.plan.stages), remaining=tuple(self.queue),
            final=next((s.name for s in self.plan.stages.values() if s.final), None),
            seed=self.plan.seed, max_visits=self.max_visits,
        )


def _better(a: float, b: float, stage: StagePlan) -> bool:
    return a < b if stage.watch_mode == "min" else a > b


def eval_to_json(ev: Eval) -> dict[str, Any]:
    data = asdict(ev)
    data["decision"] = decision_to_json(ev.decision) if ev.decision is not None else None
    return data


def eval_from_json(data: Mapping[str, Any]) -> Eval:
    decision = data.get("decision")
    return Eval(**{**data, "decision": decision_from_json(decision) if decision else None})


def eval_record(ev: Eval) -> dict[str, Any]:
    """A flat, JSON-ready view of an eval: what search reports and run records store."""
    return {
        "stage": ev.stage, "visit": ev.visit, "tokens": ev.tokens,
        "stage_tokens": ev.stage_tokens, "lr": ev.lr, **dict(ev.metrics),
        "decision": describe(ev.decision) if ev.decision is not None else "",
    }
