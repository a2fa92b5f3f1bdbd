"""The second pass over a study: everything that depends on the installed plugins (names,
field types and bounds, objectives, metrics, stage plans, and what the trainer's and the data
sources' `preflight` find: files, directories, devices). `load_study` is the one door both
`validate` and `search` go through, so what validates is what runs."""

from __future__ import annotations

import contextlib
import difflib
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autostage.checkpoint_store import uri_problem
from autostage.errors import Problem, StudyError
from autostage.fields import check_value, fields_of
from autostage.host import Registry
from autostage.keys import PLAN_SEP, TOKENS, join_plan, parse_metric, split_plan
from autostage.kinds import DEFAULTS, IN_STUDY, LISTED_IN_STUDY, PER_STAGE, SEARCHABLE_KINDS
from autostage.space import stage_plans
from autostage.spec import (
    Study,
    apply_overrides,
    parse_sections,
    read_toml,
    source_objectives,
)

MAX_PLANS = 1000


def load_study(
    path: str | Path, registry: Registry, overrides: list[str] | tuple[str, ...] = ()
) -> Study:
    """Read, override, parse and check a study file; raise one StudyError with every problem.
    Relative paths become absolute: the file's against its folder, --set's against the
    current directory (`resolve_paths`)."""
    raw = read_toml(path)
    resolve_paths(raw, registry, Path(path).resolve().parent)
    problems = apply_overrides(raw, list(overrides))
    resolve_paths(raw, registry, Path.cwd())
    sections, found = parse_sections(raw)
    problems += found
    problems += check(sections, registry, raw)
    if problems:
        raise StudyError(str(path), problems)
    study = Study(**sections)
    if study.study.first_trials:  # checked against the search space the rest defines
        from autostage import first_trials
        from autostage.space import compile_space

        if found := first_trials.problems(study.study.first_trials,
                                          compile_space(study, registry)):
            raise StudyError(str(path), found)
    return study


def resolve_paths(raw: dict[str, Any], registry: Registry, base: Path) -> None:
    """Make every relative path in `raw` absolute against `base`, in place: the fields the
    trainer and the datasets declare as paths (`fields.LocalPath`, `PathOrName`), the run
    directories of study.warm_start and a study.checkpoints folder. A trial then reads what
    `validate` checked, on whichever node and in whichever directory it runs."""
    for kind, name, table in _plugin_tables(raw):
        if not registry.has(kind, name):
            continue  # reported as an unknown plugin
        for key, info in fields_of(registry.get(kind, name)).items():
            if info.path is not None and isinstance(table.get(key), str):
                table[key] = _absolute(table[key], base, info.path.or_name)
    study = raw.get("study")
    if not isinstance(study, dict):
        return
    if isinstance(study.get("warm_start"), list):
        study["warm_start"] = [_absolute(p, base) if isinstance(p, str) else p
                               for p in study["warm_start"]]
    if isinstance(study.get("checkpoints"), str) and "://" not in study["checkpoints"]:
        study["checkpoints"] = _absolute(study["checkpoints"], base)


def _plugin_tables(raw: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, plugin name, its table) of [model] and every [data.<name>]."""
    model, data = raw.get("model"), raw.get("data")
    if isinstance(model, dict) and isinstance(model.get("trainer"), str):
        yield "trainer", model["trainer"], model
    for source in data.values() if isinstance(data, dict) else ():
        if isinstance(source, dict) and isinstance(source.get("dataset"), str):
            yield "dataset", source["dataset"], source


def _absolute(value: str, base: Path, or_name: bool = False) -> str:
    """`value` as an absolute path against `base` (a name, for `or_name`, unless that path
    exists). "~" is the user's home; "" stays as it is (a problem the plugin names)."""
    if not value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    joined = Path(os.path.normpath(base / path))
    return value if or_name and not joined.exists() else str(joined)


@dataclass(frozen=True)
class Context:
    """What the checks read: the sections that parsed, the registry, and the names the raw
    document defines (a data source or stage whose own table is broken is still defined:
    its problem is reported once, where it is, not again wherever it is named)."""

    sections: dict[str, Any]
    registry: Registry
    data_names: frozenset[str]
    stage_names: frozenset[str]


def check(sections: dict[str, Any], registry: Registry, raw: dict[str, Any]) -> list[Problem]:
    """Every registry-dependent problem of the sections that parsed."""
    data, stages = raw.get("data"), raw.get("stage")
    ctx = Context(
        sections, registry,
        frozenset(data) if isinstance(data, dict) else frozenset(),
        frozenset(s.get("name") for s in stages if isinstance(s, dict))
        if isinstance(stages, list) else frozenset(),
    )
    problems: list[Problem] = []
    for checker in (_check_study, _check_model, _check_data, _check_stages, _check_metric,
                    _check_search, _check_plan, _check_lineage, _check_preflight):
        problems.extend(checker(ctx))
    return problems


def _unknown(kind: str, name: str, registry: Registry) -> str:
    names = registry.names(kind)
    hint = difflib.get_close_matches(name, names, n=1)
    did = f"did you mean '{hint[0]}'? " if hint else ""
    return f"no {kind} named '{name}'; {did}installed: {', '.join(names) or 'none'}"


def _check_study(ctx: Context) -> Iterator[Problem]:
    sections, registry = ctx.sections, ctx.registry
    study = sections.get("study")
    if study is None:
        return
    for kind in IN_STUDY:
        name = getattr(study, kind)
        if not registry.has(kind, name):
            yield Problem(f"study.{kind}", _unknown(kind, name, registry))
        else:
            yield from _check_settings(kind, name, getattr(study, f"{kind}_settings"),
                                       f"study.{kind}_settings", registry)
    for kind in LISTED_IN_STUDY:
        yield from _check_listed(kind, study, registry)
    for metric in sorted({m for m in study.metrics if study.metrics.count(m) > 1}):
        yield Problem("study.metric", f"'{metric}' is listed twice; name each metric once")
    if study.storage is not None and (why := storage_problem(study.storage)) is not None:
        yield Problem("study.storage", why)
    if study.checkpoints is not None and (why := uri_problem(study.checkpoints)) is not None:
        yield Problem("study.checkpoints", why)
    if len(study.metrics) != len(study.modes):
        yield Problem("study.mode", f"give one mode, or one per metric ({len(study.metrics)})")
    if len(study.metrics) > 1 and study.trial_scheduler != "fifo":
        yield Problem("study.trial_scheduler", f"'{study.trial_scheduler}' stops trials by one "
                      f"metric; with {len(study.metrics)} metrics use \"fifo\"")
    if len(study.metrics) > 1 and study.target is not None:
        yield Problem("study.target", f"a target is one value of one metric; with "
                      f"{len(study.metrics)} metrics the search has no single goal to stop at: "
                      "drop study.target, or search one metric")
    sampler = registry.entries["sampler"].get(study.sampler)
    if len(study.metrics) > 1 and sampler and not sampler.cls.multi_objective:
        multi = [n for n in registry.names("sampler") if registry.get("sampler", n).multi_objective]
        yield Problem("study.sampler", f"'{study.sampler}' handles one metric; with "
                      f"{len(study.metrics)} metrics use one of: {', '.join(multi)}")
    for path in study.warm_start:
        if not (Path(path) / "study.json").is_file():
            yield Problem("study.warm_start", f"{path} is not a run directory (no study.json "
                          "there): name the --out directory of an earlier `autostage search`")


def _check_listed(kind: str, study: Any, registry: Registry) -> Iterator[Problem]:
    """`[study] <kind>s` (names, each once) and `<kind>_settings.<name>` (tables of the listed
    ones' fields); then what each listed component's `check()` finds (a missing package)."""
    names, settings = getattr(study, f"{kind}s"), getattr(study, f"{kind}_settings")
    for i, name in enumerate(names):
        if name in names[:i]:
            yield Problem(f"study.{kind}s", f"'{name}' is listed twice; name each once")
        elif not registry.has(kind, name):
            yield Problem(f"study.{kind}s", _unknown(kind, name, registry))
    for name in settings:
        if name not in names:
            yield Problem(f"study.{kind}_settings.{name}",
                          f"settings for {kind} '{name}', which study.{kind}s does not list "
                          f"({', '.join(names) or 'none'}): add it there, or drop its table")
    for name in dict.fromkeys(n for n in names if registry.has(kind, n)):
        path = f"study.{kind}_settings.{name}"
        found = list(_check_settings(kind, name, settings.get(name, {}), path, registry))
        yield from found
        if not found:
            for problem in registry.create(kind, name, settings.get(name, {})).check():
                yield Problem(f"study.{kind}s", f"{kind} '{name}' {problem}")


def storage_problem(url: str) -> str | None:
    """What is wrong with an Optuna RDB URL, found without connecting: a URL SQLAlchemy
    cannot parse, a dialect or driver that is not installed, an SQLite file whose folder is
    missing or read-only. None when nothing is."""
    import os

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        return f"not a database URL SQLAlchemy can read ({e}); e.g. sqlite:///path/optuna.db"
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return (f"no database dialect '{parsed.drivername}' is installed; use an Optuna RDB "
                "URL such as sqlite:///path/optuna.db, postgresql://user@host/db or "
                "mysql://user@host/db")
    try:
        dialect.import_dbapi()
    except ImportError as e:
        backend = parsed.get_backend_name()
        return (f"the module '{getattr(e, 'name', None) or e}' that {parsed.drivername}:// "
                f"URLs connect through is not installed; install it (pip), or name an "
                f"installed driver in the URL: {backend}+<driver>://...")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        file = Path(parsed.database)
        folder = file.parent
        if file.is_dir():
            return f"{file} is a directory; name the SQLite file to keep the study in"
        if not folder.is_dir():
            return (f"the folder {folder} of the SQLite file does not exist; create it, or "
                    "name a file in an existing folder")
        if not file.exists() and not os.access(folder, os.W_OK):
            return f"cannot create {file.name} in {folder}: the folder is not writable"
    return None


def _check_settings(kind: str, name: str, settings: dict[str, Any], path: str,
                    registry: Registry) -> Iterator[Problem]:
    """A component's fixed settings (the [model] or [data.x] table) against its fields."""
    cls = registry.get(kind, name)
    fields = fields_of(cls)
    problems = []
    for key, value in settings.items():
        if key not in fields:
            problems.append(Problem(f"{path}.{key}", _unknown_field(kind, name, key, fields)))
        elif (why := check_value(cls, key, value)) is not None:
            problems.append(Problem(f"{path}.{key}", why))
    for key, info in fields.items():
        if info.required and key not in settings:
            problems.append(Problem(f"{path}.{key}",
                                    f"required by {kind} '{name}': {info.type_text()}"))
    yield from problems or _check_together(cls, settings, path)


def _check_together(cls: Any, settings: dict[str, Any], path: str) -> Iterator[Problem]:
    """Rules between fields (the plugin's own validators), once each field is fine alone:
    otherwise they would only fail when a trial starts."""
    try:
        cls(**settings)
    except ValidationError as e:
        for err in e.errors():
            if not err["loc"]:
                yield Problem(path, err["msg"].removeprefix("Value error, "))


def _unknown_field(kind: str, name: str, key: str, fields: dict) -> str:
    hint = difflib.get_close_matches(key, list(fields), n=1)
    did = f"did you mean '{hint[0]}'? " if hint else ""
    return (f"{kind} '{name}' has no field '{key}'; {did}"
            f"fields: {', '.join(fields) or 'none'}")


def _check_model(ctx: Context) -> Iterator[Problem]:
    sections, registry = ctx.sections, ctx.registry
    model = sections.get("model")
    if model is None:
        return
    if not registry.has("trainer", model.trainer):
        yield Problem("model.trainer", _unknown("trainer", model.trainer, registry))
        return
    yield from _check_settings("trainer", model.trainer, model.settings, "model", registry)
    yield from _check_workers(ctx.sections.get("study"), registry.get("trainer", model.trainer),
                              model.settings)


def _check_workers(study: Any, trainer: Any, settings: dict[str, Any]) -> Iterator[Problem]:
    """Data-parallel trials (`study.resources.workers` > 1) need a trainer that can split a
    trial across processes, under these settings (a batch the workers can share)."""
    if study is None or study.resources.workers == 1:
        return
    if 0 < (gpus := study.resources.gpus) < 1:
        yield Problem("study.resources.gpus", f"{gpus:g}: data-parallel workers on GPUs need "
                      "a whole GPU each (NCCL, which reduces their gradients, runs one worker "
                      "per GPU); use gpus = 1, or gpus = 0 to train on CPUs")
    try:
        configured = trainer(**settings)
    except ValidationError:
        return  # reported with the [model] table's settings
    for problem in configured.check_workers(study.resources.workers):
        yield Problem("study.resources.workers", problem)


def _check_data(ctx: Context) -> Iterator[Problem]:
    sections, registry = ctx.sections, ctx.registry
    for name, source in (sections.get("data") or {}).items():
        if not registry.has("dataset", source.dataset):
            yield Problem(f"data.{name}.dataset", _unknown("dataset", source.dataset, registry))
            continue
        yield from _check_settings("dataset", source.dataset, source.settings,
                                   f"data.{name}", registry)


def _check_preflight(ctx: Context) -> Iterator[Problem]:
    """What a trial would trip on as it starts — a missing data file or pretrained directory,
    a text too short for its passages, no CUDA for `device = "cuda"` —: the trainer's and the
    data sources' `preflight`, by the very function every trial calls as it starts."""
    from autostage.build import preflight
    from autostage.components import PreflightContext

    sections, registry = ctx.sections, ctx.registry
    data = {}
    for name, source in (sections.get("data") or {}).items():
        if registry.has("dataset", source.dataset):
            with contextlib.suppress(ValidationError):  # reported with the table's settings
                data[name] = registry.get("dataset", source.dataset)(**source.settings)
    trainer = None
    if (cls := _trainer(sections, registry)) is not None:
        with contextlib.suppress(ValidationError):
            trainer = cls(**sections["model"].settings)
    study, stages = sections.get("study"), sections.get("stage")
    objectives = source_objectives(stages, cls.objectives[0], study.metrics,
                                   [s.watch for s in stages if s.watch]) \
        if cls is not None and study is not None and stages else {}
    yield from preflight(PreflightContext(tuple(sorted(ctx.data_names)), data, trainer,
                                          objectives))


def _trainer(sections: dict[str, Any], registry: Registry) -> Any:
    model = sections.get("model")
    if model is not None and registry.has("trainer", model.trainer):
        return registry.get("trainer", model.trainer)
    return None


def _check_stages(ctx: Context) -> Iterator[Problem]:
    sections, registry = ctx.sections, ctx.registry
    stages = sections.get("stage")
    if stages is None:
        return
    trainer = _trainer(sections, registry)
    finals = [s.name for s in stages if s.final]
    if len(finals) > 1:  # reported alone: "must be the last" for each would only follow from it
        yield Problem("stage", f"only one stage may be final (it ends every trial); these are: "
                      f"{', '.join(finals)}")
    seen: set[str] = set()
    for i, stage in enumerate(stages):
        path = f"stage.{stage.name}"
        if stage.name in seen:
            yield Problem(f"{path}.name", f"duplicate stage name '{stage.name}'; "
                          "stage names must be unique")
        seen.add(stage.name)
        if stage.final and i != len(stages) - 1 and len(finals) == 1:
            yield Problem(f"{path}.final", "the final stage must be the last [[stage]] "
                          "(it always runs last); move it to the end")
        yield from _check_stage_data(stage, path, ctx.data_names)
        if trainer is not None and stage.objective is not None and \
                stage.objective not in trainer.objectives:
            yield Problem(f"{path}.objective", f"trainer '{sections['model'].trainer}' has no "
                          f"objective '{stage.objective}'; it has: "
                          f"{', '.join(trainer.objectives)}")
        if stage.eval_every is not None and stage.eval_every > stage.tokens:
            yield Problem(f"{path}.eval_every", f"{stage.eval_every} is more than the stage's "
                          f"tokens ({stage.tokens}): it would never evaluate")
        for kind in PER_STAGE:
            name = getattr(stage, kind)
            if name is not None and not registry.has(kind, name):
                yield Problem(f"{path}.{kind}", _unknown(kind, name, registry))
    yield from _check_trainer_objectives(sections, trainer, stages)


def _check_trainer_objectives(sections: dict[str, Any], trainer: Any,
                              stages: list) -> Iterator[Problem]:
    if trainer is None:
        return
    try:
        configured = trainer(**sections["model"].settings)
    except ValidationError:
        return  # reported with the [model] table's settings
    chosen = {s.objective or trainer.objectives[0] for s in stages}
    for problem in configured.check_objectives(chosen):
        yield Problem("model", problem)


def _check_stage_data(stage: Any, path: str, data: frozenset[str]) -> Iterator[Problem]:
    known = ", ".join(sorted(data)) or "none (add a [data.<name>] table)"
    for source in stage.sources + stage.evals:
        if source not in data:
            yield Problem(f"{path}.data" if source in stage.sources else f"{path}.evals",
                          f"no data source named '{source}'; defined: {known}")
    if isinstance(stage.data, dict):
        bad = False
        for source, weight in stage.data.items():
            for problem in _check_weight(weight, f"{path}.data.{source}"):
                bad = True
                yield problem
        highest = [w["high"] if isinstance(w, dict) else w for w in stage.data.values()]
        if stage.data and not bad and max(highest) <= 0:
            yield Problem(f"{path}.data", "every weight of the mixture is 0: the stage would "
                          "train on nothing; give at least one data source a weight > 0")


def _check_weight(weight: Any, path: str) -> Iterator[Problem]:
    if isinstance(weight, dict):
        yield from _check_range(weight, path, low_bound=0.0, integer=False)
    elif isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        yield Problem(path, f"a mixture weight is a number >= 0 or {{low, high}}, got {weight!r}")


def _check_metric(ctx: Context) -> Iterator[Problem]:
    sections, registry = ctx.sections, ctx.registry
    """The study metric, and any stage's `watch`, name a data source and a trainer metric.

    Every stage evaluates the study metric's data source (so trial schedulers can compare
    trials at any eval): a metric is evaluated as soon as its data source exists."""
    study, stages, data = sections.get("study"), sections.get("stage"), ctx.data_names
    places = [("study.metric", m) for m in (study.metrics if study else [])]
    places += [(f"stage.{s.name}.watch", s.watch) for s in stages or [] if s.watch]
    trainer = _trainer(sections, registry)
    evaluated_as = _evaluated_as(trainer, stages, places)
    for i, (path, metric) in enumerate(places):
        if metric == TOKENS and path == "study.metric":
            if i == 0:
                yield Problem(path, "the first metric must be an eval (eval.<source>.<metric>)"
                              ": stage policies and trial schedulers judge trials by it; "
                              '"tokens" may come second')
            continue  # training tokens spent: a second objective every trial reports
        parsed = parse_metric(metric)
        if parsed is None or parsed.source is None:
            yield Problem(path, f"'{metric}' is not of the form eval.<data source>.<metric>, "
                          "e.g. eval.target.loss")
            continue
        source, name = parsed.source, parsed.name
        if source not in data:
            yield Problem(path, f"'{metric}': no data source named '{source}' to evaluate; "
                          f"defined: {', '.join(sorted(data)) or 'none'}")
        if trainer is not None and name not in trainer.metrics:
            yield Problem(path, f"'{metric}': trainer '{sections['model'].trainer}' reports no "
                          f"metric '{name}'; it reports: {', '.join(trainer.metrics)}")
        elif trainer is not None and source in evaluated_as:
            objective = evaluated_as[source]
            reported = trainer.objective_metrics.get(objective, trainer.metrics)
            if name not in reported:
                yield Problem(path, f"'{metric}': data source '{source}' is evaluated as "
                              f"{objective} (by the objective of the stage training on it), "
                              f"which reports {', '.join(reported)}")


def _evaluated_as(trainer: Any, stages: list | None, places: list) -> dict[str, str]:
    if trainer is None or not stages:
        return {}
    metrics = [m for p, m in places if p == "study.metric"]
    watches = [m for p, m in places if p != "study.metric"]
    return source_objectives(stages, trainer.objectives[0], metrics, watches)


def _check_search(ctx: Context) -> Iterator[Problem]:
    sections, registry = ctx.sections, ctx.registry
    search = sections.get("search")
    if search is None:
        return
    model = sections.get("model")
    for kind in SEARCHABLE_KINDS:
        for name, table in search.tables(kind).items():
            path = f"search.{kind}.{name}"
            if not registry.has(kind, name):
                yield Problem(path, _unknown(kind, name, registry))
                continue
            if kind == "trainer" and model is not None and name != model.trainer:
                yield Problem(path, f"the study's trainer is '{model.trainer}'; search its "
                              f"fields under [search.trainer.{model.trainer}]")
                continue
            yield from _check_table(registry.get(kind, name), kind, name, table, path)
            if kind == "trainer" and model is not None:
                yield from _check_choices_together(registry.get(kind, name), model.settings,
                                                   table, path)
    for kind, name in DEFAULTS.items():
        if not search.tables(kind) and not registry.has(kind, name):
            yield Problem(f"search.{kind}", f"no {kind} chosen and the default '{name}' is not "
                          f"installed; add [search.{kind}.<name>] naming one of: "
                          f"{', '.join(registry.names(kind))}")


def _check_table(cls: Any, kind: str, name: str, table: dict, path: str) -> Iterator[Problem]:
    fields = fields_of(cls)
    for key, spec in table.items():
        where = f"{path}.{key}"
        if key not in fields:
            yield Problem(where, _unknown_field(kind, name, key, fields))
            continue
        info = fields[key]
        if isinstance(spec, dict):
            if not info.numeric:
                yield Problem(where, f"a range needs a numeric field; '{key}' is "
                              f"{info.type_text()}: give a value or a list of choices")
                continue
            yield from _check_range(spec, where, integer=info.type == "int", cls=cls, key=key)
        elif isinstance(spec, list):
            if not spec:
                yield Problem(where, "an empty list of choices; give at least one value")
            for value in spec:
                if (why := check_value(cls, key, value)) is not None:
                    yield Problem(where, f"choice {why}")
        elif (why := check_value(cls, key, spec)) is not None:
            yield Problem(where, why)


def _check_choices_together(cls: Any, settings: dict[str, Any], table: dict,
                            path: str) -> Iterator[Problem]:
    """Each searched value of a trainer field with the [model] table's settings, by the
    trainer's own rules between fields (arch and norm, n_embd and n_head): otherwise every
    trial that draws a value that cannot be would fail alone, at its start."""
    if any(_check_together(cls, settings, path)):
        return  # the [model] table alone breaks a rule: reported with its settings
    for key, spec in table.items():
        for value in spec if isinstance(spec, list) else [] if isinstance(spec, dict) \
                else [spec]:
            for problem in _check_together(cls, {**settings, key: value}, path):
                yield Problem(f"{path}.{key}", f"choice {value!r}: {problem.message}")


def _check_range(spec: dict, where: str, integer: bool, cls: Any = None, key: str = "",
                 low_bound: float | None = None) -> Iterator[Problem]:
    extra = set(spec) - {"low", "high", "log"}
    if extra or "low" not in spec or "high" not in spec:
        yield Problem(where, "a range is {low = ..., high = ..., log = false}; "
                      f"got keys {', '.join(sorted(spec))}")
        return
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    unusable = False  # an end that is no number of the field's type: no order to compare
    for end, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (isinstance(value, float) and not math.isfinite(value)):
            yield Problem(f"{where}.{end}", f"expected a finite number, got {value!r}")
            unusable = True
            continue
        if integer and not isinstance(value, int):
            yield Problem(f"{where}.{end}", f"the field is an integer; got {value!r}")
            unusable = True
            continue
        if cls is not None and (why := check_value(cls, key, value)) is not None:
            yield Problem(f"{where}.{end}", why)
        if low_bound is not None and value < low_bound:
            yield Problem(f"{where}.{end}", f"must be >= {low_bound:g}, got {value!r}")
    if unusable:
        return
    if not isinstance(log, bool):
        yield Problem(f"{where}.log", f"expected true or false, got {log!r}")
    if not low < high:
        yield Problem(where, f"`low < high` must hold, got low={low!r}, high={high!r}; "
                      "for a fixed value write it without a range")
    if log is True and low <= 0:
        yield Problem(where, f"`log = true` needs low > 0, got low={low!r}")


def _check_lineage(ctx: Context) -> Iterator[Problem]:
    """A replayed lineage starts at 0 tokens and switches settings at ever more tokens (its
    parameters are checked as the trial is built: they name what the space must hold)."""
    steps = ctx.sections.get("lineage") or []
    if steps and steps[0].after_tokens != 0:
        yield Problem("lineage[1].after_tokens", "the lineage's first segment starts at 0 "
                      f"tokens, not {steps[0].after_tokens:,}")
    for i, (a, b) in enumerate(itertools.pairwise(steps), start=2):  # 1-based, as TOML's
        if b.after_tokens <= a.after_tokens:
            yield Problem(f"lineage[{i}].after_tokens", f"{b.after_tokens:,} must be more "
                          f"than the segment before's {a.after_tokens:,}")


def _check_plan(ctx: Context) -> Iterator[Problem]:
    sections = ctx.sections
    search, stages = sections.get("search"), sections.get("stage")
    if search is None or stages is None:
        return
    plan = search.plan
    movable = [s.name for s in stages if not s.final]
    finals = {s.name for s in stages if s.final}
    lists = [("reorder", plan.reorder), ("skip", plan.skip), ("repeat", list(plan.repeat))]
    bad = len(finals) > 1  # reported with the stages; no plan is well defined then
    for key, listed in lists:
        for name in sorted({n for n in listed if listed.count(n) > 1}):
            yield Problem(f"search.plan.{key}", f"'{name}' is listed twice; name each stage "
                          "once")
            bad = True
        for name in dict.fromkeys(listed):
            if name not in ctx.stage_names:
                yield Problem(f"search.plan.{key}", f"no stage named '{name}'; non-final "
                              f"stages: {', '.join(movable)}")
                bad = True
            elif name in finals and len(finals) == 1:
                yield Problem(f"search.plan.{key}", f"'{name}' is the final stage: it always "
                              "runs last, once")
                bad = True
    if plan.order is not None:
        given = [key for key, listed in lists if listed]
        if given:
            yield Problem("search.plan.order", "`order` fixes the stage plan, so "
                          f"{' / '.join(given)} would be ignored; give either `order` or "
                          "reorder / skip / repeat")
        if len(finals) <= 1:
            yield from _check_order(plan.order, stages)
        return
    for name, count in plan.repeat.items():
        if count < 1:
            yield Problem(f"search.plan.repeat.{name}", f"most visits must be >= 1, got {count}")
            bad = True
    if not bad:
        count = len(stage_plans(stages, plan, limit=MAX_PLANS + 1))
        if count > MAX_PLANS:
            yield Problem("search.plan", f"more than {MAX_PLANS} stage plans; narrow "
                          "reorder / skip / repeat")


def _check_order(order: str, stages: list) -> Iterator[Problem]:
    names = split_plan(order)
    known = [s.name for s in stages]
    if not names:
        yield Problem("search.plan.order", f"an empty order; write the stages joined by "
                      f"'{PLAN_SEP}': {join_plan(known)}")
        return
    final = next((s.name for s in stages if s.final), None)
    for name in names:
        if name not in known:
            yield Problem("search.plan.order", f"no stage named '{name}'; stages: "
                          f"{', '.join(known)} (write them joined by '{PLAN_SEP}')")
    if final is not None and (names[-1] != final or names.count(final) != 1):
        yield Problem("search.plan.order", f"the final stage '{final}' must end the order, once")
