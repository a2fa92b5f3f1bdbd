"""The models a search keeps: the final weights of its best trials, as their trainer exports
them (`TrainerRun.export`), in RUN_DIR/models/trial-<n>/.

A Ray worker exports a trial's model when the trial ends with a value and attaches it to the
trial's outcome report as a Ray checkpoint; Ray moves it into the run's storage, and the driver
moves it on into models/ (so Ray keeps no second copy) and removes the models no longer among
the best `study.keep_models`. At any time a search holds at most keep_models + parallel models.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from autostage.records import TrialRecord, pareto_front
from autostage.rundir import RunDir


def keeping_order(records: Iterable[TrialRecord], modes: list[str]) -> list[TrialRecord]:
    """The trials whose models a search keeps, most wanted first: with one metric every trial
    with a ranked value, best first; with several the Pareto front, by the first metric. Ties
    go to the earlier trial."""
    records = list(records)
    if len(modes) == 1:
        candidates = [r for r in records if r.ranked_value is not None]
    else:
        candidates = pareto_front(records, modes)
    sign = 1 if modes[0] == "min" else -1
    return sorted(candidates, key=lambda r: (sign * r.values[0], r.number))


class ModelKeeper:
    """Moves the models trials export into RUN_DIR/models/ and keeps the best `keep` of them."""

    def __init__(self, run: RunDir, keep: int, modes: list[str]) -> None:
        self.run, self.keep, self.modes = run, keep, modes
        # The finished trials that may still be among the best, updated as records are
        # written (`note`) and read from the run directory once (a resumed search's earlier
        # trials). Reading every result.json at every trial's end made a trial's cost grow
        # with the trials before it (~50 ms at trial 1,000 on the toy study).
        self._candidates: list[TrialRecord] | None = None

    def note(self, record: TrialRecord) -> None:
        """Trial `record.number`'s record has just been written."""
        if self._candidates is None:
            self._candidates = self._best(self.run.results())  # holds `record` already
        else:
            self._candidates = self._best([*self._candidates, record])

    def _best(self, records: Iterable[TrialRecord]) -> list[TrialRecord]:
        """What can still be among the best when more trials finish: with one metric the best
        `keep`; with several the whole Pareto front (a dominated trial stays dominated; the
        front is cut to `keep` only when choosing)."""
        order = keeping_order(records, self.modes)
        return order[:self.keep] if len(self.modes) == 1 else order

    def kept(self, number: int) -> Path | None:
        """The folder of trial `number`'s model when it is among those kept now (after
        `note`); None when it has none or is not among the best."""
        path = self.run.model_dir(number)
        if self._candidates is None or not path.is_dir():
            return None
        best = keeping_order(self._candidates, self.modes)[:self.keep]
        return path if any(r.number == number for r in best) else None

    def take(self, number: int, exported: Any, move: Any = shutil.move) -> None:
        """Move trial `number`'s exported model (Ray's checkpoint directory) to
        models/trial-<n> with `move(exported, target)` (the checkpoint store's: a rename on
        one filesystem, a download from object storage): staged beside it first, so a reader
        never sees half a model."""
        staging = self.run.models_dir / f".incoming-{number}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.parent.mkdir(parents=True, exist_ok=True)
        move(exported, staging)
        target = self.run.model_dir(number)
        shutil.rmtree(target, ignore_errors=True)  # an earlier attempt's model
        os.rename(staging, target)

    def prune(self) -> None:
        """Remove the models of finished trials no longer among the best `keep`. A model whose
        trial has no outcome recorded yet stays: its trial is still being written."""
        if self._candidates is None:
            self._candidates = self._best(self.run.results())
        wanted = {r.number for r in keeping_order(self._candidates, self.modes)[:self.keep]}
        for number, path in self.run.kept_models().items():  # at most keep + parallel
            if number not in wanted and self.run.result(number) is not None:
                shutil.rmtree(path, ignore_errors=True)


def kept_summary(run: RunDir, keep: int, records: list[TrialRecord]) -> str | None:
    """What the search kept, in one line (None when there is nothing to say: no trial ended
    with a value)."""
    kept = run.kept_models()
    if kept:
        which = "the model of trial" if len(kept) == 1 else "the models of trials"
        size = sum(disk_size(p) for p in kept.values())
        return (f"kept {which} {', '.join(map(str, kept))} ({human_size(size)}) in "
                f"{run.models_dir}/")
    if not any(r.ranked_value is not None for r in records):
        return None
    if keep == 0:
        return "kept no model (study.keep_models = 0)"
    reasons = [why for r in records if (why := run.no_model(r.number)) is not None]
    return f"kept no model: {reasons[0]}" if reasons else "kept no model"


def why_not_kept(run: RunDir, record: TrialRecord, study: Mapping[str, Any]) -> str:
    """Why trial `record` has no kept model, and what would work: one line. `study` is the
    run's study section as study.json holds it."""
    n = record.number
    if "keep_models" not in study:
        return (f"{run.path} was written by an autostage that kept no models; "
                f"{_rerun(run, n)} keeps its model")
    keep = study["keep_models"]
    if keep == 0:
        return (f"the search kept no models (study.keep_models = 0); "
                f"{_rerun(run, n, ' --set study.keep_models=1')}")
    if (why := run.no_model(n)) is not None:
        return (f"trial {n} kept no model: {why}; a trainer with an export(directory) method "
                "(e.g. transformers) keeps one")
    if record.ranked_value is None:
        return (f"trial {n} kept no model: it is {record.status.value}, and only trials that "
                f"finish with a value keep one; {_rerun(run, n)}")
    kept = ", ".join(map(str, run.kept_models())) or "none"
    return (f"the model of trial {n} was not kept: the search keeps the best {keep} "
            f"(study.keep_models = {keep}; kept: trials {kept}, choose one with --trial N); "
            f"or {_rerun(run, n)}")


def _rerun(run: RunDir, number: int, settings: str = "") -> str:
    """How to train trial `number` again in a search of its own, which keeps its model."""
    return (f"re-run it: `autostage best {run.path} --trial {number} --export trial.toml`, "
            f"then `autostage search trial.toml --out DIR{settings}`")


def disk_size(path: Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def human_size(size: int) -> str:
    """12.3 MB: decimal units, as `du --si` and file browsers count."""
    units = ("B", "kB", "MB", "GB", "TB")
    power = min(len(str(max(size, 1))) - 1, 3 * (len(units) - 1)) // 3
    return f"{size} B" if power == 0 else f"{size / 1000 ** power:.1f} {units[power]}"
