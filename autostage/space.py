"""The search space: compiled from a study and the registry into plain, picklable data.

`suggest(space, trial)` is the define-by-run function Optuna calls (a component's fields are
sampled only when that component is chosen); `decode(space, config)` turns a flat config back
into chosen components, their settings, the stage plan and data mixtures. Keys are
`<kind>` (the choice), `<kind>.<name>.<field>`, `plan.order` and `mix.<stage>.<source>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autostage.fields import fields_of
from autostage.keys import (
    BRANCH_ATTR,
    PLAN_KEY,
    component_key,
    join_plan,
    mix_key,
    parse_component_key,
    parse_mix_key,
    plan_after_key,
    split_plan,
)
from autostage.kinds import KIND, PER_STAGE, SEARCHABLE_KINDS, default_name


@dataclass(frozen=True)
class Param:
    """One searched (or fixed) value."""

    key: str
    type: str  # "float", "int", "categorical" or "fixed"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    value: Any = None


@dataclass(frozen=True)
class KindSpace:
    """The choice among one kind's components, and each candidate's parameters."""

    kind: str
    names: tuple[str, ...]  # candidates for the study-wide choice; one name = fixed
    pinned: tuple[str, ...]  # components that stages pin: their fields are needed too
    params: tuple[tuple[str, tuple[Param, ...]], ...]  # (name, params) pairs

    def params_of(self, name: str) -> tuple[Param, ...]:
        return dict(self.params).get(name, ())


@dataclass(frozen=True)
class SearchSpace:
    kinds: tuple[KindSpace, ...]
    plans: tuple[str, ...]  # every allowed stage plan, as "a>b>final"
    mixes: tuple[Param, ...] = field(default=())  # mix.<stage>.<source> weights

    def kind(self, kind: str) -> KindSpace:
        return next(k for k in self.kinds if k.kind == kind)


@dataclass(frozen=True)
class TrialConfig:
    """A decoded config: what a trial runs."""

    choice: dict[str, str]  # kind -> chosen name (study-wide)
    settings: dict[str, dict[str, Any]]  # "<kind>.<name>" -> field values
    plan: tuple[str, ...]
    mix: dict[str, dict[str, float]]  # stage -> source -> normalised weight

    def settings_of(self, kind: str, name: str) -> dict[str, Any]:
        return self.settings.get(f"{kind}.{name}", {})


# --- compile ------------------------------------------------------------------------------


def compile_space(study: Any, registry: Any) -> SearchSpace:
    """Plain data from a checked study: no plugin objects, so it pickles to Ray workers."""
    kinds = []
    for kind in SEARCHABLE_KINDS:
        tables = study.search.tables(kind)
        # only kinds named by [search] tables are chosen among; the others' tables (the
        # trainer's) search the fields of the one component the study names elsewhere
        candidates = tuple(tables) if KIND[kind].named_in == "search" else ()
        names = candidates or (default_name(kind, study),)
        pinned = tuple(sorted({getattr(s, kind) for s in study.stage
                               if kind in PER_STAGE and getattr(s, kind)}))
        params = tuple(
            (name, _params(registry.get(kind, name), kind, name, tables.get(name, {})))
            for name in dict.fromkeys((*names, *pinned))
        )
        kinds.append(KindSpace(kind, names, pinned, params))
    plans = tuple(join_plan(p) for p in stage_plans(study.stage, study.search.plan))
    return SearchSpace(tuple(kinds), plans, _mix_params(study))


def _params(cls: Any, kind: str, name: str, table: dict[str, Any]) -> tuple[Param, ...]:
    fields = fields_of(cls)
    out = []
    for key, spec in table.items():
        full = component_key(kind, name, key)
        if isinstance(spec, dict):
            # int vs float comes from the plugin's declaration, never from the range ends
            ptype = "int" if fields[key].type == "int" else "float"
            out.append(Param(full, ptype, spec["low"], spec["high"], spec.get("log", False)))
        elif isinstance(spec, list):
            out.append(Param(full, "categorical", choices=tuple(spec)))
        else:
            out.append(Param(full, "fixed", value=spec))
    return tuple(out)


def _mix_params(study: Any) -> tuple[Param, ...]:
    out = []
    for stage in study.stage:
        if isinstance(stage.data, dict):
            for source, w in stage.data.items():
                key = mix_key(stage.name, source)
                if isinstance(w, dict):
                    out.append(Param(key, "float", w["low"], w["high"], w.get("log", False)))
                else:
                    out.append(Param(key, "fixed", value=float(w)))
    return tuple(out)


def stage_plans(stages: Sequence[Any], plan: Any, limit: int | None = None) -> list[tuple]:
    """Every allowed order of stages: the non-final stages in `plan.reorder` may move, those in
    `plan.skip` may be left out, `plan.repeat` caps visits; no stage directly repeats itself
    (that is one longer visit); the final stage ends every plan. The declared order is first.
    `plan.order` names one plan instead (what `autostage best --export` writes)."""
    if plan.order:
        return [split_plan(plan.order)]
    movable = [s.name for s in stages if not s.final]
    final = tuple(s.name for s in stages if s.final)
    fixed_rank = {n: i for i, n in enumerate(n for n in movable if n not in plan.reorder)}
    low = {n: 0 if n in plan.skip else 1 for n in movable}
    high = {n: plan.repeat.get(n, 1) for n in movable}
    found: list[tuple] = [tuple(movable) + final]

    def extend(seq: list[str], counts: dict[str, int], rank: int) -> None:
        if limit is not None and len(found) >= limit:
            return
        if all(counts[n] >= low[n] for n in movable):
            candidate = tuple(seq) + final
            if candidate != found[0] and (seq or final):
                found.append(candidate)
        for n in movable:
            if counts[n] >= high[n] or (seq and seq[-1] == n):
                continue
            if n in fixed_rank and fixed_rank[n] < rank:
                continue
            counts[n] += 1
            extend([*seq, n], counts, fixed_rank.get(n, rank))
            counts[n] -= 1

    extend([], dict.fromkeys(movable, 0), -1)
    return found


# --- suggest (define-by-run) ----------------------------------------------------------------


def suggest(space: SearchSpace, trial: Any) -> dict[str, Any]:
    """Sample a config on an Optuna trial; return the constants (fixed values) to merge in.

    Conditional: a component's fields are suggested only when that component is chosen or
    pinned by a stage, so the sampler never sees parameters that had no effect.
    """
    constants: dict[str, Any] = {}
    for ks in space.kinds:
        if len(ks.names) > 1:
            chosen = trial.suggest_categorical(ks.kind, list(ks.names))
        else:
            chosen = constants[ks.kind] = ks.names[0]
        for name in dict.fromkeys((chosen, *ks.pinned)):
            for p in ks.params_of(name):
                _suggest(trial, p, constants)
    done = _branch_done(trial)
    rest = continuations(space.plans, done) if done else []
    if len(rest) > 1:  # a branch at a stage boundary chooses what follows what it ran
        after = trial.suggest_categorical(plan_after_key(done), rest)
        constants[PLAN_KEY] = join_plan((*done, *split_plan(after)))
    elif len(space.plans) > 1:
        trial.suggest_categorical(PLAN_KEY, list(space.plans))
    else:
        constants[PLAN_KEY] = space.plans[0]
    for p in space.mixes:
        _suggest(trial, p, constants)
    return constants


def continuations(plans: tuple[str, ...], done: tuple[str, ...]) -> list[str]:
    """The allowed rests of a plan whose first stage visits were `done`, as "a>b>final"."""
    rests = (split_plan(p)[len(done):] for p in plans if split_plan(p)[:len(done)] == done)
    return sorted({join_plan(r) for r in rests if r})


def _branch_done(trial: Any) -> tuple[str, ...]:
    """The stage visits a branched trial's lineage ran before its branch point, when that
    is a stage boundary (its Optuna user attribute `BRANCH_ATTR`); () otherwise."""
    branch = (getattr(trial, "user_attrs", None) or {}).get(BRANCH_ATTR) or {}
    return tuple(branch.get("done") or ())


def _suggest(trial: Any, p: Param, constants: dict[str, Any]) -> None:
    if p.type == "float":
        trial.suggest_float(p.key, p.low, p.high, log=p.log)
    elif p.type == "int":
        trial.suggest_int(p.key, p.low, p.high, log=p.log)
    elif p.type == "categorical":
        trial.suggest_categorical(p.key, list(p.choices))
    else:
        constants[p.key] = p.value


# --- decode -------------------------------------------------------------------------------


def decode(space: SearchSpace, config: dict[str, Any]) -> TrialConfig:
    """Chosen components and their settings, the plan and mixtures from a flat config."""
    choice, settings = {}, {}
    for ks in space.kinds:
        chosen = config.get(ks.kind, ks.names[0])
        if chosen not in ks.names:
            raise KeyError(f"config chooses {ks.kind} '{chosen}', not one of {ks.names}")
        choice[ks.kind] = chosen
        for name in dict.fromkeys((chosen, *ks.pinned)):
            settings[f"{ks.kind}.{name}"] = {
                parsed[2]: v for k, v in config.items()
                if (parsed := parse_component_key(k)) and parsed[:2] == (ks.kind, name)
            }
    plan = split_plan(config.get(PLAN_KEY, space.plans[0]))
    return TrialConfig(choice, settings, plan, _mixes(space, config))


def _mixes(space: SearchSpace, config: dict[str, Any]) -> dict[str, dict[str, float]]:
    raw: dict[str, dict[str, float]] = {}
    for p in space.mixes:
        stage, source = parse_mix_key(p.key)
        raw.setdefault(stage, {})[source] = float(config.get(p.key, p.value or 0.0))
    out = {}
    for stage, weights in raw.items():
        total = sum(weights.values())
        # all weights searched down to 0: fall back to an even mixture rather than no data
        out[stage] = {s: (w / total if total > 0 else 1 / len(weights))
                      for s, w in weights.items()}
    return out


def sample(space: SearchSpace, seed: int) -> dict[str, Any]:
    """One random config (Optuna's RandomSampler): what `autostage trial` runs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    constants = suggest(space, trial)
    return {**trial.params, **constants}
