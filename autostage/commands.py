"""What the `best` command does beyond parsing its arguments: show a run's best trial (or
Pareto front), export that trial as a study file and copy its kept model. (A search starts in
`autostage.search_start`.)"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError
from autostage.keys import mix_key, parse_component_key
from autostage.models import disk_size, human_size, keeping_order, why_not_kept
from autostage.records import TrialRecord, lineage, prefix_tokens
from autostage.rundir import RunDir, write_shared_text
from autostage.spec import SEARCHABLE_KINDS, apply_overrides
from autostage.target import study_target_text


def show_best(path: Path, trial: int | None = None, export: str | None = None,
              export_model: str | None = None) -> int:
    """Show the best trial (a multi-objective study: its Pareto front), or trial `trial`;
    write the chosen trial as a study file (`export`) and copy its kept model (`export_model`).
    Everything is checked, and the study file made, before anything is printed or written: an
    error is one line, and nothing is written."""
    from rich.console import Console

    from autostage.live import print_front, print_trial
    from autostage.report.study_run import read_study

    run = RunDir(path)
    study = read_study(run)["study"]
    metrics, modes = _objectives(study)
    records = run.results()
    chosen = _chosen(run, records, modes, trial)
    text = _export_text(run, chosen, records, Path(export)) if export else None
    model = _kept_model(run, chosen, study, Path(export_model)) if export_model else None
    # written before anything is shown: a write that fails is then the one line printed
    wrote = _write_outputs(chosen.number, text, Path(export) if export else None, model,
                           Path(export_model) if export_model else None)
    console = Console(highlight=False)
    if trial is None and len(metrics) > 1:
        print_front(console, keeping_order(records, modes), metrics)
        if export or export_model:
            print(f"exporting trial {chosen.number}, the front's best {metrics[0]} "
                  "(--trial N chooses another)")
    else:
        print_trial(console, chosen.with_evals(run.evals(chosen.number)), metrics,
                    "best: " if trial is None else "")
    if (line := study_target_text(run, study)) is not None:
        print(line)
    for line in wrote:
        print(line)
    return 0


def _objectives(study: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The study's metrics and the mode of each, as study.json holds them."""
    metrics = study["metric"] if isinstance(study["metric"], list) else [study["metric"]]
    modes = study["mode"] if isinstance(study["mode"], list) else [study["mode"]]
    return metrics, modes * len(metrics) if len(modes) == 1 else modes


def _chosen(run: RunDir, records: list[TrialRecord], modes: list[str],
            number: int | None) -> TrialRecord:
    """Trial `number`, or by default the trial whose model is kept first: the best (the
    Pareto front's best by the first metric)."""
    if number is None:
        ranked = keeping_order(records, modes)
        if not ranked:
            raise AutostageError(f"no trial in {run.path} finished with a finite value")
        return ranked[0]
    for record in records:
        if record.number == number:
            return record
    have = ", ".join(str(r.number) for r in records) or "none"
    raise AutostageError(f"--trial {number}: {run.path} holds no result of trial {number}; "
                         f"trials with one: {have}")


def _export_text(run: RunDir, record: TrialRecord, records: list[TrialRecord],
                 target: Path) -> str:
    """The study file `--export` writes, made before anything is written: a lineage that
    cannot be followed is an error, not a file."""
    run.check_output(target, "--export")
    check_writable(target, "--export")
    return export_study(run, record, records)


def _kept_model(run: RunDir, record: TrialRecord, study: dict[str, Any],
                target: Path) -> Path:
    """The kept model of `record` to copy into `target`, or why it cannot be."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AutostageError(f"--export-model {target}: it exists and is not an empty "
                             "directory; give a new or empty one")
    check_writable(target, "--export-model")
    source = run.model_dir(record.number)
    if not source.is_dir():
        raise AutostageError(why_not_kept(run, record, study))
    return source


def check_writable(path: Path, option: str,
                   fix: str = "give a path in a folder you can write") -> None:
    """Refuse an output path no write could succeed at, before anything is written: one under
    a file, or in a folder this user cannot write. access() sees a read-only mount even for
    root, who ignores mode bits; what it cannot foresee (a full disk) the write itself
    reports, and undoes (`_write_outputs`)."""
    folder = path if path.is_dir() else path.parent
    try:
        ancestor = next(p for p in (folder, *folder.parents) if p.exists())
    except (OSError, StopIteration) as e:
        raise AutostageError(f"{option} {path}: cannot write there ({_why(e)}); {fix}") \
            from None
    if not ancestor.is_dir():
        raise AutostageError(f"{option} {path}: cannot write there, {ancestor} is a file, "
                             f"not a folder; {fix}")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise AutostageError(f"{option} {path}: cannot write there, {ancestor} is not "
                             f"writable (read-only); {fix}")


def _write_outputs(number: int, text: str | None, export: Path | None, model: Path | None,
                   target: Path | None) -> list[str]:
    """Write the exported study file, then copy the kept model, and say what was written;
    if either write fails, remove what this call wrote (the checks before cannot foresee a
    full disk) and say so in one line."""
    made: list[Path] = []  # what to remove if a write fails: new files and folders
    writing = ""
    try:
        if export is not None and text is not None:
            writing = f"--export {export}"
            made.append(_new_part(export))
            write_shared_text(export, text)
        if model is not None and target is not None:
            writing = f"--export-model {target}"
            made.append(_new_part(target))
            _copy_model(model, target)
    except OSError as e:
        _undo(made, target)
        raise AutostageError(f"{writing}: cannot write it ({_why(e)}), so nothing was "
                             "written; give a path in a folder you can write, with room for "
                             "it") from None
    wrote = [f"wrote {export}: run it with `autostage trial {export}`"] if export else []
    if model is not None and target is not None:
        wrote.append(f"wrote {target}: the model of trial {number} "
                     f"({human_size(disk_size(target))})")
    return wrote


def _new_part(path: Path) -> Path:
    """The topmost of `path` and its folders that does not exist yet (`path` itself when it
    exists: an empty folder the model goes into): what writing it creates."""
    new = path
    for parent in path.parents:
        if parent.exists():
            break
        new = parent
    return new


def _undo(made: list[Path], target: Path | None) -> None:
    """Remove what a failed write made: each new file or folder; an empty folder given as
    the model's target is emptied again, not removed."""
    import shutil

    for path in made:
        if path == target and path.is_dir() and not path.is_symlink():
            for child in list(path.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _copy_model(source: Path, target: Path) -> None:
    import shutil

    shutil.copytree(source, target, dirs_exist_ok=True)  # `target` is new or empty


def _why(error: BaseException) -> str:
    """An OSError's reason in words; shutil's copy gathers one per file: the first."""
    import shutil

    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list):
        return str(error.args[0][0][-1]) if error.args[0] else "copy failed"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error) or type(error).__name__


def export_study(run: RunDir, best: TrialRecord, records: list[TrialRecord] | None = None) -> str:
    """The run's study with the best trial's choices fixed: one trial, same seed, same plan.
    A branched trial's whole lineage is written: its root's choices, then a [[lineage]]
    segment per branch that switches to that branch's settings where it started."""
    import tomli_w

    raw = tomllib.loads(run.study_toml.read_text())
    apply_overrides(raw, run.settings().get("overrides", []))
    chain = _lineage(run, best, run.results() if records is None else records)
    root = chain[0]
    study = raw["study"]
    study.update(trials=1, parallel=1, seed=root.seed)
    study.pop("token_budget", None)
    search = raw.setdefault("search", {})
    for kind in SEARCHABLE_KINDS:
        _fix_kind(raw, search, kind, [r.config for r in chain])
    search["plan"] = {"order": root.plan} if root.plan else search.get("plan", {})
    for stage in raw.get("stage", []):
        if isinstance(stage.get("data"), dict):
            stage["data"] = {src: root.config.get(mix_key(stage["name"], src), w)
                             for src, w in stage["data"].items()}
    value = f"value {best.value:.6g}" if best.value is not None else "no value"
    header = (f"# Exported by `autostage best --export` from {run.path}: trial "
              f"{best.number}, {value}.\n" + _replay_note(raw, chain))
    if len(chain) > 1:
        raw["lineage"] = [{"trial": r.number, "after_tokens": prefix_tokens(r.branch),
                           "params": dict(r.config)} for r in chain]
        path = " > ".join(f"trial {r.number}" + (f" from {r.branch.tokens:,} tokens"
                                                  if r.branch else "") for r in chain)
        header += (f"# Trial {best.number} branched: its lineage ({path}) is replayed as one "
                   "trial, switching settings where each branch started ([[lineage]]).\n")
    return header + "\n" + tomli_w.dumps(raw)


def _replay_note(raw: dict[str, Any], chain: list[TrialRecord]) -> str:
    """Fix the torch threads the trial ran with (study.resources.threads), and say what a
    replay reproduces: threads change the order floats are summed in, and a run near a
    breakthrough may then end elsewhere."""
    counts = {r.threads for r in chain if r.threads}
    if len(counts) == 1:
        raw["study"].setdefault("resources", {})["threads"] = counts.pop()
        how = "bit for bit"
    else:  # not recorded (a run of an earlier version), or the lineage's trials differed
        how = ("closely, not bit for bit:\n# the run did not record one torch thread count "
               "for it; set study.resources.threads\n# to the count it ran with (a local "
               "search gives each trial cores / study.parallel)")
    return ("# Every choice is fixed; `autostage trial` on this file re-runs that trial "
            f"{how}.\n# Bit for bit needs the same torch threads (study.resources.threads), "
            "torch version and CPU\n# or GPU model: elsewhere the same trial sums floats in "
            "another order and ends close,\n# or, near a breakthrough, elsewhere.\n")


def _lineage(run: RunDir, record: TrialRecord, records: list[TrialRecord]
             ) -> list[TrialRecord]:
    """`record` and its ancestors, root first: each needs a result (its parameters)."""
    try:
        return lineage(record, {r.number: r for r in records}, source=run.path)
    except AutostageError as e:
        raise AutostageError(f"cannot export trial {record.number}: {e}; or export another "
                             "trial (--trial N)") from None


def _fix_kind(raw: dict[str, Any], search: dict[str, Any], kind: str,
              configs: list[Mapping[str, Any]]) -> None:
    """[search.<kind>] with the components `configs` chose, each with its settings as the
    first config choosing it had them (the root's first): a trial's parameters then decode.
    A stage-pinned component stays beside the chosen one; with one config, nothing else."""
    tables: dict[str, dict[str, Any]] = {}
    chosen_ever: list[str] = []
    for config in configs:
        for key, value in config.items():
            parsed = parse_component_key(key)
            if parsed is not None and parsed[0] == kind:
                tables.setdefault(parsed[1], {}).setdefault(parsed[2], value)
        chosen = config.get(kind)
        if chosen and chosen != raw.get("model", {}).get("trainer"):
            tables.setdefault(chosen, {})
        if chosen and chosen not in chosen_ever:
            chosen_ever.append(chosen)
    first = chosen_ever[0] if chosen_ever else None
    # the root's choice first, with every other one only because a stage pins it or a
    # later segment of the lineage chose it
    search[kind] = dict(sorted(tables.items(), key=lambda kv: kv[0] != first))
    if kind != "trainer" and len(search[kind]) > 1:
        pinned = {s.get(kind) for s in raw.get("stage", [])}
        search[kind] = {n: t for n, t in search[kind].items()
                        if n in chosen_ever or n in pinned}
        if len(search[kind]) > 1 and len(configs) == 1:
            raise AutostageError(f"cannot export: {kind} '{first}' was chosen alongside "
                                 f"stage-pinned {', '.join(search[kind])}")
    if not search[kind]:
        del search[kind]
