"""Study files: TOML -> validated, frozen models. Structure only; `check.py` validates the
parts that depend on installed plugins. Every problem is collected, none raised alone."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    create_model,
)

from autostage.errors import Problem, StudyError
from autostage.keys import eval_sources
from autostage.kinds import KIND, SEARCHABLE_KINDS

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
# no "." in a stage's name: it is one part of the keys `mix.<stage>.<source>` and of
# `--set stage.<name>.<key>`
STAGE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"
# A name is part of parameter keys (`mix.<stage>.<source>`) and of Ray's config keys, which
# Ray splits on "/": any character outside these patterns is refused, never silently mangled.
DataName = Annotated[str, StringConstraints(pattern=NAME)]
STORAGE_URL = r"^[a-z0-9+]+://"
# the study's name names its run directory (runs/<name>): file names end at 255 bytes, and
# a run directory is typed and read by people
MAX_STUDY_NAME = 100


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Resources(Section):
    cpus: float = Field(1.0, gt=0, description="CPU cores per trial (per worker: workers)")
    gpus: float = Field(0.0, ge=0, description="GPUs per trial (per worker: workers); "
                        "fractions share one GPU")
    threads: int = Field(0, ge=0, le=4096, description=(
        "torch threads per trial; 0: a search's own Ray gives each trial cores / parallel, a "
        "cluster trial its cpus, `autostage trial` torch's default. A trial re-runs bit for "
        "bit only with the count it ran with (`best --export` writes it here)"))
    workers: int = Field(1, ge=1, le=4096, description=(
        "data-parallel workers per trial (Ray Train; gloo on CPU, NCCL on GPU), each with "
        "cpus and gpus of its own; they split every batch, so a trial trains as with 1. "
        "Needs a trainer that supports it (transformers)"))


class StudySection(Section):
    name: str = Field(pattern=NAME, max_length=MAX_STUDY_NAME)
    metric: str | list[str] = Field(description='e.g. "eval.target.loss"; two = multi-objective')
    mode: Literal["min", "max"] | list[Literal["min", "max"]] = "min"
    trials: int = Field(16, ge=1)
    parallel: int = Field(1, ge=1, description="trials running at once")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Optuna's samplers take 0..2**32-1")
    sampler: str = KIND["sampler"].default
    sampler_settings: dict[str, Any] = Field(
        default_factory=dict, description="the sampler's fields, e.g. {n_startup_trials = 4}")
    trial_scheduler: str = KIND["trial_scheduler"].default
    trial_scheduler_settings: dict[str, Any] = Field(
        default_factory=dict, description="the trial scheduler's fields, e.g. {grace_period = 1}")
    trackers: list[str] = Field(
        default_factory=list, description='experiment trackers the search also logs its '
        'trials to, e.g. ["mlflow", "tensorboard"]')
    tracker_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="each tracker's fields, by name, e.g. "
        '{mlflow = {tracking_uri = "http://127.0.0.1:5000"}}')
    token_budget: int | None = Field(None, gt=0, description="the search stops once spent")
    target: float | None = Field(
        None, allow_inf_nan=False, description="the search stops once a trial's metric reaches "
        "it (<= for min, >= for max): that trial ends at the eval that reached it, the others "
        "are stopped; `best` and the report say at what compute")
    retries: int = Field(0, ge=0, description="retries of a failed trial from its checkpoint")
    trial_time_limit: float | None = Field(
        None, ge=0, description="seconds a trial may run before it is failed; default: from "
        "its own pace and planned tokens (see README); 0: no limit")
    storage: str | None = Field(None, pattern=STORAGE_URL,
                                description="Optuna RDB URL; default: optuna.db in the run dir")
    checkpoints: str | None = Field(
        None, min_length=1, description="where Ray keeps stage checkpoints and exported "
        "models: s3://bucket/prefix, gs://..., or a folder every node sees; default: the run "
        "dir")
    resources: Resources = Resources()
    warm_start: list[str] = Field(
        default_factory=list,
        description="earlier run directories whose finished trials seed the sampler")
    first_trials: list[dict[str, Any]] = Field(
        default_factory=list, description="configurations run first, before the sampler "
        'proposes any: tables of parameters as `autostage best` names them, e.g. '
        '[{"optimizer.adamw.lr" = 3e-3, "plan.order" = "prereq>target"}]; what one leaves out '
        "is sampled")
    keep_models: int = Field(1, ge=0, le=1000,
                             description="final weights kept: the best k trials' (0: none)")
    keep_checkpoints: Literal["needed", "all"] = Field(
        "needed", description="needed: a trial's checkpoints go once it ended, but for those "
        "a branch may start from or a queued or running branch starts from; all: keep every one")

    @property
    def metrics(self) -> list[str]:
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def modes(self) -> list[str]:
        modes = [self.mode] if isinstance(self.mode, str) else list(self.mode)
        return modes * len(self.metrics) if len(modes) == 1 else modes


class ModelSection(BaseModel):
    """`trainer` plus the trainer's own fields (checked against the plugin in check.py)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    trainer: str

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DataSection(BaseModel):
    """`dataset` plus the dataset's own fields (checked against the plugin in check.py)."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    dataset: str

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class StageSection(Section):
    name: str = Field(pattern=STAGE_NAME)
    # One data source name, or a mixture {source = weight}; a weight may be a search range.
    data: str | dict[str, Any]
    objective: str | None = Field(None, description="default: the trainer's first objective")
    tokens: int = Field(gt=0, description="training tokens of one visit")
    eval_every: int | None = Field(None, gt=0, description="default: a quarter of `tokens`")
    evals: list[str] = Field(default_factory=list, description="extra data sources to evaluate")
    watch: str | None = Field(None, description="metric a stage policy judges this stage by")
    final: bool = False
    optimizer: str | None = None
    lr_schedule: str | None = None

    @property
    def sources(self) -> list[str]:
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def every(self) -> int:
        return self.eval_every or max(1, self.tokens // 4)


class PlanSection(Section):
    """Stage-order search over the non-final stages; the final stage always runs last."""

    order: str | None = Field(None, description='one fixed plan, e.g. "prereq>target"')
    reorder: list[str] = Field(default_factory=list, description="stages that may move")
    skip: list[str] = Field(default_factory=list, description="stages that may be left out")
    repeat: dict[str, int] = Field(default_factory=dict, description="stage -> most visits")


class _Search(Section):
    def tables(self, kind: str) -> dict[str, dict[str, Any]]:
        return getattr(self, kind)


# `[search.plan]`, then one `[search.<kind>.<name>]` table per candidate of a searchable kind.
SearchSection = create_model(
    "SearchSection",
    __base__=_Search,
    __module__=__name__,
    plan=(PlanSection, PlanSection()),
    **{kind: (dict[str, dict[str, Any]], Field(default_factory=dict))
       for kind in SEARCHABLE_KINDS},
)


class LineageStep(Section):
    """One segment of a branched trial's lineage, replayed as one trial: what `autostage best
    --export` writes for a trial that branched. The first segment is the lineage's root."""

    trial: int | None = Field(None, ge=0, description="the trial that trained this segment")
    after_tokens: int = Field(0, ge=0, description="tokens trained before it: 0 for the first")
    params: dict[str, Any] = Field(description="its parameters, as the trial's record holds them")


class Study(Section):
    study: StudySection
    model: ModelSection
    data: dict[DataName, DataSection]
    stage: list[StageSection] = Field(min_length=1)
    search: SearchSection = SearchSection()
    lineage: list[LineageStep] = Field(default_factory=list)

    def stage_named(self, name: str) -> StageSection:
        return next(s for s in self.stage if s.name == name)

    @property
    def final(self) -> StageSection | None:
        return next((s for s in self.stage if s.final), None)


# --- reading ------------------------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML document at `path`, or a StudyError with the line of a syntax error."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        problem = Problem("", f"cannot read the study file: {e.strerror}")
        raise StudyError(str(path), [problem]) from None
    except UnicodeDecodeError as e:
        problem = Problem("", f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); a study file is TOML, saved as UTF-8")
        raise StudyError(str(path), [problem]) from None
    try:
        return tomllib.loads(text)
    except RecursionError:
        problem = Problem("", "values nested too deeply to read; a study file nests tables "
                          "a few levels at most")
        raise StudyError(str(path), [problem]) from None
    except tomllib.TOMLDecodeError as e:
        line = f"line {e.lineno}, column {e.colno}" if hasattr(e, "lineno") else ""
        msg = getattr(e, "msg", str(e))
        raise StudyError(str(path), [Problem(line, f"TOML syntax error: {msg}")]) from None


SECTIONS: dict[str, TypeAdapter] = {
    "study": TypeAdapter(StudySection),
    "model": TypeAdapter(ModelSection),
    "data": TypeAdapter(dict[DataName, DataSection]),
    "stage": TypeAdapter(Annotated[list[StageSection], Field(min_length=1)]),
    "search": TypeAdapter(SearchSection),
    "lineage": TypeAdapter(list[LineageStep]),
}
OPTIONAL: dict[str, Any] = {"search": {}, "lineage": []}
# what to add for a missing section, as TOML writes it
ADD = {"study": "a [study] table", "model": "a [model] table",
       "data": "a [data.<name>] table per data source", "stage": "a [[stage]] table per stage"}


def parse_sections(raw: dict[str, Any]) -> tuple[dict[str, Any], list[Problem]]:
    """Validate each top-level section on its own, so one broken section does not hide the
    problems of the others. Returns the sections that parsed and every problem found."""
    parsed: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in raw:
        if key not in SECTIONS:
            hint = difflib.get_close_matches(key, list(SECTIONS), n=1)
            did = f"did you mean '{hint[0]}'? " if hint else ""
            problems.append(
                Problem(key, f"unknown section '{key}'; {did}allowed: {', '.join(SECTIONS)}")
            )
    for key, adapter in SECTIONS.items():
        if key not in raw and key not in OPTIONAL:
            problems.append(Problem(key, f"required; add {ADD[key]}"))
            continue
        value = raw.get(key, OPTIONAL.get(key))
        try:
            parsed[key] = adapter.validate_python(value, strict=True)
        except ValidationError as e:
            problems.extend(_problems(e, raw, key))
            partial = _without_errors(adapter, value, e, key)
            if partial is not None:
                parsed[key] = partial
    return parsed, problems


#: what a broken required field is replaced with so the rest of its section is still checked
STAND_IN = {"study": {"name": "unnamed"}}  # nothing else reads a study's name


def _without_errors(adapter: TypeAdapter, value: Any, error: ValidationError,
                    section: str) -> Any:
    """The section with its broken entries left out, so the registry checks can still run
    on the rest (every problem at once); None when even that does not parse."""
    bad = {err["loc"][0] for err in error.errors() if err["loc"]}
    if isinstance(value, dict):
        stand_in = STAND_IN.get(section, {})
        rest: Any = {k: stand_in.get(k, v) for k, v in value.items()
                     if k not in bad or k in stand_in}
    elif isinstance(value, list):
        rest = [v for i, v in enumerate(value) if i not in bad]
    else:
        return None
    try:
        return adapter.validate_python(rest, strict=True)
    except ValidationError:
        return None


def _problems(error: ValidationError, raw: dict[str, Any], section: str) -> list[Problem]:
    seen: dict[str, Problem] = {}
    for err in error.errors():
        path, parent = _toml_path((section, *err["loc"]), raw)
        if path in seen:  # one line per place: a union reports one error per member
            continue
        seen[path] = Problem(path, _message(err, parent))
    return list(seen.values())


def _toml_path(loc: tuple, raw: Any) -> tuple[str, Any]:
    """Turn a pydantic location into a TOML path, skipping union tags; also return the
    `loc` walked as far as the raw document goes (to list the keys a table allows)."""
    parts: list[str] = []
    node: Any = raw
    walked: list[Any] = []
    for item in loc:
        if isinstance(node, list) and isinstance(item, int) and item < len(node):
            name = node[item].get("name") if isinstance(node[item], dict) else None
            parts.append(str(name) if isinstance(name, str) else f"[{item + 1}]")
            node = node[item]
        elif isinstance(node, dict) and item in node:
            parts.append(str(item))
            node = node[item]
        elif isinstance(node, dict) and item not in node and not _is_tag(item):
            parts.append(str(item))  # a missing key
            node = None
        else:
            continue
        walked.append(item)
    return ".".join(parts).replace(".[", "["), tuple(walked)


def _is_tag(item: Any) -> bool:
    # pydantic names union members in a location: 'str', 'list[str]', 'function-after[...]'
    return isinstance(item, str) and ("[" in item or item in {"str", "int", "float", "bool"})


def _message(err: dict, loc: tuple) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "missing":
        return f"required; add `{loc[-1]} = ...`" if loc else "required"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        did = f"did you mean '{hint[0]}'? " if hint else ""
        return f"unknown key '{loc[-1]}'; {did}allowed: {', '.join(allowed)}"
    ctx = err.get("ctx") or {}
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"must be {bounds[kind]} {limit}, got {value!r}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '?')}, got {value!r}"
    if kind == "string_pattern_mismatch":
        return _pattern_message(str(ctx.get("pattern", "")), value, loc)
    if kind == "string_too_long":
        why = (": it names the run directory (runs/<name>), and file names end at 255 bytes"
               if loc[:2] == ("study", "name") else "")
        return (f"{len(value)} characters long; at most {ctx.get('max_length', '?')}{why}"
                if isinstance(value, str) else f"{err['msg']} (got {value!r})")
    if kind == "too_short":
        return "needs at least one entry"
    expected = {"int": "an integer", "float": "a number", "bool": "true or false",
                "string": "a string", "list": "a list", "dict": "a table", "model": "a table"}
    for prefix, words in expected.items():
        if kind.startswith(prefix):
            return f"expected {words}, got {value!r}"
    return f"{err['msg']} (got {value!r})"


def _pattern_message(pattern: str, value: Any, loc: tuple) -> str:
    if pattern == STORAGE_URL:
        return (f"{value!r} is not a database URL; write <dialect>://..., e.g. "
                "sqlite:///path/optuna.db or postgresql://user@host/db")
    allowed = "'_' or '-'" if pattern == STAGE_NAME else "'_', '-' or '.'"
    where = loc[0] if loc else ""
    why = {
        "study": "it names the run directory, runs/<name>",
        "stage": "it is one part of the keys mix.<stage>.<source> and --set stage.<name>.<key>",
        "data": "it is part of the keys mix.<stage>.<source> and eval.<source>.<metric>, "
                "and Ray splits its config keys on '/'",
    }.get(where)
    return (f"{value!r} is not a valid name: use letters, digits and {allowed}, starting with "
            f"a letter or digit" + (f" ({why})" if why else ""))


def _allowed_keys(loc: tuple) -> list[str]:
    """Field names of the section model found at `loc` (walking annotations from Study)."""
    model: Any = Study
    for item in loc:
        field = model.model_fields.get(item) if isinstance(item, str) else None
        if field is None:
            continue  # a list index or a dict key: the element type was already taken
        model = _element_model(field.annotation)
        if model is None:
            return []
    return list(model.model_fields) if model else []


def _element_model(annotation: Any) -> Any:
    """The section model inside `X`, `list[X]` or `dict[str, X]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, dict):
        return _element_model(get_args(annotation)[-1])
    return None


# --- --set overrides ----------------------------------------------------------------------


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> list[Problem]:
    """Apply `section.key=value` overrides to `raw` in place; return problems found.

    A value is read as TOML (`3`, `1e-3`, `true`, `"x"`, `{low = 1, high = 4}`); text that is
    not TOML stays a string, so `--set study.sampler=random` needs no quotes. Stages are
    addressed by name: `stage.target.tokens=1000`.
    """
    problems = []
    for item in overrides:
        key, eq, text = item.partition("=")
        key = key.strip()
        if not eq or not key:
            problems.append(Problem(f"--set {item}", "expected section.key=value"))
            continue
        try:
            # a path in the TOML document (`stage.target.tokens`), not a metric or parameter key
            _set(raw, key.split("."), _toml_value(text.strip()))
        except LookupError as e:
            problems.append(Problem(f"--set {key}", str(e)))
    return problems


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(node: Any, path: list[str], value: Any) -> None:
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = _stage_by_name(node, part, ".".join(path[: i + 1]))
            continue
        if not isinstance(node, dict):
            raise LookupError(f"'{'.'.join(path[:i])}' is a value, not a table")
        node = node.setdefault(part, {})
    if isinstance(node, list) or not isinstance(node, dict):
        raise LookupError(f"'{'.'.join(path)}' does not name a key of a table")
    node[path[-1]] = value


def _stage_by_name(stages: list, name: str, where: str) -> dict:
    for stage in stages:
        if isinstance(stage, dict) and stage.get("name") == name:
            return stage
    names = [s.get("name") for s in stages if isinstance(s, dict)]
    raise LookupError(f"no stage named '{name}' at {where}; stages: {', '.join(map(str, names))}")



def source_objectives(stages: list[StageSection], default: str, metrics: list[str],
                      watches: list[str] = ()) -> dict[str, str]:
    """The objective each data source is evaluated with — one rule, which `validate` checks
    and a trial builds with: that of the first stage that trains on it (a forgetting curve
    then measures one thing throughout); for a source a study metric is judged on, that of the
    last stage training on it (the model is judged as it ends: masked-LM pretraining on the
    target's texts, then classifying them, is judged by accuracy); for a source no stage
    trains on, that of the first stage evaluating it (every stage evaluates the study
    metrics' and the watched metrics' sources)."""
    judged = eval_sources(metrics)
    everywhere = eval_sources([*watches, *metrics])
    out: dict[str, str] = {}
    for stage in stages:
        for source in stage.sources:
            if source in judged:
                out[source] = stage.objective or default
            else:
                out.setdefault(source, stage.objective or default)
    for stage in stages:
        for source in (*stage.evals, *everywhere):
            out.setdefault(source, stage.objective or default)
    return out
