"""What the `search` and `best` commands do beyond parsing their arguments: start or resume
a search into a run directory, show its best trial, export that trial as a study file. Ray is
imported only once a search really starts."""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autostage.checkpoint_store import open_store
from autostage.errors import AutostageError
from autostage.keys import mix_key, parse_component_key
from autostage.models import disk_size, human_size, keeping_order, why_not_kept
from autostage.records import TrialRecord, best_trial
from autostage.rundir import RunDir
from autostage.search_start import (
    check_local_resources,
    check_resume,
    check_run_dir,
    forget,
    probe_storage,
    write_study,
)
from autostage.spec import SEARCHABLE_KINDS, Study, apply_overrides


def start_search(study_path: str, study: Study, registry: Any, overrides: list[str],
                 run: RunDir, *, resume: bool, address: str | None, verbose: bool) -> int:

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
        outcome = _search(study, registry, run, resume, address, verbose, made, created)
    finally:
        os.close(lock)
    if outcome.interrupted:
        return 130
    return 0 if best_trial(outcome.records, study.study.modes[0]) is not None \
        else _no_value(outcome.records)


def _search(study: Study, registry: Any, run: RunDir, resume: bool, address: str | None,
            verbose: bool, made: list[str], created: list[Path]) -> Any:
    """Run the search with its live view; then its summary and report."""
    from rich.console import Console

    from autostage.live import SearchView, print_summary
    from autostage.search import run_search

    console = Console(highlight=False)
    view = SearchView(console)
    try:
        outcome = run_search(study, registry, run, resume=resume, address=address, view=view,
                             verbose=verbose)
    except AutostageError:
        if not resume and not (run.path / "trials").exists():
            forget(run, made, created)  # nothing ran: leave no half-made run directory
        raise
    finally:
        view.stop()
    print_summary(console, outcome, study.study)
    _write_report(console, run, registry.host)
    return outcome


def _no_value(records: list[TrialRecord]) -> int:
    """A search none of whose trials produced a value failed, whatever ran: say why in one
    line (the commonest reason) and exit 1."""
    from collections import Counter

    reasons = Counter(r.reason for r in records if r.reason)
    why = (f"; most common reason ({reasons.most_common(1)[0][1]} of {len(records)} "
           f"trials): {reasons.most_common(1)[0][0]}" if reasons else "")
    print(f"error: no trial produced a value{why}", file=sys.stderr)
    return 1


def _write_report(console: Any, run: RunDir, host: Any) -> None:
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
    console.print(f"report: {escape(str(path))}", highlight=False, soft_wrap=True)


def show_best(path: Path, trial: int | None = None, export: str | None = None,
              export_model: str | None = None) -> int:
    """Show the best trial (a multi-objective study: its Pareto front), or trial `trial`;
    write the chosen trial as a study file (`export`) and copy its kept model (`export_model`).
    Everything is checked first: on an error nothing is written."""
    from rich.console import Console

    from autostage.live import print_front, print_trial

    run = RunDir(path)
    if not run.study_json.exists():
        raise AutostageError(f"{path} is not a run directory (no study.json); "
                             "give the --out directory of an `autostage search`")
    study = run.settings()["study"]["study"]
    metrics, modes = _objectives(study)
    records = run.results()
    chosen = _chosen(run, records, modes, trial)
    if export:
        run.check_output(Path(export), "--export")
    model = _kept_model(run, chosen, study, Path(export_model)) if export_model else None
    console = Console(highlight=False)
    if trial is None and len(metrics) > 1:
        print_front(console, keeping_order(records, modes), metrics)
        if export or export_model:
            print(f"exporting trial {chosen.number}, the front's best {metrics[0]} "
                  "(--trial N chooses another)")
    else:
        print_trial(console, chosen.with_evals(run.evals(chosen.number)), metrics,
                    "best: " if trial is None else "")
    if export:
        Path(export).write_text(export_study(run, chosen))
        print(f"wrote {export}: run it with `autostage trial {export}`")
    if model is not None:
        _copy_model(model, Path(export_model), chosen.number)
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


def _kept_model(run: RunDir, record: TrialRecord, study: dict[str, Any],
                target: Path) -> Path:
    """The kept model of `record` to copy into `target`, or why it cannot be."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise AutostageError(f"--export-model {target}: it exists and is not an empty "
                             "directory; give a new or empty one")
    source = run.model_dir(record.number)
    if not source.is_dir():
        raise AutostageError(why_not_kept(run, record, study))
    return source


def _copy_model(source: Path, target: Path, number: int) -> None:
    import shutil

    shutil.copytree(source, target, dirs_exist_ok=True)  # `target` is new or empty
    print(f"wrote {target}: the model of trial {number} ({human_size(disk_size(target))})")


def export_study(run: RunDir, best: TrialRecord) -> str:
    """The run's study with the best trial's choices fixed: one trial, same seed, same plan.
    A branched trial's whole lineage is written: its root's choices, then a [[lineage]]
    segment per branch that switches to that branch's settings where it started."""
    import tomli_w

    raw = tomllib.loads(run.study_toml.read_text())
    apply_overrides(raw, run.settings().get("overrides", []))
    chain = _lineage(run, best)
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
              f"{best.number}, {value}.\n"
              "# Every choice is fixed; `autostage trial` on this file re-runs that trial —\n"
              "# bit for bit with the torch threads the search gave it (`--threads N`; a local\n"
              "# search gives each trial cores / study.parallel): other counts sum floats in\n"
              "# another order, and a run near a breakthrough may then end elsewhere.\n")
    if len(chain) > 1:
        raw["lineage"] = [{"trial": r.number, "after_tokens": r.branch.tokens if r.branch else 0,
                           "params": dict(r.config)} for r in chain]
        path = " > ".join(f"trial {r.number}" + (f" from {r.branch.tokens:,} tokens"
                                                  if r.branch else "") for r in chain)
        header += (f"# Trial {best.number} branched: its lineage ({path}) is replayed as one "
                   "trial, switching settings where each branch started ([[lineage]]).\n")
    return header + "\n" + tomli_w.dumps(raw)


def _lineage(run: RunDir, record: TrialRecord) -> list[TrialRecord]:
    """`record` and its ancestors, root first (a parent without a result ends the chain)."""
    chain = [record]
    while (b := chain[-1].branch) is not None and len(chain) < 1000:
        parent = run.result(b.parent)
        if parent is None:
            raise AutostageError(f"cannot export trial {record.number}: it branched from "
                                 f"trial {b.parent}, whose result is not in {run.path}")
        chain.append(parent)
    return chain[::-1]


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
