"""Every extension point of autostage. A plugin implements any of these with `@hookimpl`.

Each `register_*` hook is called once, when the plugin host builds its registry (at the start
of `validate`, `trial`, `search`, `plugins`), with a `register(name, component_class)` callable.
`component_class` subclasses the kind's base in `autostage.components`; its pydantic fields
are its hyperparameters. Registering a name another plugin already registered is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from autostage.records import TrialRecord

hookspec = pluggy.HookspecMarker("autostage")
hookimpl = pluggy.HookimplMarker("autostage")

Register = Callable[[str, type], None]


@hookspec
def register_optimizers(register: Register) -> None:
    """Register `Optimizer` subclasses: `build(params)` returns a torch optimizer."""


@hookspec
def register_lr_schedules(register: Register) -> None:
    """Register `LRSchedule` subclasses: `multiplier(done, total)` scales the peak LR."""


@hookspec
def register_stage_policies(register: Register) -> None:
    """Register `StagePolicy` subclasses: `decide(history)` runs after every eval of a trial."""


@hookspec
def register_inits(register: Register) -> None:
    """Register `Init` subclasses: `apply(model)` runs once on a freshly built model."""


@hookspec
def register_trainers(register: Register) -> None:
    """Register `Trainer` subclasses: `start(setup)` returns a run the trial loop drives."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register `Dataset` subclasses: the `dataset` named in a study's `[data.<name>]` table."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register `Sampler` subclasses: `build(seed)` returns an Optuna sampler."""


@hookspec
def register_trial_schedulers(register: Register) -> None:
    """Register `TrialScheduler` subclasses: `build(metric, mode, time_attr, max_t)`."""


@hookspec
def register_trackers(register: Register) -> None:
    """Register `Tracker` subclasses: `start(run_dir, study)`, called on the search's driver,
    returns a run that receives every trial's parameters, evals and outcome."""


@hookspec
def report_figures(records: list[TrialRecord]) -> list[Any]:
    """Called when a report is written; return a list of extra Plotly figures.

    `records` is a list of `autostage.records.TrialRecord`, one per trial with a result or an
    eval, by trial number: `number`, `status` (a `TrialStatus`; `RUNNING` while the trial has
    no result yet), `reason`, `values`, `tokens`, `seed`, `config`, `started`, `ended`, and
    `evals` (`EvalRecord`s: `ev.eval` is the trial loop's `Eval`, its `decision` a Decision
    object; `ev.metric(key)` a finite float or None; a retry's replays dropped). Rank with
    `record.ranked_value` (None unless the trial completed or stopped with a finite value) and
    `autostage.records.best_trial(records, mode)`. A plugin that wants plain dicts has them:
    `record.to_json()` (what result.json holds) and `ev.to_json()` (an events.jsonl line).
    Figures appear in plugin load order; a plugin that raises becomes a note in the report
    naming it, and the other figures stay.
    """
