"""A search from Python — a notebook, a script — as `autostage search` runs it:

    result = autostage.search("study.toml", trials=8, sets=["study.seed=3"])
    result.best          # the best TrialRecord (a multi-metric study: its Pareto front)
    result.trials        # a pandas DataFrame, a row per trial
    result.report()      # the HTML report's path

`search` is the one code path: the CLI's `autostage search` calls it too. Nothing here exits
the process or parses arguments; every refusal is an AutostageError (a study's problems a
StudyError) carrying the lines the CLI prints. Ray is started and stopped by each search, as
the CLI's is, unless this process already runs one (a notebook's `ray.init()`) or `address`
names a cluster to join: then the search uses it and leaves it running.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError
from autostage.records import TrialRecord, best_trial, pareto_front
from autostage.rundir import RunDir

PathLike = str | os.PathLike[str]


class NoTrialValue(AutostageError):
    """A search ended and none of its trials produced a value (the CLI exits 1). Its records
    are in `result`: the message names the commonest reason."""

    def __init__(self, message: str, result: SearchResult) -> None:
        super().__init__(message)
        self.result = result


def search(study: PathLike, *, trials: int | None = None, parallel: int | None = None,
           out: PathLike | None = None, resume: bool = False, address: str | None = None,
           checkpoints: str | None = None, sets: Iterable[str] = (), quiet: bool = False,
           verbose: bool = False, registry: Any = None) -> SearchResult:
    """Search `study` (a study file) and return its result once the search ends.

    The options are `autostage search`'s: `trials`, `parallel` and `checkpoints` override
    study.trials, study.parallel and study.checkpoints; `sets` are `--set` overrides
    (`["study.seed=3", "stage.target.tokens=20000"]`); `out` is the run directory (default
    runs/<study name>, from the current directory); `resume` continues the search in `out`
    to `trials` finished trials; `address` joins a Ray cluster (`"auto"`, `"HOST:PORT"`);
    `quiet` leaves out the live view and the summary; `verbose` shows Ray's output;
    `registry` the plugins (default: every installed one, `load_registry()`).

    Raises StudyError (every problem of the study), AutostageError (a refusal before the
    search starts, in one line), NoTrialValue (no trial produced a value; its `result` holds
    the records). An interrupted search (Ctrl-C, "interrupt the kernel") returns its result
    so far with `interrupted` set: `resume=True` continues it."""
    from autostage.check import load_study
    from autostage.host import load_registry
    from autostage.search_start import no_value, start_search

    overrides = search_overrides(sets, trials=trials, parallel=parallel,
                                 checkpoints=checkpoints)
    registry = registry if registry is not None else load_registry()
    loaded = load_study(study, registry, overrides)  # every problem before any compute
    run = RunDir(out if out is not None else Path("runs") / loaded.study.name)
    outcome = start_search(str(study), loaded, registry, overrides, run, resume=resume,
                           address=address, verbose=verbose, quiet=quiet)
    result = SearchResult.open(run, interrupted=outcome.interrupted, host=registry.host)
    if not outcome.interrupted and (why := no_value(outcome.records)) is not None:
        raise NoTrialValue(why, result)
    return result


def search_overrides(sets: Iterable[str] = (), *, trials: int | None = None,
                     parallel: int | None = None, checkpoints: str | None = None) -> list[str]:
    """The `--set` overrides a search runs with: `sets`, then trials, parallel and
    checkpoints as `study.*=...` (as study.json records them)."""
    if isinstance(sets, str):  # one override given bare: not its characters
        sets = [sets]
    overrides = [str(s) for s in sets]
    if trials is not None:
        overrides.append(f"study.trials={int(trials)}")
    if parallel is not None:
        overrides.append(f"study.parallel={int(parallel)}")
    if checkpoints is not None:
        overrides.append(f"study.checkpoints={json.dumps(str(checkpoints))}")
    return overrides


@dataclass(frozen=True)
class SearchResult:
    """A run directory's trials, as a search left them: `records` (TrialRecords with their
    evals, by number), `best`, `trials` (a DataFrame) and `report()`."""

    run_dir: RunDir
    metrics: tuple[str, ...]  # the study's metrics; `values` of a record follow this order
    modes: tuple[str, ...]  # "min" or "max", one per metric
    records: list[TrialRecord]
    interrupted: bool = False  # the search was interrupted: `resume=True` continues it
    host: Any = field(default=None, repr=False, compare=False)  # plugins for the report

    @classmethod
    def open(cls, run_dir: PathLike | RunDir, *, interrupted: bool = False,
             host: Any = None) -> SearchResult:
        """The result of the search in `run_dir` (one that ran earlier, or still runs: its
        running trials have status `running`). Run directories of every earlier version
        open; one that is not a run directory is an AutostageError."""
        from autostage.report.study_run import read_study

        run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
        section = read_study(run)["study"]
        metrics = _as_list(section["metric"])
        modes = _as_list(section["mode"])
        modes = modes * len(metrics) if len(modes) == 1 else modes
        return cls(run, tuple(metrics), tuple(modes), run.trials(), interrupted, host)

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @property
    def best(self) -> TrialRecord | list[TrialRecord] | None:
        """The best trial (None when no trial has a value); a multi-metric study: its Pareto
        front, by trial number ([] when none)."""
        if len(self.metrics) > 1:
            return pareto_front(self.records, list(self.modes))
        return best_trial(self.records, self.modes[0])

    @property
    def trials(self) -> Any:
        """A pandas DataFrame, a row per trial: number, status, value (the first metric; a
        multi-metric study adds `value.<metric>` per metric), tokens, plan, parent (a
        branched trial's), seed, reason, started, ended, then each parameter by its key."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("SearchResult.trials is a pandas DataFrame: pip install pandas "
                              "(result.records holds the same trials without it)") from None
        params = sorted({key for r in self.records for key in r.config})
        rows = [self._row(r, params) for r in self.records]
        return pd.DataFrame(rows, columns=self._columns(params))

    def _columns(self, params: Sequence[str]) -> list[str]:
        values = [f"value.{m}" for m in self.metrics] if len(self.metrics) > 1 else []
        return ["number", "status", "value", *values, "tokens", "plan", "parent", "seed",
                "reason", "started", "ended", *params]

    def _row(self, record: TrialRecord, params: Sequence[str]) -> list[Any]:
        values = list(record.values or ()) + [None] * len(self.metrics)
        per_metric = values[:len(self.metrics)] if len(self.metrics) > 1 else []
        return [record.number, record.status.value, record.value, *per_metric, record.tokens,
                record.plan, record.branch.parent if record.branch else None, record.seed,
                record.reason, record.started, record.ended,
                *(record.config.get(key) for key in params)]

    def report(self, path: PathLike | None = None, *, cdn: bool = False) -> Path:
        """Write the study report (one HTML file; default: the run directory's report.html)
        and return where it went."""
        from autostage.report import write_report

        if path is not None:
            self.run_dir.check_output(Path(path), "report", ("report.html",))
        return write_report(self.path, path, cdn=cdn, host=self.host)


def _as_list(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list) else [value]
