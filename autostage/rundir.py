"""The run directory: what a search writes, and what `best` and reports read — without Ray.

    runs/<study>/
      study.toml          the study file as given
      study.json          the effective study (after --set) and the overrides: resume checks it
      optuna.db           Optuna storage (optuna-dashboard and optuna.load_study open it)
      trials/<n>/events.jsonl   one line per eval of trial n (Optuna's trial number)
      trials/<n>/result.json    the trial's outcome, written once it ended
      trials/<n>/branch.json    where a branched trial started (`records.Branch`)
      trials/<n>/no-model.txt   why trial n's trainer exported no model (it has no export)
      models/trial-<n>/   the final model of one of the best `study.keep_models` trials, as
                          its trainer exports it (autostage.models)
      ray-<time>/trial-<n>/   Ray Tune's experiment, with stage-boundary checkpoints
      report.html         the study report (`autostage report`), rewritten after each search
      .lock               locked by the search writing the directory (flock: gone with it)

study.json, result.json, branch.json and every events.jsonl line state their record format
(`"format": "autostage.result/2"`, `autostage.records.FORMAT_VERSION`); docs/records.md gives
their schema. The readers here open every earlier version (no `format`: version 1) and refuse
a newer major version in one line naming the file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError
from autostage.records import (
    FORMAT_KEY,
    Branch,
    EvalRecord,
    TrialRecord,
    TrialStatus,
    charged_tokens,
    check_format,
    format_tag,
    without_replays,
)


def write_shared_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (a reader, a browser re-loading a report, sees the old
    file or the new one, never a torn one), readable by all: it is for sharing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


LOCK = ".lock"  # held by the search writing the directory (`RunDir.lock`)


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __post_init__(self) -> None:
        # users write RunDir("runs/x"): a str or any os.PathLike becomes the Path every
        # method joins onto (frozen: set through object.__setattr__)
        object.__setattr__(self, "path", Path(self.path))

    @property
    def study_toml(self) -> Path:
        return self.path / "study.toml"

    @property
    def study_json(self) -> Path:
        return self.path / "study.json"

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{(self.path / 'optuna.db').resolve()}"

    def lock(self) -> int:
        """Hold this run directory for one search: the returned descriptor keeps an exclusive
        lock on RUN_DIR/.lock until it is closed or the process ends (a killed search leaves
        no stale lock: the kernel drops it). A second search into the directory, or a
        --resume while the first still runs, gets one clear error."""
        import fcntl

        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise self._in_use(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def check_output(self, path: Path, option: str, allowed: tuple[str, ...] = ()) -> None:
        """Refuse to write a command's output file (`option`, e.g. `-o`) over a directory or
        over a file of this run directory other than `allowed` (a report.html): a typo must
        never turn study.json into HTML."""
        if path.is_dir():
            raise AutostageError(f"{option} {path} is a directory: give a file name, e.g. "
                                 f"{path / (allowed[0] if allowed else 'trial.toml')}")
        inside = self.path.resolve() in path.resolve().parents
        if inside and path.name not in allowed:
            raise AutostageError(f"{option} {path} is inside the run directory {self.path}, "
                                 "whose files autostage keeps: write it elsewhere"
                                 + (f" (or to its {allowed[0]})" if allowed else ""))

    def check_free(self) -> None:
        """Refuse the directory while a search holds it (before any other check: a search
        in progress is the first thing to say)."""
        if (self.path / LOCK).exists():
            os.close(self.lock())  # taken and given back at once: nobody else held it

    def _in_use(self, holder: str) -> AutostageError:
        return AutostageError(
            f"{self.path} is in use by another autostage search (process {holder}): wait for "
            "it to end (then --resume continues it), or give this one another --out")

    def trial_dir(self, number: int) -> Path:
        return self.path / "trials" / str(number)

    def append_event(self, number: int, record: EvalRecord) -> None:
        path = self.trial_dir(number) / "events.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(_finite(record.to_json()), default=str) + "\n")

    def truncate_events(self, number: int, keep: int) -> None:
        """Keep the first `keep` evals of trial `number` (a retried trial resumes there)."""
        path = self.trial_dir(number) / "events.jsonl"
        if path.exists():
            lines = path.read_text().splitlines(keepends=True)[:keep]
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".events.")
            try:
                with os.fdopen(fd, "w") as f:
                    f.writelines(lines)
                os.replace(tmp, path)
            except BaseException:  # a full disk: the old file stays whole, no temp file
                Path(tmp).unlink(missing_ok=True)
                raise

    def write_branch(self, number: int, branch: Branch) -> None:
        """Where branched trial `number` started, from its start on (its result says it too,
        once it has one)."""
        write_json(self.trial_dir(number) / "branch.json",
                   {FORMAT_KEY: format_tag("branch"), **branch.to_json()})

    def branch(self, number: int) -> Branch | None:
        path = self.trial_dir(number) / "branch.json"
        data = _read_json(path)
        if data is None:
            return None
        check_format(data, "branch", path)
        try:
            return Branch.from_json(data)
        except (KeyError, ValueError, TypeError):
            return None

    def write_result(self, record: TrialRecord) -> None:
        if record.branch is not None and self.branch(record.number) is None:
            self.write_branch(record.number, record.branch)  # one that never started
        write_json(self.trial_dir(record.number) / "result.json", _finite(record.to_json()))

    def result(self, number: int) -> TrialRecord | None:
        """Trial `number`'s outcome, None until it has one (results are written atomically,
        so a file that does not parse is not ours)."""
        path = self.trial_dir(number) / "result.json"
        data = _read_json(path)
        if data is None:
            return None
        check_format(data, "result", path)
        try:
            return TrialRecord.from_json(data)
        except (KeyError, ValueError, TypeError):
            return None

    def numbers(self) -> list[int]:
        """Every trial number with a directory, ascending."""
        trials = self.path / "trials"
        if not trials.is_dir():
            return []
        return sorted(int(p.name) for p in trials.iterdir() if p.name.isdigit())

    def results(self) -> list[TrialRecord]:
        """Every trial's outcome (without its evals), by trial number."""
        return [r for n in self.numbers() if (r := self.result(n)) is not None]

    def events(self, number: int) -> list[EvalRecord]:
        """Trial `number`'s evals as written (a retry's replays included; read while a
        search runs, too)."""
        path = self.trial_dir(number) / "events.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text().splitlines():
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being appended as we read: the next read has it
            check_format(data, "eval", path)
            try:
                events.append(EvalRecord.from_json(data))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
        return events

    def evals(self, number: int) -> list[EvalRecord]:
        """Trial `number`'s evals with a retry's replays dropped: what it trained through."""
        return without_replays(self.events(number))

    def trials(self) -> list[TrialRecord]:
        """Every trial with an outcome or at least one eval, with its evals (replays of a
        retry dropped), by number. A trial with evals and no outcome yet is RUNNING."""
        out = []
        for number in self.numbers():
            record, events = self.result(number), self.events(number)
            if record is None and not events:
                continue  # a trial directory made before its first eval
            if record is None:
                record = self._running(number, events)
            out.append(record.with_evals(without_replays(events)))
        return out

    def _running(self, number: int, events: list[EvalRecord]) -> TrialRecord:
        """A trial with evals and no outcome yet. Its start is its first timed eval (evals
        held back for a later report have no time), or when its events file last changed."""
        times = [e.time for e in events if e.time is not None]
        source = self.trial_dir(number) / "events.jsonl"
        started = min(times) if times else source.stat().st_mtime
        branch = self.branch(number)
        return TrialRecord(number, TrialStatus.RUNNING, "running: no result yet",
                           tokens=charged_tokens(events[-1].eval.tokens, branch),
                           started=started, branch=branch)

    @property
    def models_dir(self) -> Path:
        return self.path / "models"

    def model_dir(self, number: int) -> Path:
        return self.models_dir / f"trial-{number}"

    def kept_models(self) -> dict[int, Path]:
        """Every kept model's directory, by trial number (ascending)."""
        if not self.models_dir.is_dir():
            return {}
        found = {int(p.name[len("trial-"):]): p for p in self.models_dir.iterdir()
                 if p.name.startswith("trial-") and p.name[len("trial-"):].isdigit()}
        return dict(sorted(found.items()))  # a model being moved in is .incoming-<n>: skipped

    def note_no_model(self, number: int, why: str) -> None:
        """Record why trial `number` exported no model (its trainer cannot)."""
        path = self.trial_dir(number) / "no-model.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(why + "\n")

    def no_model(self, number: int) -> str | None:
        """Why trial `number` exported no model, when its trainer could not."""
        path = self.trial_dir(number) / "no-model.txt"
        return path.read_text().strip() if path.exists() else None

    def write_settings(self, study: dict[str, Any], overrides: list[str], source: str) -> None:
        """study.json: the effective study, the --set overrides and the study file's path."""
        write_json(self.study_json, {FORMAT_KEY: format_tag("study"), "study": study,
                                     "overrides": overrides, "source": source})

    def settings(self) -> dict[str, Any]:
        """study.json as written (an OSError or ValueError when it cannot be read; a newer
        format than this autostage reads: one line)."""
        data = json.loads(self.study_json.read_text())
        check_format(data, "study", self.study_json)
        return data


def _read_json(path: Path) -> Any:
    """A JSON file's content, None when it is missing or does not parse (records are written
    atomically, so such a file is not ours)."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _finite(data: Any) -> Any:
    """JSON has no NaN or infinity: a non-finite number is stored as null."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_finite(v) for v in data]
    return data
