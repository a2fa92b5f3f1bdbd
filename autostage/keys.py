"""Metric and parameter keys: written and read here only, so no other module splits them.

Metric keys name what a trial reports: `eval.<data source>.<metric>` (a held-out metric of one
data source) and `train.<metric>` (a training-segment statistic). A data source's name may hold
dots; a metric's name never does, so the metric is the last part.

Parameter keys name what a trial was configured with — the same in the study file, Optuna, Ray
and reports: `<kind>` (which component of that kind), `<kind>.<name>.<field>` (a component's
setting), `plan.order` (the stage plan, stages joined by `>`), `plan.after.<prefix>` (the
rest of the plan a branch chose after the stages `<prefix>` its lineage had run) and
`mix.<stage>.<source>` (a mixture weight; a stage's name never holds a dot).
"""

from __future__ import annotations

from dataclasses import dataclass

PLAN_KEY = "plan.order"
PLAN_SEP = ">"
#: the Optuna user attribute of a branched trial: its `records.Branch`, as JSON
BRANCH_ATTR = "autostage_branch"
#: Optuna user attribute of a trial --resume queued again: the number of the trial it re-runs
REQUEUED_ATTR = "autostage_requeued"
TOKENS = "tokens"  # a second objective every trial reports: the training tokens it spent


@dataclass(frozen=True)
class MetricKey:
    """A parsed metric key: `source` is None for a `train.<metric>` key."""

    source: str | None
    name: str


def eval_metric(source: str, name: str) -> str:
    return f"eval.{source}.{name}"


def train_metric(name: str) -> str:
    return f"train.{name}"


def parse_metric(key: str) -> MetricKey | None:
    """`eval.<source>.<metric>` or `train.<metric>` parsed; None for anything else."""
    head, _, rest = key.partition(".")
    if head == "eval":
        source, _, name = rest.rpartition(".")
        return MetricKey(source, name) if source and name else None
    if head == "train" and rest and "." not in rest:
        return MetricKey(None, rest)
    return None


def eval_source(key: str) -> str | None:
    """The data source an `eval.<source>.<metric>` key is measured on; None otherwise."""
    parsed = parse_metric(key)
    return parsed.source if parsed is not None else None


def eval_sources(keys: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The data sources of the eval keys among `keys`, in order, once each."""
    return tuple(dict.fromkeys(s for k in keys if (s := eval_source(k)) is not None))


def metric_name(key: str) -> str:
    """The metric part of a metric key (`loss` of `eval.target.loss`); the key itself else."""
    parsed = parse_metric(key)
    return parsed.name if parsed is not None else key


def component_key(kind: str, name: str, field: str) -> str:
    return f"{kind}.{name}.{field}"


def parse_component_key(key: str) -> tuple[str, str, str] | None:
    """(kind, name, field) of a `<kind>.<name>.<field>` key; None for any other key."""
    parts = key.split(".")
    if len(parts) != 3 or parts[0] in ("plan", "mix", "eval", "train") or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def key_kind(key: str) -> str | None:
    """The kind a parameter key belongs to: `<kind>` (the choice) or `<kind>.<name>.<field>`;
    None for plan and mixture keys."""
    parsed = parse_component_key(key)
    if parsed is not None:
        return parsed[0]
    return key if "." not in key and key != PLAN_KEY else None


def mix_key(stage: str, source: str) -> str:
    return f"mix.{stage}.{source}"


def parse_mix_key(key: str) -> tuple[str, str] | None:
    """(stage, source) of a `mix.<stage>.<source>` key; None for any other key."""
    head, _, rest = key.partition(".")
    stage, _, source = rest.partition(".")
    return (stage, source) if head == "mix" and stage and source else None


def plan_after_key(prefix: tuple[str, ...] | list[str]) -> str:
    """The parameter of the plan's rest after `prefix` (a branch's choice of what follows)."""
    return f"plan.after.{join_plan(prefix)}"


def join_plan(stages: tuple[str, ...] | list[str]) -> str:
    return PLAN_SEP.join(stages)


def split_plan(plan: str) -> tuple[str, ...]:
    return tuple(plan.split(PLAN_SEP)) if plan else ()
