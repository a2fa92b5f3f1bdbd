"""Branching trials, in the driver: the checkpoints a new trial may branch from, which one it
branches from, and what it inherits there.

A trial scheduler whose `branching()` gives a `Branching` turns this on. Every checkpoint a
trial reports (each stage boundary, each eval of the final stage) becomes a `BranchPoint`.
Points are compared with the others at the same place — the same stage boundary, or the same
count of final-stage evals, as ASHA's rungs — by the study's (first) metric there. A new
trial is fresh with probability `fresh`; otherwise it branches from a point drawn uniformly
from the top `quantile` of a place holding at least two points.

What a branch inherits is what already took effect at the point: the model and trainer, the
init, the stage plan, the data mixtures of the stages the plan had finished. What it may
change — its continuation, proposed by the study's sampler — is what acts from the point on:
CONTINUES (optimizer, LR schedule, stage policy, with their settings) and the mixtures of
the current and later stages. The sampler is asked with the inherited parameters fixed
(Optuna's `enqueue_trial`), so it proposes only the continuation, and its record holds both.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from autostage.components import Branching
from autostage.decisions import Advance, Eval
from autostage.keys import PLAN_KEY, key_kind, parse_mix_key, split_plan
from autostage.ranking import better, finite
from autostage.records import Branch, TrialRecord, lineage_evals

#: kinds whose choice and settings act from a branch point on: a branch may change them
CONTINUES = ("optimizer", "lr_schedule", "stage_policy")


@dataclass(frozen=True)
class BranchPoint:
    """A checkpoint a trial reported, with what a branch from it needs."""

    trial: int
    params: dict[str, Any]  # the trial's parameters: what its lineage ran with
    seed: int
    ev: Eval  # the eval the checkpoint was reported with
    evals: int  # the lineage's evals up to it
    final_evals: int  # final-stage evals up to it (0: a boundary before the final stage)
    checkpoint: str  # as a user names it (the record's)
    path: str  # in the checkpoint store

    @property
    def place(self) -> tuple[str, int]:
        """Points at one place are compared: a stage's boundary, or a final-stage rung."""
        return (self.ev.stage, self.final_evals)

    def finished(self) -> tuple[str, ...]:
        """The stages of the plan whose visits ended by this point (their mixtures took
        effect wholly)."""
        plan = split_plan(str(self.params.get(PLAN_KEY, "")))
        if self.ev.stage not in plan:
            return ()
        boundary = self.ev.stage_tokens >= self.ev.stage_budget or \
            isinstance(self.ev.decision, Advance)
        return plan[:plan.index(self.ev.stage) + boundary]

    def inherited(self) -> dict[str, Any]:
        """The parameters a branch from here keeps: all but its continuation."""
        done = self.finished()
        return {k: v for k, v in self.params.items() if not _continues(k, done)}

    def branch(self) -> Branch:
        return Branch(self.trial, self.ev.stage, self.ev.tokens, self.evals, self.checkpoint,
                      dict(self.params), self.seed)


def _continues(key: str, finished: tuple[str, ...]) -> bool:
    if key_kind(key) in CONTINUES:
        return True
    mix = parse_mix_key(key)
    return mix is not None and mix[0] not in finished


class Population:
    """The branch points of one search, and the draw of a new trial's parent."""

    def __init__(self, rule: Branching, metric: str, mode: str, seed: int) -> None:
        self.rule, self.metric, self.mode = rule, metric, mode
        self.rng = random.Random(seed)
        self.points: list[BranchPoint] = []  # every one, for ranking: deleted ones too
        self.gone: set[str] = set()  # paths of points whose checkpoint was deleted

    def note(self, point: BranchPoint) -> None:
        if finite(point.ev.current.get(self.metric)) is not None:
            self.points.append(point)

    def note_records(self, records: list[TrialRecord], final: str | None, path_of: Any,
                     seed_of: Any) -> None:
        """The points of an earlier session's trials (a resumed search): each eval its
        records hold a checkpoint of. `path_of(checkpoint)`: its path in the store."""
        by_number = {r.number: r for r in records}
        for record in records:
            lineage = lineage_evals(record, by_number)
            own = len(lineage) - len(record.evals)
            for i, e in enumerate(lineage[own:], start=own):
                if e.checkpoint:
                    finals = sum(final is None or x.eval.stage == final
                                 for x in lineage[:i + 1])
                    self.note(BranchPoint(record.number, dict(record.config),
                                          seed_of(record.number), e.eval, i + 1, finals,
                                          e.checkpoint, path_of(e.checkpoint)))

    def propose(self) -> BranchPoint | None:
        """The point a new trial branches from; None: it is fresh."""
        if self.rng.random() < self.rule.fresh:
            return None
        candidates = [p for p in self._top() if p.path not in self.gone]
        return self.rng.choice(candidates) if candidates else None

    def wanted(self) -> set[str]:
        """Paths of the points a new trial may still branch from: the top quantile at each
        place, and every point of a place with nothing to compare it with yet."""
        alone = [p for group in self._places().values() if len(group) < 2 for p in group]
        return {p.path for p in [*self._top(), *alone]}

    def _top(self) -> list[BranchPoint]:
        """The top quantile of every place holding at least two points."""
        top = []
        for group in self._places().values():
            if len(group) < 2:
                continue  # nothing to compare it with
            ranked = _ranked(group, self.metric, self.mode)
            top += ranked[:max(1, int(self.rule.quantile * len(ranked)))]
        return top

    def _places(self) -> dict[tuple[str, int], list[BranchPoint]]:
        places: dict[tuple[str, int], list[BranchPoint]] = defaultdict(list)
        for p in self.points:
            places[p.place].append(p)
        return places


def _ranked(points: list[BranchPoint], metric: str, mode: str) -> list[BranchPoint]:
    import functools

    def order(a: BranchPoint, b: BranchPoint) -> int:
        x, y = a.ev.current[metric], b.ev.current[metric]
        return -1 if better(x, y, mode) else (1 if better(y, x, mode) else 0)

    return sorted(points, key=functools.cmp_to_key(order))
