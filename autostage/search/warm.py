"""Warm start: finished trials of earlier run directories seed a new search's sampler.

Optuna learns from any finished trial in its study, so each earlier trial that fits the new
search space is added to the new study as a COMPLETE trial (`Study.add_trial`), marked with
the user attribute WARM_START. Those trials are the sampler's, not the run's: they get no
record in the run directory, are not counted in `study.trials`, and --resume leaves them be.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from autostage.errors import AutostageError
from autostage.keys import component_key
from autostage.rundir import RunDir
from autostage.space import SearchSpace, suggest
from autostage.spec import Study

#: user attribute of an Optuna trial copied from an earlier run: "<run dir>#<trial number>"
WARM_START = "autostage_warm_start"


@dataclass
class Seeded:
    """What a warm start did: trials added, and each earlier trial skipped with its reason."""

    added: int = 0
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        if not self.added and not self.skipped:
            return []
        out = [f"warm start: {self.added} earlier trial{'s' * (self.added != 1)} "
               f"seed{'s' * (self.added == 1)} the sampler; {len(self.skipped)} skipped"]
        return out + [f"  skipped {why}" for why in self.skipped]


def seed_sampler(study: Study, space: SearchSpace, ot_study: Any, registry: Any) -> Seeded:
    """Add the finished trials of every `study.warm_start` run directory to `ot_study`."""
    seeded = Seeded()
    for path in study.study.warm_start:
        run = RunDir(Path(path))
        earlier = _earlier_study(run)
        if (why := _incomparable(earlier, study)) is not None:
            seeded.skipped += [f"{path} trial {r.number}: {why}" for r in run.results()
                               if r.ranked_value is not None]
            continue
        for record in run.results():
            if record.ranked_value is None:
                continue  # failed, pruned, interrupted: no value a sampler should learn
            trial, why = _fitted(space, record.config, list(record.values), registry)
            if trial is None:
                seeded.skipped.append(f"{path} trial {record.number}: {why}")
                continue
            trial.set_user_attr(WARM_START, f"{path}#{record.number}")
            ot_study.add_trial(trial)
            seeded.added += 1
    return seeded


def _earlier_study(run: RunDir) -> dict[str, Any]:
    try:
        return run.settings()["study"]
    except (OSError, ValueError, KeyError, TypeError):
        raise AutostageError(f"study.warm_start: {run.path} is not a run directory (no "
                             "readable study.json): name a directory `autostage search` wrote "
                             "its results to (--out)") from None


def _incomparable(earlier: dict[str, Any], study: Study) -> str | None:
    """Why values of the earlier study mean something else here, or None."""
    section = earlier.get("study", {})
    metrics = section.get("metric")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics or [])
    modes = section.get("mode", "min")
    modes = [modes] * len(metrics) if isinstance(modes, str) else list(modes)
    if (metrics, modes) != (study.study.metrics, study.study.modes):
        return (f"it optimised {', '.join(metrics)} ({', '.join(modes)}), this study "
                f"{', '.join(study.study.metrics)} ({', '.join(study.study.modes)})")
    return None


def _fitted(space: SearchSpace, config: dict[str, Any], values: list[float],
            registry: Any) -> tuple[Any | None, str]:
    """An Optuna trial with `config`'s parameters in the new space, or None and why not."""
    try:
        fixed, constants = _replay(space, config)
    except ValueError as e:  # the new space asks for a parameter the trial did not have
        missing = re.search(r"parameter '([^']+)'", str(e))
        return None, (f"it has no value for {missing[1] if missing else 'a parameter'}, "
                      "which this study searches")
    now = _effective({**fixed.params, **constants}, registry)
    before = _effective(config, registry)
    for name, value in now.items():  # what this study fixes, defaults included
        if name not in fixed.distributions and name in before and before[name] != value:
            return None, f"{name} was {before[name]!r}, which this study fixes at {value!r}"
    for name, distribution in fixed.distributions.items():
        value = fixed.params[name]
        if not _contains(distribution, value):
            return None, f"{name} = {value!r} is outside the new space"
    return optuna.trial.create_trial(params=fixed.params, distributions=fixed.distributions,
                                     values=values), ""


def _effective(config: dict[str, Any], registry: Any) -> dict[str, Any]:
    """`config` with the settings a trial ran with but its config leaves to defaults: every
    field of each chosen component (a study that never names `weight_decay` ran with the
    default, and that differs from a study fixing it at 0.3)."""
    out = dict(config)
    for kind, name in config.items():
        if not isinstance(name, str) or "." in kind or not registry.has(kind, name):
            continue
        for setting, info in registry.get(kind, name).model_fields.items():
            key = component_key(kind, name, setting)
            if key not in out and not info.is_required():
                out[key] = info.get_default(call_default_factory=True)
    return out


def _contains(distribution: Any, value: Any) -> bool:
    """Whether `value` lies in `distribution`: Optuna's own check of a trial's parameters,
    through its public face (a distribution's own `_contains` is private)."""
    try:
        optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={"p": value},
                                  distributions={"p": distribution})
    except (ValueError, TypeError):  # e.g. a choice the new categorical does not have
        return False
    return True


def full_config(space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's whole config from its Optuna parameters: with the settings the space fixes,
    as a trial's record holds it."""
    try:
        return {**params, **_replay(space, params)[1]}
    except ValueError:  # parameters of another space: keep what there is
        return dict(params)


def _replay(space: SearchSpace, params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """`params` suggested through `space` again: the Optuna trial (its distributions) and the
    settings the space fixes. ValueError when the space asks for a parameter `params` lacks."""
    fixed = optuna.trial.FixedTrial(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FixedTrial only warns about an unknown value
        constants = suggest(space, fixed)
    return fixed, constants
