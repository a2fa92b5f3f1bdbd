"""Every use autostage makes of a private name of Optuna, in one place (see `ray_internals`
for Ray's).

A private name comes with no promise: an Optuna release may rename it without a deprecation
warning, and the code reaching for it breaks in a user's search. Each function here is one
such use, with why no public API serves. tests/search/test_internals.py checks that every name
still exists with the shape used here, and fails in one line naming the installed Optuna when
one is gone; pyproject.toml bounds Optuna to the releases checked.

Replaced by public ones, and so not here: a trial's storage id (`storage.py` looks it up by
study and number), a distribution's range check (`warm.py` asks `create_trial`), the lock
NSGA-II's sampler holds (`optuna_fixes` finds it by its type, not its name).
"""

from __future__ import annotations

from typing import Any


def fixed_params(trial: Any) -> dict[str, Any]:
    """The parameters `study.enqueue_trial` queued for `trial` (a FrozenTrial); {} for a
    trial that was not queued.

    Optuna keeps them in the system attribute "fixed_params" and offers no reader: a WAITING
    trial's `params` is empty, and a trial cut short while it was being sampled holds in
    `params` only those it had suggested (a branch's inherited parameters may be missing)."""
    return dict(trial.system_attrs.get("fixed_params", {}))
