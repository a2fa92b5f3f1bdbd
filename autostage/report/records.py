"""A run directory as the report's records: one plain dict per trial, with its evals.

A record is the trial's `result.json` (number, status, reason, value, tokens, config, plan,
decisions, started, ended) plus `events`, its evals from `events.jsonl`. A trial that has evals
but no result yet is `running` — the search is still going (or was killed: `--resume` gives it
a result). Plugins receive these records in the `report_figures` hook.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError
from autostage.rundir import FINISHED, RANKED, RunDir


@dataclass(frozen=True)
class StudyRun:
    """What the report needs to know about the study, and its trial records."""

    path: Path
    name: str
    metric: str  # the primary metric: figures and rankings use it
    mode: str  # "min" or "max"
    requested: int  # study.trials
    stages: list[str]  # every stage, in declared order
    storage_url: str  # where the Optuna study lives
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return sum(r["status"] in FINISHED for r in self.records)

    @property
    def running(self) -> int:
        return sum(r["status"] == "running" for r in self.records)

    @property
    def partial(self) -> bool:
        """Still running, or stopped before it finished its trials: the report shows part."""
        return self.running > 0 or self.finished < self.requested


def load_run(path: Path) -> StudyRun:
    run = RunDir(Path(path))
    if not run.study_json.exists():
        raise AutostageError(f"{path} is not a run directory (no study.json); "
                             "give the --out directory of an `autostage search`")
    study = run.settings()["study"]
    s = study["study"]
    return StudyRun(
        path=run.path, name=s["name"], metric=_first(s["metric"]), mode=_first(s["mode"]),
        requested=s["trials"], stages=[stage["name"] for stage in study.get("stage", [])],
        storage_url=s.get("storage") or run.storage_url, records=trial_records(run),
    )


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def trial_records(run: RunDir) -> list[dict[str, Any]]:
    """Every trial with a result or at least one eval, by trial number."""
    trials = run.path / "trials"
    numbers = sorted(int(p.name) for p in trials.glob("*") if p.name.isdigit()) \
        if trials.is_dir() else []
    records = []
    for number in numbers:
        record = _result(run.trial_dir(number) / "result.json")
        events = run.events(number)
        if record is None and not events:
            continue  # a trial directory made before its first eval
        if record is None:
            record = running_record(number, events, run.trial_dir(number) / "events.jsonl")
        record["events"] = without_replays(events)
        records.append(record)
    return records


def _result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # not written yet (results are written atomically)



def running_record(number: int, events: list[dict[str, Any]], source: Path) -> dict[str, Any]:
    """A trial with evals and no outcome yet. Its start is its first timed eval (evals held
    back for the next report have no time), or when its events file was last written."""
    times = [e["time"] for e in events if isinstance(e.get("time"), int | float)]
    started = min(times) if times else source.stat().st_mtime
    return {
        "number": number, "status": "running", "reason": "running: no result yet",
        "value": None, "tokens": events[-1].get("tokens", 0), "evals": len(events),
        "config": {}, "plan": "", "decisions": [], "started": started, "ended": None,
    }


def without_replays(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A retried trial restarts from its last stage-boundary checkpoint and evaluates again
    from there: keep the retry's evals, drop the first attempt's beyond that point."""
    kept: list[dict[str, Any]] = []
    for event in events:
        tokens = event.get("tokens", 0)
        while kept and kept[-1].get("tokens", 0) >= tokens:
            kept.pop()
        kept.append(event)
    return kept


# --- small questions every figure asks of a record ---------------------------------------------


def final_value(record: dict[str, Any]) -> float | None:
    """The trial's result, when it has one that ranks (completed or stopped, finite)."""
    value = record.get("value")
    if record.get("status") in RANKED and isinstance(value, int | float) \
            and math.isfinite(value):
        return float(value)
    return None


def metric_at(event: dict[str, Any], metric: str) -> float | None:
    value = event.get(metric)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def better(a: float, b: float | None, mode: str) -> bool:
    return b is None or (a < b if mode == "min" else a > b)


def stage_label(event: dict[str, Any]) -> str:
    """`target`, or `target#2` for the second visit of a repeated stage."""
    visit = event.get("visit") or 0
    return f"{event['stage']}#{visit + 1}" if visit else str(event["stage"])


def stage_order(label: str, stages: list[str]) -> tuple[int, int]:
    """Sort key of a stage label: the study's declared order, then the visit."""
    name, _, visit = label.rpartition("#")
    if not visit.isdigit():
        name, visit = label, "1"
    return (stages.index(name) if name in stages else len(stages), int(visit))


def stage_visits(events: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The evals of a trial cut where the stage (or its visit) changes."""
    visits: list[list[dict[str, Any]]] = []
    for event in events:
        if visits and stage_label(visits[-1][-1]) == stage_label(event):
            visits[-1].append(event)
        else:
            visits.append([event])
    return visits


def executed_plan(record: dict[str, Any]) -> str:
    """The stage plan a trial took: its sampled plan, else the stages its evals went through
    (a study without plan search, or a running trial)."""
    if record.get("plan"):
        return str(record["plan"])
    return ">".join(stage_label(v[0]) for v in stage_visits(record.get("events", [])))


def searched_params(records: list[dict[str, Any]]) -> list[str]:
    """Config keys that vary between trials: what the search chose. Keys with one value in
    every trial (a single trainer, a fixed mixture weight) are settings, not choices."""
    values: dict[str, set[str]] = {}
    for record in records:
        for key, value in record.get("config", {}).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    seen_in = {k: sum(k in r.get("config", {}) for r in records) for k in values}
    return sorted(k for k, v in values.items()
                  if len(v) > 1 or seen_in[k] < sum(bool(r.get("config")) for r in records))
