"""Which checkpoints a search keeps (`study.keep_checkpoints`), in the driver.

A running trial keeps all of its own: a retry resumes from the newest intact one. Once a trial
has ended, its checkpoints are only ever read as branch points, so under "needed" (the
default) they are deleted unless
  - a queued or running branched trial starts from one: pinned from the moment the searcher
    hands that trial out until its record is written (a retry with no checkpoint of its own
    starts from its branch point again) — Ray PBT's hole of a donor deleted before the clone
    loaded it (ray#38736) cannot open here; or
  - a new trial may still branch from it: whatever the brancher's `wanted` says
    (`BranchPoints.wanted`) — for `population`, the top quantile at its place by `rank_by`,
    or a point of a place holding fewer than `min_points`.
A deleted point is never branched from again. "all" keeps every checkpoint. Nothing outside
the search's own store (its run directory, or `study.checkpoints`' prefix) is ever deleted.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from autostage.checkpoint_store import CheckpointStore
from autostage.records import Branch, TrialRecord, TrialStatus


class Retention:
    def __init__(self, store: CheckpointStore, rule: str, population: Any = None) -> None:
        self.store, self.rule, self.population = store, rule, population
        self.held: dict[int, list[str]] = defaultdict(list)  # trial -> its checkpoints' paths
        self.ended_trials: set[int] = set()
        self.pins: dict[int, str] = {}  # branched trial -> the checkpoint it starts from
        self.deleted = 0

    def saw(self, number: int, path: str) -> None:
        """Trial `number` reported the checkpoint `path`."""
        self.held[number].append(path)

    def pin(self, number: int, branch: Branch) -> None:
        """Trial `number` will start from `branch`'s checkpoint: keep it until it ended."""
        self.pins[number] = self.store.resolve(branch.checkpoint)

    def ended(self, number: int) -> None:
        """Trial `number` has its record: its checkpoints are branch points only now."""
        self.pins.pop(number, None)
        self.ended_trials.add(number)
        self.sweep()

    def note_records(self, records: list[TrialRecord], waiting: list[Branch]) -> None:
        """An earlier session's trials (a resumed search), and the branches it re-queued."""
        for record in records:
            for e in record.evals:
                if e.checkpoint:
                    self.held[record.number].append(self.store.resolve(e.checkpoint))
            if record.status.finished or record.status == TrialStatus.INTERRUPTED:
                self.ended_trials.add(record.number)
        for i, branch in enumerate(waiting):
            self.pins[-1 - i] = self.store.resolve(branch.checkpoint)  # until this session ends
        self.sweep()

    def sweep(self) -> None:
        if self.rule == "all":
            return
        keep = set(self.pins.values())
        if self.population is not None:
            keep |= self.population.wanted()
        # only the ended trials still holding checkpoints: a sweep at every trial's end does
        # not grow with the trials whose checkpoints are all gone
        for number in [n for n in self.held if n in self.ended_trials]:
            paths = self.held.pop(number)
            gone = [p for p in paths if p not in keep]
            for path in gone:
                self._delete(path)
            if kept := [p for p in paths if p in keep]:
                self.held[number] = kept
            if gone and self.population is not None:
                self.population.gone.update(gone)

    def _delete(self, path: str) -> None:
        if not self.store.holds(path):
            # a record naming another run's checkpoint (an old run directory copied here
            # names the original's) must never cost that run its files
            return
        try:
            self.store.filesystem.delete_dir(path)
            self.deleted += 1
        except (OSError, FileNotFoundError):
            pass  # already gone, or the store refused: a checkpoint left costs disk only
