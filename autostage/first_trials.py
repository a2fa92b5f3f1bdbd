"""`study.first_trials`: configurations a user already trusts, run before the sampler proposes
anything (Optuna's `enqueue_trial`). A real user usually has one — last quarter's recipe, a
paper's settings — and the search should start from it, not rediscover it.

Each is a table of search parameters named as `autostage best` prints them
(`"optimizer.adamw.lr" = 3e-3`, `"plan.order" = "prereq>target"`, `optimizer = "adamw"`); a
parameter left out is sampled. What the study fixes may be named too, at its fixed value, so
a trial's printed parameters can be pasted whole. Checked against the compiled search space
when the study loads: a key the study does not search, or a value outside its range, is one
problem naming the table and the key.
"""

from __future__ import annotations

from typing import Any

from autostage.errors import Problem
from autostage.keys import PLAN_KEY, parse_component_key
from autostage.space import Param, SearchSpace

#: the Optuna user attribute of a trial queued from study.first_trials: its index there
FIRST_TRIAL = "autostage_first_trial"


def problems(first_trials: list[dict[str, Any]], space: SearchSpace) -> list[Problem]:
    params = _params(space)
    out = []
    for i, table in enumerate(first_trials):
        for key, value in table.items():
            if (why := _problem(key, value, table, params, space)) is not None:
                out.append(Problem(f"study.first_trials[{i}].{key}", why))
    return out


def enqueue(ot_study: Any, first_trials: list[dict[str, Any]], space: SearchSpace) -> None:
    """Queue each table (its searched parameters only) on the Optuna study, in order."""
    params = _params(space)
    for i, table in enumerate(first_trials):
        ot_study.enqueue_trial({k: v for k, v in table.items() if params[k].type != "fixed"},
                               user_attrs={FIRST_TRIAL: i}, skip_if_exists=False)


def _params(space: SearchSpace) -> dict[str, Param]:
    """Every parameter a trial of `space` may have, by key: the searched ones as their
    distributions, what the study fixes as "fixed" Params."""
    out: dict[str, Param] = {}
    for ks in space.kinds:
        out[ks.kind] = Param(ks.kind, "categorical", choices=ks.names) if len(ks.names) > 1 \
            else Param(ks.kind, "fixed", value=ks.names[0])
        for _, params in ks.params:
            out.update((p.key, p) for p in params)
    out[PLAN_KEY] = Param(PLAN_KEY, "categorical", choices=space.plans) \
        if len(space.plans) > 1 else Param(PLAN_KEY, "fixed", value=space.plans[0])
    out.update((p.key, p) for p in space.mixes)
    return out


def _problem(key: str, value: Any, table: dict[str, Any], params: dict[str, Param],
             space: SearchSpace) -> str | None:
    p = params.get(key)
    if p is None:
        searched = sorted(k for k, q in params.items() if q.type != "fixed")
        return (f"not a parameter of this study; it searches: {', '.join(searched) or 'none'} "
                "(the names `autostage best` prints)")
    if (why := _outside(p, value)) is not None:
        return why
    component = parse_component_key(key)
    if component is not None:
        kind, name, _ = component
        chosen = table.get(kind, params[kind].value)
        if chosen != name and name not in space.kind(kind).pinned:
            return (f"a setting of {kind} '{name}', which this trial does not choose: add "
                    f"{kind} = \"{name}\" to the table, or drop the setting")
    return None


def _outside(p: Param, value: Any) -> str | None:
    if p.type == "fixed":
        return None if value == p.value else f"this study fixes it at {p.value!r}"
    if p.type == "categorical":
        return None if value in p.choices else \
            f"{value!r} is not one of {', '.join(map(repr, p.choices))}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or (p.type == "int" and not isinstance(value, int)):
        return f"{value!r} is not {'an integer' if p.type == 'int' else 'a number'}"
    if not p.low <= value <= p.high:
        return f"{value!r} is outside the searched range {p.low:g}..{p.high:g}"
    return None
