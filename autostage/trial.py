"""Run one trial: a stage plan under a stage policy, with an injected trainer and `report`.

Pure Python: imports neither Ray nor torch. The search layer passes Ray's reporting in as
`report`; `autostage trial` passes a printer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from autostage.components import StagePolicy, StageVisit, TrainerRun
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
)
from autostage.keys import TOKENS, eval_metric, train_metric
from autostage.ranking import better
from autostage.records import TrialStatus
from autostage.target import reached_reason, reaches


@dataclass(frozen=True)
class Switch:
    """Where a replayed lineage changes settings: once the trial has trained `tokens`, its
    stages and stage policy become these (what a branch proposed at its branch point)."""

    tokens: int
    stages: Mapping[str, StageVisit]
    policy: StagePolicy
    order: tuple[str, ...] = ()  # the plan from here on; () or the same: the plan so far


@dataclass(frozen=True)
class TrialPlan:
    stages: Mapping[str, StageVisit]  # every stage of the study, by name, as its first visit
    order: tuple[str, ...]  # the planned order; a policy may change it with Advance(to=...)
    policy: StagePolicy
    metric: str
    mode: str
    seed: int = 0
    max_visits: int = 0  # 0: four times the number of planned stages
    switches: tuple[Switch, ...] = ()  # a lineage replayed as one trial (`[[lineage]]`)
    target: float | None = None  # `study.target`: the trial ends at the eval that reaches it


@dataclass
class TrialResult:
    status: TrialStatus  # COMPLETED (its plan, or the target), STOPPED (a policy's Stop), FAILED
    reason: str
    metric: str
    evals: list[Eval] = field(default_factory=list)
    tokens: int = 0

    @property
    def value(self) -> float | None:
        """The study metric at the last eval (None when the trial failed or had no eval)."""
        return self.values([self.metric])[0]

    def values(self, metrics: list[str]) -> list[float | None]:
        """Each metric at the last eval (`tokens`: the tokens trained); None when the trial
        failed or had no eval."""
        if self.status == TrialStatus.FAILED or not self.evals:
            return [None] * len(metrics)
        last = self.evals[-1].current
        return [self.tokens if m == TOKENS else last.get(m) for m in metrics]


Report = Callable[[Eval], None]
Checkpoint = Callable[["LoopState"], None]


@dataclass(frozen=True)
class LoopState:
    """The trial loop's own state at a stage boundary, or at an eval inside a stage visit
    (the trainer saves its own beside it): enough to resume the trial there, or to branch a
    new trial from it."""

    evals: tuple[Eval, ...]
    tokens: int
    lr_scale: float
    queue: tuple[str, ...]
    visits: Mapping[str, int]
    current: str | None = None  # the stage whose visit is under way (None: at a boundary)
    stage_done: int = 0  # tokens that visit has trained

    def to_json(self) -> dict[str, Any]:
        return {"evals": [e.to_json() for e in self.evals], "tokens": self.tokens,
                "lr_scale": self.lr_scale, "queue": list(self.queue),
                "visits": dict(self.visits), "current": self.current,
                "stage_done": self.stage_done}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LoopState:
        return cls(tuple(Eval.from_json(e) for e in data["evals"]), int(data["tokens"]),
                   float(data["lr_scale"]), tuple(data["queue"]), dict(data["visits"]),
                   data.get("current"), int(data.get("stage_done", 0)))


def run_trial(plan: TrialPlan, trainer: TrainerRun, report: Report | None = None,
              checkpoint: Checkpoint | None = None, resume: LoopState | None = None,
              within_final: bool = False) -> TrialResult:
    """Run `plan` to its end, a Stop, or a failure.

    `report(eval)` is called after every eval. At every stage boundary the trial continues
    past, `checkpoint(state)` is called just before that boundary's eval is reported, so a
    caller can attach a checkpoint to the report; with `within_final`, also at every eval of
    the final stage but its last (where a branch may start: `trial_schedulers.Population`).
    `resume` continues from such a state (the trainer must have been restored to it); in the
    middle of a visit the trainer's `continue_stage` is called, not `begin_stage`.
    """
    loop = _Loop(plan, trainer, report or (lambda e: None), checkpoint, within_final)
    if resume is not None:
        loop.restore(resume)
    try:
        status, reason = loop.run()
    except TrialFailed as e:
        status, reason = TrialStatus.FAILED, str(e)
    return TrialResult(status, reason, plan.metric, loop.evals, loop.tokens)


class _Loop:
    def __init__(self, plan: TrialPlan, trainer: TrainerRun, report: Report,
                 checkpoint: Checkpoint | None, within_final: bool) -> None:
        self.plan, self.trainer, self.report, self.checkpoint = plan, trainer, report, checkpoint
        self.within_final = within_final and checkpoint is not None
        self.current: tuple[str, int] | None = None  # a visit to continue: (stage, tokens done)
        self.switches = list(plan.switches)
        self.evals: list[Eval] = []
        self.tokens = 0
        self.lr_scale = 1.0  # product of every ScaleLR / Rewind factor so far
        self.queue = list(plan.order)
        self.visits: Counter[str] = Counter()
        self.max_visits = plan.max_visits or 4 * len(plan.order)
        self.reached = False  # an eval reached the study's target: the trial ends there

    def state(self, within: tuple[str, int] | None = None) -> LoopState:
        current, done = within or (None, 0)
        return LoopState(tuple(self.evals), self.tokens, self.lr_scale, tuple(self.queue),
                         dict(self.visits), current, done)

    def restore(self, state: LoopState) -> None:
        self.evals, self.tokens, self.lr_scale = list(state.evals), state.tokens, state.lr_scale
        self.queue, self.visits = list(state.queue), Counter(state.visits)
        if state.current is not None:
            if state.current not in self.plan.stages:
                raise TrialFailed(f"the checkpoint is inside stage {state.current}, which this "
                                  f"study has not; stages: {', '.join(self.plan.stages)}")
            self.current = (state.current, state.stage_done)

    def run(self) -> tuple[TrialStatus, str]:
        while self.queue or self.current:
            name, done = self.current or (self.queue.pop(0), 0)
            self.current = None
            if not done and sum(self.visits.values()) >= self.max_visits:
                raise TrialFailed(f"stage policy made more than {self.max_visits} stage visits")
            stage = self.plan.stages[name]
            last, decision = self._visit(stage, self.visits[name], done)
            self.visits[name] += 1
            if isinstance(decision, Advance) and decision.to is not None:
                self._jump(decision.to)
            ends = isinstance(decision, Stop) or stage.final or not self.queue
            if not ends and self.checkpoint is not None:
                self.checkpoint(self.state())
            self.report(last)
            self._switch_if_due()  # the next visit begins with the new settings
            if isinstance(decision, Stop):
                return (TrialStatus.COMPLETED if self.reached else TrialStatus.STOPPED,
                        decision.reason)
            if stage.final and isinstance(decision, Advance) and \
                    last.stage_tokens < last.stage_budget:
                # nothing comes after the final stage: an Advance there ends the trial early
                return TrialStatus.STOPPED, (
                    f"the stage policy ended the final stage {name} early (Advance) after "
                    f"{last.stage_tokens:,} of its {last.stage_budget:,} tokens")
            if stage.final:
                break  # the final stage ends the trial, whatever was still planned
        return TrialStatus.COMPLETED, ""

    def _switch_if_due(self) -> bool:
        """Apply the lineage's next switch once the trial has trained its tokens: where the
        branch it replays started, just after the eval it started from."""
        due = False
        while self.switches and self.tokens >= self.switches[0].tokens:
            switch = self.switches.pop(0)
            ran, before = self._ran(), self.plan.order
            self.plan = replace(self.plan, stages=switch.stages, policy=switch.policy,
                                order=switch.order or before)
            if switch.order and switch.order != before and switch.order[:len(ran)] == ran:
                self.queue = list(switch.order[len(ran):])  # the branch chose another rest
            due = True
        return due

    def _ran(self) -> tuple[str, ...]:
        """The stage visits begun so far, in order."""
        return tuple(s for s, _ in dict.fromkeys((e.stage, e.visit) for e in self.evals))

    def _jump(self, to: str) -> None:
        if to not in self.plan.stages:
            raise TrialFailed(f"stage policy advanced to unknown stage '{to}'; stages: "
                              f"{', '.join(self.plan.stages)}")
        if to in self.queue:
            self.queue.remove(to)
        self.queue.insert(0, to)

    def _visit(self, stage: StageVisit, visit: int, done: int) -> tuple[Eval, Decision]:
        """Train one visit of `stage`, from `done` of its tokens (0: from its start). Every
        eval but the last is reported here; the last one and the decision that ended the
        visit are returned, to be reported after the boundary's checkpoint."""
        stage = replace(stage, visit=visit)
        if done:
            _continue_stage(self.trainer, stage)
        else:
            self.trainer.begin_stage(stage)
        rewinds = self.plan.policy.rewinds
        best = self.trainer.snapshot() if rewinds else None
        # a visit continued from a checkpoint rewinds at most to where it continued: to the
        # eval the checkpoint was taken at
        best_eval: Eval | None = self.evals[-1] if done and self.evals else None
        while True:
            ev = self._segment(stage, visit, done)
            done = ev.stage_tokens
            decision = self._at_target(ev) or self.plan.policy.decide(self._history(ev))
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
                        ev = self._restored(best_eval)
                case Advance() | Stop():
                    return self._keep_best(ev, best, best_eval, rewinds), decision
                case _:
                    raise TrialFailed(f"stage policy returned {decision!r}, not a Decision")
            if done >= stage.tokens:
                return self._keep_best(ev, best, best_eval, rewinds), decision
            if self.within_final and stage.final:
                self.checkpoint(self.state((stage.name, done)))
            self.report(ev)
            if self._switch_if_due():  # the rest of this visit runs with the new settings
                stage = replace(self.plan.stages[stage.name], visit=visit)
                _continue_stage(self.trainer, stage)
                # as a branch from here would: the new policy rewinds at most to this eval
                rewinds = self.plan.policy.rewinds
                best, best_eval = (self.trainer.snapshot() if rewinds else None), ev
                continue
            improved = best_eval is None or better(ev.value, best_eval.value, stage.watch_mode)
            if rewinds and not isinstance(decision, Rewind) and improved:
                best, best_eval = self.trainer.snapshot(), ev

    def _at_target(self, ev: Eval) -> Stop | None:
        """A Stop when `ev` reached the study's target: the trial has done what the search
        wanted of it, and every token after would be spent past the goal."""
        p = self.plan
        if not reaches(ev.current.get(p.metric), p.target, p.mode):
            return None
        self.reached = True
        return Stop(reached_reason(p.metric, p.target, p.mode, ev.tokens))

    def _keep_best(self, ev: Eval, best: Any, best_eval: Eval | None, rewinds: bool) -> Eval:
        """A rewinding policy guards against training past the best weights: where a visit
        ends worse than its best eval (an Advance after the last allowed rewind, a Stop, the
        budget spent while overfitting), the visit leaves with the best eval's weights, so
        the next stage, the trial's value and the kept model are theirs."""
        if not rewinds or best_eval is None or best_eval is ev or \
                not better(best_eval.value, ev.value, ev.watch_mode):
            return ev
        self.trainer.restore(best)
        return self._restored(best_eval)

    def _restored(self, best: Eval) -> Eval:
        """The latest eval, marked: the weights are now those `best` was measured at."""
        self.evals[-1] = replace(self.evals[-1], restored=best.current,
                                 restored_from=best.weights_from)
        return self.evals[-1]

    def _segment(self, stage: StageVisit, visit: int, done: int) -> Eval:
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
        metrics = {train_metric(k): float(v) for k, v in result.metrics.items()}
        for source, values in self.trainer.evaluate(stage.evals).items():
            metrics.update({eval_metric(source, k): float(v) for k, v in values.items()})
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


def _continue_stage(trainer: TrainerRun, stage: StageVisit) -> None:
    """Continue a visit part-way: the trainer's `continue_stage` (optional: a trainer whose
    `begin_stage` keeps no state of the visit, like the toy, needs none)."""
    if (go_on := getattr(trainer, "continue_stage", None)) is None:
        raise TrialFailed(f"the trainer ({type(trainer).__name__}) cannot continue stage "
                          f"{stage.name} part-way: it has no continue_stage method")
    go_on(stage)
