"""Branching trials: the checkpoints a new trial may branch from (`BranchPoint`), the
protocol of the rule that picks one (`Brancher`: what a branching trial scheduler's
`branching()` returns, a plugin's to write), and `BranchPoints`, the search's bookkeeping
that feeds a brancher what the trials report. Pure: it imports neither Ray nor Optuna, nor
anything of `autostage.search` (which drives it, in the driver).

Every checkpoint a trial reports (each stage boundary, each eval of the final stage) becomes a
`BranchPoint`. A point's place is the same stage boundary, or the same count of final-stage
evals (as ASHA's rungs): a brancher compares points at one place.

What a branch inherits is what already took effect at the point: the model and trainer, the
init, the stages run so far, the data mixtures of the stages its lineage has visited. What it
may change — its continuation, proposed by the study's sampler — is what acts from the point
on: CONTINUES (optimizer, LR schedule, stage policy, with their settings), the mixtures of
the stage under way and of the stages not visited yet, and at a stage boundary the rest of
the stage plan (`plan.after.<stages run>`, among the allowed plans that begin with them).
The sampler is asked with the inherited parameters fixed (Optuna's `enqueue_trial`), so it
proposes only the continuation, and its record holds both.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from autostage.decisions import Advance, Eval
from autostage.errors import AutostageError
from autostage.keys import PLAN_KEY, key_kind, parse_mix_key
from autostage.ranking import finite
from autostage.records import Branch, TrialRecord, TrialStatus, lineage_evals
from autostage.space import continuations

#: kinds whose choice and settings act from a branch point on: a branch may change them
CONTINUES = ("optimizer", "lr_schedule", "stage_policy")
#: how the error of a branched trial whose branch point would not load (damaged, missing)
#: begins, and so its record's reason: the driver marks that point, now and on --resume, and
#: no other trial is handed it
BRANCH_POINT_FAILED = "cannot branch from trial "


@dataclass(frozen=True)
class BranchPoint:
    """A checkpoint a trial reported, with what a branch from it needs."""

    trial: int
    params: dict[str, Any]  # the trial's parameters: what its lineage ran with
    seed: int  # the seed it trained with (its lineage root's)
    ev: Eval  # the eval the checkpoint was reported with
    evals: int  # the lineage's evals up to it
    final_evals: int  # final-stage evals up to it (0: a boundary before the final stage)
    checkpoint: str  # as the records name it (relative to the checkpoint store)
    path: str  # in the checkpoint store
    visited: tuple[str, ...] = ()  # stages whose mixtures took effect before this point
    done: tuple[str, ...] = ()  # at a stage boundary: the stage visits run, in order
    free_plan: bool = False  # a branch from here may choose the rest of the plan

    @property
    def place(self) -> tuple[str, int]:
        """Points at one place are compared: a stage's boundary, or a final-stage rung."""
        return (self.ev.stage, self.final_evals)

    def inherited(self) -> dict[str, Any]:
        """The parameters a branch from here keeps: all but its continuation."""
        return {k: v for k, v in self.params.items() if not _continues(k, self.visited)
                and not (self.free_plan and k == PLAN_KEY)}

    def branch(self) -> Branch:
        return Branch(self.trial, self.ev.stage, self.ev.tokens, self.evals, self.checkpoint,
                      dict(self.params), self.seed, self.done)


def _continues(key: str, visited: tuple[str, ...]) -> bool:
    if key_kind(key) in CONTINUES:
        return True
    mix = parse_mix_key(key)
    return mix is not None and mix[0] not in visited


def _ends_visit(ev: Eval) -> bool:
    return ev.stage_tokens >= ev.stage_budget or isinstance(ev.decision, Advance)


def _visited(trail: list[tuple[str, int]], ev: Eval) -> tuple[str, ...]:
    """The stages of `trail` (a lineage's evals as (stage, visit), ending with `ev`) whose
    visits had begun before `ev`'s visit, and `ev`'s own stage when `ev` ends its visit."""
    current = (ev.stage, ev.visit)
    return tuple(dict.fromkeys(s for s, v in trail if _ends_visit(ev) or (s, v) != current))


def _done(trail: list[tuple[str, int]], ev: Eval) -> tuple[str, ...]:
    """At a stage boundary, the stage visits `trail` ran, in order; () inside a visit."""
    return tuple(s for s, _ in dict.fromkeys(trail)) if _ends_visit(ev) else ()


class Brancher(ABC):
    """Decides which checkpoint a new trial starts from, if any: the rule of a branching
    trial scheduler (`TrialScheduler.branching(metric, mode)` returns one), in the driver.

    It owns its rule and what it keeps of the points it saw. The search keeps the rest — the
    lineages, which checkpoints were deleted or failed to load — and asks through `usable`.
    """

    @abstractmethod
    def see(self, point: BranchPoint) -> None:
        """Called when a trial reports a checkpoint whose study metric is a number (every
        stage boundary, every final-stage eval), as the reports arrive; on --resume, first
        for every point the run's records hold. Returns nothing."""

    @abstractmethod
    def propose(self, usable: Callable[[BranchPoint], bool],
                rng: random.Random) -> BranchPoint | None:
        """Called before each new trial is sampled: the point it branches from — one this
        brancher saw, for which `usable(point)` holds (its checkpoint is there, no branch
        failed to load it, no retry of its trial went back before it) — or None: the trial
        is fresh, sampled whole. Draw any randomness from `rng` (the search seeds it)."""

    @abstractmethod
    def wanted(self) -> Iterable[BranchPoint]:
        """Called when an ended trial's checkpoints may be deleted (`study.keep_checkpoints =
        "needed"`): the points it may still propose. The others' checkpoints are deleted, and
        are never usable again."""

    def forget(self, points: list[BranchPoint]) -> None:  # noqa: B027 (optional hook)
        """Called when `points` are no longer their trial's: a retry went back before them
        (they are unusable from now on). Default: nothing (`usable` filters them out)."""


class BranchPoints:
    """The branch points of one search, fed to its brancher: what the driver hears of the
    trials becomes points, and the brancher's proposals are only ever usable ones."""

    def __init__(self, brancher: Brancher, metric: str, seed: int,
                 plans: tuple[str, ...] = ()) -> None:
        self.brancher, self.metric, self.plans = brancher, metric, plans
        self.rng = random.Random(seed)
        self.points: list[BranchPoint] = []  # every one the brancher saw: deleted ones too
        self.gone: set[str] = set()  # paths of points whose checkpoint was deleted
        self.refused: set[str] = set()  # paths of points a branch failed to load (damaged)
        # points no longer their trial's (a retry went back before them; it reports new ones
        # at the same evals): by identity, each kept so its id stays its own
        self.forgotten: dict[int, BranchPoint] = {}
        self.trails: dict[int, list[tuple[str, int]]] = {}  # trial -> its lineage's evals

    # --- what the driver hears -------------------------------------------------------------

    def started(self, number: int, branch: Branch | None) -> None:
        """Trial `number` started (a retry too): a branch's lineage begins with its parent's
        evals up to the branch point."""
        if number in self.trails:
            return
        if branch is None:
            self.trails[number] = []
            return
        before = self.trails.get(branch.parent, [])[:branch.evals]
        self.trails[number] = before + [("", -1)] * (branch.evals - len(before))

    def saw(self, number: int, ev: Eval, *, index: int | None = None,
            params: dict[str, Any] | None = None, seed: int = 0, final_evals: int = 0,
            checkpoint: str | None = None, path: str | None = None) -> None:
        """Trial `number` reported `ev` (in order), its lineage's eval `index` (1-based),
        with a checkpoint or not."""
        trail = self.trails.setdefault(number, [])
        if index is not None and len(trail) < index - 1:  # never heard of: keep the count
            trail += [("", -1)] * (index - 1 - len(trail))
        trail.append((ev.stage, ev.visit))
        if checkpoint and path:
            done = _done(trail, ev)
            free = len(continuations(self.plans, done)) > 1 if done else False
            self.note(BranchPoint(number, dict(params or {}), seed, ev, len(trail), final_evals,
                                  checkpoint, path, _visited(trail, ev), done, free))

    def note(self, point: BranchPoint) -> None:
        """A point to branch from, unless its metric is not a number."""
        if finite(point.ev.current.get(self.metric)) is not None:
            self.points.append(point)
            self.brancher.see(point)

    def forget_after(self, number: int, evals: int) -> None:
        """A retry of trial `number` goes on from its lineage's eval `evals`: what came
        after it (the replayed evals, a checkpoint the retry refused) is not its any more."""
        if number in self.trails:
            del self.trails[number][evals:]
        dropped = [p for p in self.points if p.trial == number and p.evals > evals]
        if dropped:
            self.points = [p for p in self.points if p not in dropped]
            self.forgotten.update((id(p), p) for p in dropped)
            self.brancher.forget(dropped)

    def note_records(self, records: list[TrialRecord], final: str | None, path_of: Any,
                     missing: Any) -> None:
        """The points of an earlier session's trials (a resumed search): each eval its
        records hold a checkpoint of, unless that checkpoint is gone or a branch failed to
        load it. `path_of(checkpoint)`: its path in the store (`CheckpointStore.resolve`);
        `missing(paths)`: those of `paths` not in it."""
        by_number = {r.number: r for r in records}
        for record in records:
            lineage = lineage_evals(record, by_number)
            own = len(lineage) - len(record.evals)
            self.trails[record.number] = [(e.eval.stage, e.eval.visit) for e in lineage[:own]]
            for e in lineage[own:]:
                in_final = final is None or e.eval.stage == final
                finals = 1 + sum(final is None or s == final
                                 for s, _ in self.trails[record.number]) if in_final else 0
                self.saw(record.number, e.eval, params=dict(record.config),
                         seed=record.seed or 0, final_evals=finals, checkpoint=e.checkpoint,
                         path=path_of(e.checkpoint) if e.checkpoint else None)
            if _failed_to_load(record):
                self.refused.add(path_of(record.branch.checkpoint))
        self.gone |= missing([p.path for p in self.points])

    def refuse(self, path: str) -> None:
        """A branch could not load the point at `path` (its checkpoint is damaged or
        missing): it is never handed out again."""
        self.refused.add(path)

    # --- what the searcher and the retention ask -------------------------------------------

    def usable(self, point: BranchPoint) -> bool:
        """Whether a branch may start at `point`: its checkpoint is there, none failed to
        load it, and it is still its trial's."""
        return point.path not in self.gone and point.path not in self.refused and \
            self.forgotten.get(id(point)) is not point

    def propose(self) -> BranchPoint | None:
        """The point a new trial branches from; None: it is fresh."""
        point = self.brancher.propose(self.usable, self.rng)
        if point is not None and not self.usable(point):
            raise AutostageError(
                f"brancher {type(self.brancher).__name__} proposed trial {point.trial}'s "
                f"checkpoint {point.checkpoint}, which usable() refused (deleted, damaged, or "
                "no longer its trial's); a brancher proposes only points it saw that usable() "
                "accepts (autostage.testing.BrancherContract checks it)")
        return point

    def wanted(self) -> set[str]:
        """Paths of the points the brancher may still propose: their checkpoints stay."""
        return {p.path for p in self.brancher.wanted()}


def _failed_to_load(record: TrialRecord) -> bool:
    """An earlier session's branch that failed because its branch point would not load."""
    return record.branch is not None and record.status == TrialStatus.FAILED and \
        record.reason.startswith(BRANCH_POINT_FAILED)
