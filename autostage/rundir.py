"""The run directory: what a search writes, and what `best` and reports read — without Ray.

    runs/<study>/
      study.toml          the study file as given
      study.json          the effective study (after --set) and the overrides: resume checks it
      optuna.db           Optuna storage (optuna-dashboard and optuna.load_study open it)
      trials/<n>/events.jsonl   one line per eval of trial n (Optuna's trial number)
      trials/<n>/result.json    the trial's outcome, written once it ended
      ray-<time>/trial-<n>/   Ray Tune's experiment, with stage-boundary checkpoints
      report.html         the study report (`autostage report`), rewritten after each search
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: statuses of a trial that ran to an outcome (counted towards the study's trials)
FINISHED = ("completed", "stopped", "failed", "pruned")
#: statuses whose value is a final result (pruned trials stopped at an intermediate eval)
RANKED = ("completed", "stopped")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def study_toml(self) -> Path:
        return self.path / "study.toml"

    @property
    def study_json(self) -> Path:
        return self.path / "study.json"

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.path / 'optuna.db').resolve()}"

    def trial_dir(self, number: int) -> Path:
        return self.path / "trials" / str(number)

    def append_event(self, number: int, event: dict[str, Any]) -> None:
        path = self.trial_dir(number) / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(_finite(event), default=str) + "\n")

    def truncate_events(self, number: int, keep: int) -> None:
        """Keep the first `keep` evals of trial `number` (a retried trial resumes there)."""
        path = self.trial_dir(number) / "events.jsonl"
        if path.exists():
            lines = path.read_text().splitlines(keepends=True)[:keep]
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".events.")
            with os.fdopen(fd, "w") as f:
                f.writelines(lines)
            os.replace(tmp, path)

    def write_result(self, number: int, record: dict[str, Any]) -> None:
        write_json(self.trial_dir(number) / "result.json", _finite(record))

    def results(self) -> list[dict[str, Any]]:
        """Every trial's outcome record, by trial number."""
        out = []
        for path in sorted((self.path / "trials").glob("*/result.json"),
                           key=lambda p: int(p.parent.name)):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue  # written atomically, so this is a foreign file: not ours to read
        return out

    def events(self, number: int) -> list[dict[str, Any]]:
        """Trial `number`'s evals so far (read while a search runs, too)."""
        path = self.trial_dir(number) / "events.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the line being appended as we read: the next read has it
        return events

    def settings(self) -> dict[str, Any]:
        return json.loads(self.study_json.read_text())


def _finite(data: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is stored as null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data


def best_trial(records: list[dict[str, Any]], mode: str) -> dict[str, Any] | None:
    """The best finished trial with a finite value; failed and pruned trials never win."""
    ranked = [r for r in records if r.get("status") in RANKED
              and isinstance(r.get("value"), int | float) and math.isfinite(r["value"])]
    if not ranked:
        return None
    pick = min if mode == "min" else max
    return pick(ranked, key=lambda r: r["value"])
