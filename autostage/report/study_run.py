"""A run directory as the report sees it: the study's settings and its trials as typed records.

The records are `autostage.records.TrialRecord`s from `RunDir.trials()`: each trial's outcome
with its evals (a retry's replays dropped); a trial that has evals but no result yet is
`TrialStatus.RUNNING` — the search is still going (or was killed: `--resume` gives it a
result). Plugins receive the same records in the `report_figures` hook.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError
from autostage.keys import join_plan
from autostage.records import EvalRecord, TrialRecord, TrialStatus, lineage
from autostage.rundir import RunDir
from autostage.target import reaches


@dataclass(frozen=True)
class StudyRun:
    """What the report needs to know about the study, and its trial records."""

    path: Path
    name: str
    metrics: list[str]  # the study metrics; more than one: a multi-objective study
    modes: list[str]  # "min" or "max", one per metric
    requested: int  # study.trials
    stages: list[str]  # every stage, in declared order
    storage_url: str  # where the Optuna study lives
    records: list[TrialRecord] = field(default_factory=list)
    token_budget: int | None = None  # study.token_budget
    target: float | None = None  # study.target

    @property
    def budget_spent(self) -> bool:
        """The search ended because its trials trained the study's token budget."""
        return self.token_budget is not None and \
            sum(r.tokens for r in self.records) >= self.token_budget

    @property
    def target_reached(self) -> bool:
        """The search ended because a finished trial reached the study's target."""
        return any(r.status.ranked and reaches(r.value, self.target, self.mode)
                   for r in self.records)

    @property
    def metric(self) -> str:
        """The first metric: what figures draw and "best" ranks by."""
        return self.metrics[0]

    @property
    def mode(self) -> str:
        return self.modes[0]

    @property
    def finished(self) -> int:
        return sum(r.status.finished for r in self.records)

    @property
    def running(self) -> int:
        return sum(r.status is TrialStatus.RUNNING for r in self.records)

    @property
    def partial(self) -> bool:
        """Still running, or stopped before it finished its trials (not by its token
        budget or its target, which end a search as planned): the report shows part."""
        return self.running > 0 or (self.finished < self.requested and not self.budget_spent
                                    and not self.target_reached)


def load_run(path: str | os.PathLike[str]) -> StudyRun:
    run = RunDir(path)
    study = read_study(run, ("name", "metric", "mode", "trials"))
    s = study["study"]
    records = run.trials()
    by_number = {r.number: r for r in records}
    for record in records:  # every figure may follow parents: a bad record is one error here
        lineage(record, by_number, source=run.path)
    metrics, modes = _as_list(s["metric"]), _as_list(s["mode"])
    return StudyRun(
        path=run.path, name=s["name"], metrics=metrics,
        modes=modes * len(metrics) if len(modes) == 1 else modes,  # one mode: every metric's
        requested=s["trials"], stages=[stage["name"] for stage in study.get("stage", [])],
        storage_url=s.get("storage") or run.storage_url, records=records,
        token_budget=s.get("token_budget"), target=s.get("target"),
    )


def read_study(run: RunDir, needs: tuple[str, ...] = ("metric", "mode")) -> dict[str, Any]:
    """The run's study as study.json holds it, its [study] table holding `needs` (what the
    caller reads), or one error naming the file: an edited or damaged study.json must not
    end in a traceback."""
    if not run.study_json.exists():
        raise AutostageError(f"{run.path} is not a run directory (no study.json); "
                             "give the --out directory of an `autostage search`")
    try:
        study = run.settings()["study"]
        section = study["study"]
        missing = [k for k in needs if k not in section]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AutostageError(f"{run.study_json} cannot be read as a run's settings "
                             f"({type(e).__name__}: {e}); restore it from a copy of the run, "
                             "or run the search again") from None
    if missing:
        raise AutostageError(f"{run.study_json} has no study.{', study.'.join(missing)}; "
                             "restore it from a copy of the run, or run the search again")
    return study


def _as_list(value: str | list[str]) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


# --- small questions every figure asks of a record ---------------------------------------------


def stage_label(record: EvalRecord) -> str:
    """`target`, or `target#2` for the second visit of a repeated stage."""
    ev = record.eval
    return f"{ev.stage}#{ev.visit + 1}" if ev.visit else ev.stage


def stage_order(label: str, stages: list[str]) -> tuple[int, int]:
    """Sort key of a stage label: the study's declared order, then the visit."""
    name, _, visit = label.rpartition("#")
    if not visit.isdigit():
        name, visit = label, "1"
    return (stages.index(name) if name in stages else len(stages), int(visit))


def stage_visits(evals: Sequence[EvalRecord]) -> list[list[EvalRecord]]:
    """The evals of a trial cut where the stage (or its visit) changes."""
    visits: list[list[EvalRecord]] = []
    for record in evals:
        if visits and stage_label(visits[-1][-1]) == stage_label(record):
            visits[-1].append(record)
        else:
            visits.append([record])
    return visits


def executed_plan(record: TrialRecord) -> str:
    """The stage plan a trial took: its sampled plan, else the stages its evals went through
    (a study without plan search, or a running trial)."""
    return record.plan or join_plan([stage_label(v[0]) for v in stage_visits(record.evals)])


def searched_params(records: Sequence[TrialRecord]) -> list[str]:
    """Config keys that vary between trials: what the search chose. Keys with one value in
    every trial (a single trainer, a fixed mixture weight) are settings, not choices."""
    values: dict[str, set[str]] = {}
    for record in records:
        for key, value in record.config.items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    seen_in = {k: sum(k in r.config for r in records) for k in values}
    configured = sum(bool(r.config) for r in records)
    return sorted(k for k, v in values.items() if len(v) > 1 or seen_in[k] < configured)

