"""The kinds of component, in one table: everything else about kinds is derived from it.

Each row names a kind, its base class in `autostage.components` (by class name: this module
imports nothing, so every other module may import it), the hook plugins register it through,
whether a study searches its fields, where a study names which component of the kind it uses,
and the default when the study names none (with why that default).

`autostage.hookspecs` still spells out one hook function per kind (pluggy reads functions);
tests/study/test_kinds.py checks that table and hookspecs agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where a study names which component of a kind it uses:
#: "search" — a `[search.<kind>.<name>]` table per candidate (the default when there is none);
#: "model" — `[model] trainer`; "data" — `dataset` in each `[data.<name>]`;
#: "study" — `[study] <kind>` with its fields in `<kind>_settings`;
#: "study_list" — `[study] <kind>s`, a list of names (none by default), each one's fields in
#: `<kind>_settings.<name>`.
NamedIn = Literal["search", "model", "data", "study", "study_list"]


@dataclass(frozen=True)
class Kind:
    name: str
    base: str  # the base class's name in autostage.components
    hook: str  # the register hook in autostage.hookspecs
    searchable: bool  # a study may have [search.<kind>.<name>] tables (ranges over its fields)
    named_in: NamedIn
    default: str | None  # the component used when the study names none; None: it must name one
    why: str  # why that default (or where the study names it)
    per_stage: bool = False  # a [[stage]] may pin its own (`optimizer = "sgd"`)


TABLE: tuple[Kind, ...] = (
    Kind("optimizer", "Optimizer", "register_optimizers", True, "search", "adamw",
         "the usual optimizer for transformers; robust to its LR", per_stage=True),
    Kind("lr_schedule", "LRSchedule", "register_lr_schedules", True, "search", "constant",
         "a stage's LR path is then the policy's doing alone", per_stage=True),
    Kind("stage_policy", "StagePolicy", "register_stage_policies", True, "search", "fixed",
         "no in-trial feedback unless the study asks for it"),
    Kind("init", "Init", "register_inits", True, "search", "default",
         "the trainer's own initialisation"),
    Kind("trainer", "Trainer", "register_trainers", True, "model", None,
         "the study's [model] trainer: there is no sensible default model"),
    Kind("dataset", "Dataset", "register_datasets", False, "data", None,
         "each [data.<name>] table names its dataset"),
    Kind("sampler", "Sampler", "register_samplers", False, "study", "tpe",
         "handles conditional spaces and several metrics; parallel trials stay apart"),
    Kind("trial_scheduler", "TrialScheduler", "register_trial_schedulers", False, "study",
         "fifo", "every trial runs to its end unless the study asks to stop some early"),
    Kind("tracker", "Tracker", "register_trackers", False, "study_list", None,
         "the run directory is the record; a study lists the trackers it also logs to"),
)

KIND: dict[str, Kind] = {k.name: k for k in TABLE}
KINDS: tuple[str, ...] = tuple(KIND)
REGISTER_HOOKS: dict[str, str] = {k.name: k.hook for k in TABLE}
SEARCHABLE_KINDS: tuple[str, ...] = tuple(k.name for k in TABLE if k.searchable)
#: The component a trial uses when a study has no [search.<kind>] table for a kind.
DEFAULTS: dict[str, str] = {
    k.name: k.default for k in TABLE if k.named_in == "search" and k.default is not None
}
#: Kinds a [[stage]] may pin; kinds named in [study] (with their `<kind>_settings`).
PER_STAGE: tuple[str, ...] = tuple(k.name for k in TABLE if k.per_stage)
IN_STUDY: tuple[str, ...] = tuple(k.name for k in TABLE if k.named_in == "study")
#: Kinds a study lists in [study] `<kind>s` (with `<kind>_settings.<name>` tables).
LISTED_IN_STUDY: tuple[str, ...] = tuple(k.name for k in TABLE if k.named_in == "study_list")


def default_name(kind: str, study: object) -> str | None:
    """The component of `kind` a study uses when it names none among candidates: the
    table's default, or (for the trainer) the one its [model] table names."""
    row = KIND[kind]
    if row.named_in == "model":
        return study.model.trainer  # type: ignore[attr-defined]
    return row.default
