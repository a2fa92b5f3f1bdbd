"""Where a search starts (`start_search`, what `autostage search` runs): what it checks before
it writes anything — the run directory (usable, not a user's folder, not in use), the study's
own storage and checkpoint store, the resources a local Ray has, and on --resume that the
study did not change, each refusal one line — then the first files it writes, the search
itself (`autostage.search`, where Ray is imported) with its live view, its summary and its
report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from autostage.checkpoint_store import open_store
from autostage.errors import AutostageError
from autostage.records import TrialRecord
from autostage.rundir import LOCK, RunDir
from autostage.spec import Study

#: what may change when a search is resumed: its size and resources, not what it searches
RESUMABLE = ("trials", "parallel", "token_budget", "retries", "resources", "keep_models",
             "keep_checkpoints", "checkpoints",
             # where the trials are also logged: not what they train (and absent from the
             # study.json of a search started before trackers existed)
             "trackers", "tracker_settings")

RUN_FILES = ("study.toml", "study.json", "optuna.db", "optuna.db-wal", "optuna.db-shm")
#: what a search writes into its run directory (besides ray-<time>/, named by the time)
WRITES = (*RUN_FILES, "report.html", "trials", "models", "cache")


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def check_run_dir(run: RunDir, study_file: Path) -> None:
    """Refuse a run directory a search cannot write, or one holding files it would overwrite
    that no earlier search wrote (a user's own study.toml or report.html). The study file
    itself may be there: `--out` may be its folder."""
    path = run.path
    try:
        if not path.exists():
            ancestor = next(p for p in path.parents if p.exists())
            if not ancestor.is_dir():
                raise AutostageError(f"cannot create the run directory {path}: {ancestor} is a "
                                     "file; choose another with --out DIR")
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise AutostageError(f"cannot create the run directory {path}: {ancestor} is "
                                     "not writable; choose another with --out DIR")
            return
        if not path.is_dir():
            raise AutostageError(f"the run directory {path} is a file; give a directory "
                                 "(new, or an earlier search's) with --out DIR")
        if not os.access(path, os.W_OK | os.X_OK):
            raise AutostageError(f"the run directory {path} is not writable; choose another "
                                 "with --out DIR")
        if is_run_dir(path):
            return
        theirs = [n for n in WRITES if (path / n).exists()
                  and not (n == "study.toml" and _same_file(run.study_toml, study_file))]
    except OSError as e:  # e.g. a name too long for the filesystem
        raise AutostageError(f"cannot use {path} as the run directory: {e.strerror or e}; "
                             "choose another with --out DIR") from None
    if theirs:
        raise AutostageError(f"{path} holds {', '.join(theirs)}, which a search would "
                             "overwrite, and is no earlier search's run directory (no study.json"
                             " of autostage's): give a new or empty directory with --out DIR")


def is_run_dir(path: Path) -> bool:
    """Whether `path` holds the study.json of an earlier `autostage search`."""
    try:
        data = json.loads((path / "study.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("study"), dict) and \
        isinstance(data.get("overrides"), list)


def write_study(run: RunDir, study: Study, study_file: Path,
                 overrides: list[str]) -> tuple[list[str], list[Path], int]:
    """Take the run directory's lock, then write study.toml and study.json; return the files
    and the directories this made (to remove if the search fails to start) and the lock. A
    filesystem error is one line, nothing left; a directory another search holds is refused
    before anything is written (`RunDir.lock`)."""
    created: list[Path] = []
    made: list[str] = []
    try:
        created = [p for p in (run.path, *run.path.parents) if not p.exists()]
        run.path.mkdir(parents=True, exist_ok=True)
        had_lock = (run.path / LOCK).exists()
        lock = run.lock()
        made = [n for n in RUN_FILES if not (run.path / n).exists()]
        made += [] if had_lock else [LOCK]
        if not _same_file(run.study_toml, study_file):  # --out may be the study's folder
            run.study_toml.write_text(study_file.read_text())
        run.write_settings(study.model_dump(mode="json"), overrides, str(study_file))
    except OSError as e:
        forget(run, made, created)
        raise AutostageError(f"cannot write the run directory {run.path}: "
                             f"{e.strerror or e}; choose another with --out DIR") from None
    return made, created, lock


def forget(run: RunDir, made: list[str], created: list[Path]) -> None:
    """Remove what this search created, never a file that was there before it: the files
    in `made`, then the directories in `created` (deepest first) left empty. Best effort:
    it runs while another error is reported."""
    from contextlib import suppress

    names = [*made, *(("optuna.db-wal", "optuna.db-shm") if "optuna.db" in made else ())]
    for name in names:  # (with optuna.db, SQLite's side files of the db we made)
        with suppress(OSError):
            (run.path / name).unlink(missing_ok=True)
    for directory in created:
        with suppress(OSError):
            directory.rmdir()  # only an empty directory goes


def probe_storage(url: str) -> None:
    """Open the study's own Optuna storage (`study.storage`) once, before anything is written:
    a database that cannot be reached is one line, not a traceback after the run directory
    was made. `validate` checked the URL without connecting. A new SQLite file is left to
    the search to create."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and (parsed.database in (None, "", ":memory:")
                   or not Path(parsed.database).exists()):
        return
    # a dead host must not hang the start: the drivers that take it get a connect timeout
    timeout = {"connect_timeout": 10} if parsed.get_driver_name() in (
        "psycopg2", "psycopg", "pymysql", "mysqldb") else {}
    engine = None
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args=timeout)
        with engine.connect() as connection:
            if sqlite:  # connecting alone never reads the file
                connection.exec_driver_sql("PRAGMA schema_version")
    except Exception as e:  # the driver's own errors: OperationalError, DatabaseError, ...
        cause = getattr(e, "orig", None) or e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise AutostageError(f"study.storage: cannot open "
                             f"{parsed.render_as_string(hide_password=True)}: {first}"
                             ) from None
    finally:
        if engine is not None:
            engine.dispose()


def check_local_resources(resources: Any) -> None:
    """Refuse `study.resources` a local Ray could never give one trial: Ray would wait for
    them forever, silently."""
    from autostage.search import local_resources  # Ray is imported in autostage.search only

    problems = resources_problems(resources, *local_resources())
    if problems:
        raise AutostageError("; ".join(problems))


def resources_problems(resources: Any, cpus: float, gpus: Any) -> list[str]:
    """What in `resources` (study.resources) a Ray of `cpus` CPUs and `gpus()` GPUs (a
    callable: counting GPUs may import torch, so only when some are asked for) never has."""
    problems = []
    if resources.cpus > cpus:
        problems.append(
            f"study.resources.cpus = {resources.cpus:g} per trial, but the local Ray has "
            f"{cpus:g} CPUs: no trial could ever start. Ask for at most {cpus:g} "
            f"(--set study.resources.cpus={cpus:g}), or join a bigger cluster with --address")
    elif (w := resources.workers) > 1 and w * resources.cpus > cpus:
        problems.append(
            f"study.resources.workers = {w} with cpus = {resources.cpus:g} each asks every "
            f"trial for {w * resources.cpus:g} CPUs, but the local Ray has {cpus:g}: no trial "
            f"could ever start. Use at most {int(cpus // resources.cpus)} workers, fewer cpus "
            "each, or join a bigger cluster with --address")
    if resources.workers > 1 and resources.gpus > 0 and \
            resources.workers * resources.gpus > (found := gpus()) >= resources.gpus:
        problems.append(
            f"study.resources.workers = {resources.workers} with gpus = {resources.gpus:g} "
            f"each asks every trial for {resources.workers * resources.gpus:g} GPUs, but the "
            f"local Ray has {found:g}: no trial could ever start. Use at most "
            f"{int(found // resources.gpus)} workers, or join a cluster with more GPUs with "
            "--address")
    if resources.gpus > 0 and resources.gpus > (found := gpus()):
        has = f"{found:g} GPUs" if found else "no GPU"
        problems.append(
            f"study.resources.gpus = {resources.gpus:g} per trial, but the local Ray has "
            f"{has}: no trial could ever start. Ask for "
            + (f"at most {found:g}" if found else "none (--set study.resources.gpus=0)")
            + ", or join a cluster with GPUs with --address")
    return problems


def check_resume(study: Study, run: RunDir) -> None:
    """Refuse to resume with a study that changed in anything but its size and resources."""
    if not run.study_json.exists():
        raise AutostageError(f"{run.path} holds no search to resume (no study.json); "
                             "start one without --resume")
    changed = _diff(_comparable(run.settings()["study"]),
                    _comparable(study.model_dump(mode="json")))
    if changed:
        raise AutostageError(
            f"the study changed since {run.path} was started, in: {', '.join(changed)}. "
            f"Only study.{', study.'.join(RESUMABLE)} may change on --resume; search the "
            "edited study in a new run directory with --out DIR")


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))
    for key in RESUMABLE:
        data.get("study", {}).pop(key, None)
    return data


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for key in sorted(set(a) | set(b))
                for p in _diff(a.get(key), b.get(key), f"{path}.{key}" if path else key)]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True))
                for p in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "(the whole study)"]


def start_search(study_path: str, study: Study, registry: Any, overrides: list[str],
                 run: RunDir, *, resume: bool, address: str | None, verbose: bool,
                 quiet: bool = False) -> Any:
    """Check everything a search can know before it starts, write the run directory's first
    files, run the search (`quiet`: without the live view and the summary) and write its
    report; return its `SearchOutcome`. Every refusal is an AutostageError of one line."""
    # Everything that can be known before a search starts is checked before anything is
    # written: the run directory, the storage, the resources a local Ray would have.
    if study.lineage:
        raise AutostageError(f"{study_path} replays one trial's lineage ([[lineage]], written "
                             "by `autostage best --export`): run it with `autostage trial "
                             f"{study_path}`; a search would sample over it")
    run.check_free()
    if resume:
        check_resume(study, run)
    else:
        check_run_dir(run, Path(study_path))
        if (run.path / "optuna.db").exists() or (run.path / "trials").exists():
            raise AutostageError(f"{run.path} already holds a search: continue it with "
                                 "--resume, or write this one elsewhere with --out DIR")
    if study.study.storage is not None:
        probe_storage(study.study.storage)
    if study.study.checkpoints is not None:
        open_store(study.study.checkpoints, run.path).probe("study.checkpoints")
    if address is None:
        check_local_resources(study.study.resources)
    made, created, lock = write_study(run, study, Path(study_path), overrides)
    try:
        return _search(study, registry, run, resume, address, verbose, made, created, quiet)
    finally:
        os.close(lock)


def no_value(records: list[TrialRecord]) -> str | None:
    """Why a search none of whose trials produced a value failed, whatever ran, in one line
    (the commonest reason); None when some trial has a value."""
    from collections import Counter

    if any(r.ranked_value is not None for r in records):
        return None
    reasons = Counter(r.reason for r in records if r.reason)
    why = (f"; most common reason ({reasons.most_common(1)[0][1]} of {len(records)} "
           f"trials): {reasons.most_common(1)[0][0]}" if reasons else "")
    return f"no trial produced a value{why}"


def _search(study: Study, registry: Any, run: RunDir, resume: bool, address: str | None,
            verbose: bool, made: list[str], created: list[Path], quiet: bool) -> Any:
    """Run the search with its live view; then its summary and report."""
    from rich.console import Console

    from autostage.live import QuietView, SearchView, print_summary
    from autostage.search import run_search

    console = Console(highlight=False)
    view = QuietView() if quiet else SearchView(console)
    try:
        outcome = run_search(study, registry, run, resume=resume, address=address, view=view,
                             verbose=verbose)
    except AutostageError:
        if not resume and not (run.path / "trials").exists():
            forget(run, made, created)  # nothing ran: leave no half-made run directory
        raise
    finally:
        view.stop()
    if not quiet:
        print_summary(console, outcome, study.study)
    _write_report(console, run, registry.host, quiet)
    return outcome


def _write_report(console: Any, run: RunDir, host: Any, quiet: bool = False) -> None:
    """The study report, with figures from the plugins this search loaded."""
    from rich.markup import escape

    from autostage.report import write_report

    try:
        path = write_report(run.path, host=host)
    except Exception as e:  # the search's results are on disk: a report can be made later
        console.print(f"[yellow]could not write the report[/]: {escape(type(e).__name__)}: "
                      f"{escape(str(e))} (try `autostage report {escape(str(run.path))}`)",
                      highlight=False, soft_wrap=True)
        return
    if not quiet:
        console.print(f"report: {escape(str(path))}", highlight=False, soft_wrap=True)
