"""Turn a checked study and one sampled configuration into a trial ready to run: the trainer
started, the stage plan with every component instantiated (and validated) from the registry.

`prepare_trial` is the one way a trial is made: by `autostage trial`, by a search's Ray
worker and by Python callers (`examples/python_api.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from autostage.components import (
    Dataset,
    PreflightContext,
    StageVisit,
    Trainer,
    TrainerRun,
    TrialSetup,
)
from autostage.errors import AutostageError, Problem
from autostage.host import Registry
from autostage.keys import eval_metric, eval_source, eval_sources, metric_name
from autostage.space import SearchSpace, TrialConfig, compile_space, decode
from autostage.spec import StageSection, Study, source_objectives
from autostage.trial import (
    Checkpoint,
    LoopState,
    Report,
    Switch,
    TrialPlan,
    TrialResult,
    run_trial,
)


@dataclass(frozen=True)
class ReadyTrial:
    """A trial whose trainer has started: `run` trains it through its stages."""

    params: Mapping[str, Any]  # the sampled parameters it was built from
    seed: int
    plan: TrialPlan
    trainer: TrainerRun

    def run(self, report: Report | None = None, checkpoint: Checkpoint | None = None,
            resume: LoopState | None = None, within_final: bool = False) -> TrialResult:
        """Run the stage plan; see `autostage.trial.run_trial`."""
        return run_trial(self.plan, self.trainer, report, checkpoint, resume, within_final)


def sample_config(study: Study, registry: Registry, seed: int,
                  space: SearchSpace | None = None) -> dict[str, Any]:
    """One configuration of the study's search space drawn at random (Optuna's
    RandomSampler, seeded): every parameter key with its value, as a trial records it."""
    from autostage.space import sample

    return sample(space if space is not None else compile_space(study, registry), seed)


def prepare_trial(study: Study, registry: Registry, params: Mapping[str, Any], seed: int, *,
                  space: SearchSpace | None = None, threads: int = 0,
                  workdir: str | None = None, cache_dir: str | None = None,
                  replica: tuple[int, int] = (0, 1)) -> ReadyTrial:
    """Build the components `params` (a sampled configuration, as `sample_config` returns)
    chose and start the trainer (`replica`: this process's rank among the trial's
    data-parallel workers, and their number); raise AutostageError naming a component that
    rejects its settings."""
    space = space if space is not None else compile_space(study, registry)
    trainer, setup, plan = build_trial(study, registry, decode(space, dict(params)), seed,
                                       threads=threads, workdir=workdir, cache_dir=cache_dir)
    if replica != (0, 1):
        setup = replace(setup, rank=replica[0], workers=replica[1])
    if study.lineage[1:]:
        plan = replace(plan, switches=_switches(study, registry, space, seed))
    return ReadyTrial(dict(params), seed, plan, trainer.start(setup))


def lineage_params(study: Study) -> dict[str, Any] | None:
    """The parameters a study replaying a lineage (`[[lineage]]`) starts with: its root's."""
    return dict(study.lineage[0].params) if study.lineage else None


def _switches(study: Study, registry: Registry, space: SearchSpace, seed: int
              ) -> tuple[Switch, ...]:
    """The settings each later segment of the study's lineage switches to."""
    out = []
    for i, step in enumerate(study.lineage[1:], start=2):  # lineage[1] is the root, as TOML's
        try:
            config = decode(space, dict(step.params))
        except KeyError as e:
            raise AutostageError(f"lineage[{i}].params: {e.args[0]}; the study's [search] "
                                 "tables must name every component the lineage chose") from None
        _, _, plan = build_trial(study, registry, config, seed)
        out.append(Switch(step.after_tokens, plan.stages, plan.policy, config.plan))
    return tuple(out)


def build_trial(study: Study, registry: Registry, config: TrialConfig, seed: int,
                threads: int = 0, workdir: str | None = None,
                cache_dir: str | None = None) -> tuple[Trainer, TrialSetup, TrialPlan]:
    """Instantiate every component `config` chose: the trainer (not started), its setup and
    the trial's plan. Raise AutostageError with the first problem `preflight` finds (what
    `validate` reported, or what changed since: a data file deleted)."""
    make = _Maker(registry, config)
    trainer = make("trainer", study.model.trainer, study.model.settings)
    data = {name: make("dataset", d.dataset, d.settings, settings_from_config=False)
            for name, d in study.data.items()}
    stages = {s.name: _stage(study, s, trainer, config, make) for s in study.stage}
    plan = TrialPlan(
        stages=stages, order=config.plan, policy=make("stage_policy"),
        metric=study.study.metrics[0], mode=study.study.modes[0], seed=seed,
        target=study.study.target,
    )
    objectives = source_objectives(study.stage, type(trainer).objectives[0],
                                   study.study.metrics, [s.watch for s in study.stage if s.watch])
    problems = preflight(PreflightContext(tuple(data), data, trainer, objectives))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AutostageError(f"{problems[0]}{more}")
    trains: dict[str, tuple[str, ...]] = {}
    for s in study.stage:
        objective = s.objective or type(trainer).objectives[0]
        trains[objective] = tuple(dict.fromkeys([*trains.get(objective, ()), *s.sources]))
    setup = TrialSetup(seed=seed, data=data, init=make("init"), threads=threads,
                       workdir=workdir, cache_dir=cache_dir, objectives=objectives,
                       trains=trains)
    return trainer, setup, plan


def preflight(context: PreflightContext) -> list[Problem]:
    """Every problem the trainer's and the data sources' `preflight` find, each under its
    TOML path (`model.<field>`, `data.<name>.<field>`): what `validate` reports and a trial
    checks again as it starts — one function for both."""
    found = []
    if context.trainer is not None:
        found += _under("model", context.trainer, context)
    for name, dataset in context.data.items():
        found += _under(f"data.{name}", dataset, context)
    return found


def _under(table: str, component: Trainer | Dataset, context: PreflightContext) -> list[Problem]:
    try:
        problems = component.preflight(context)
    except AutostageError as e:  # raised instead of returned: still one problem
        problems = [str(e)]
    except Exception as e:  # a plugin's bug: one line naming where, never a traceback
        problems = [f"{type(component).__name__}.preflight raised {type(e).__name__}: {e}"]
    out = []
    for p in problems:
        if isinstance(p, Problem):
            out.append(Problem(f"{table}.{p.path}" if p.path else table, p.message))
        else:
            out.append(Problem(table, str(p)))
    return out


class _Maker:
    def __init__(self, registry: Registry, config: TrialConfig) -> None:
        self.registry, self.config = registry, config

    def __call__(self, kind: str, name: str | None = None, fixed: dict | None = None,
                 settings_from_config: bool = True) -> Any:
        name = name or self.config.choice[kind]
        params = dict(fixed or {})
        if settings_from_config:
            params.update(self.config.settings_of(kind, name))
        try:
            return self.registry.create(kind, name, params)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()
            )
            raise AutostageError(f"{kind} '{name}' rejects its settings {params}: "
                                 f"{problems}") from None


def _stage(study: Study, s: StageSection, trainer: Trainer, config: TrialConfig,
           make: _Maker) -> StageVisit:
    mix = config.mix.get(s.name) or {src: 1.0 / len(s.sources) for src in s.sources}
    watch = _watch(study, s, mix)
    evals = tuple(dict.fromkeys([*s.sources, *eval_sources(study.study.metrics), *s.evals,
                                 eval_source(watch)]))
    return StageVisit(
        name=s.name,
        objective=s.objective or type(trainer).objectives[0],
        mix=mix,
        tokens=s.tokens,
        eval_every=s.every,
        evals=evals,
        watch=watch,
        watch_mode=_mode(study, watch, trainer),
        optimizer=make("optimizer", s.optimizer),
        lr_schedule=make("lr_schedule", s.lr_schedule),
        final=s.final,
    )


def _watch(study: Study, s: StageSection, mix: dict[str, float]) -> str:
    """The metric a policy judges a stage by: its own `watch`, else the study metric when the
    stage trains on the metric's data, else the loss on the stage's main data source (every
    objective has a loss; accuracy, say, does not fit a masked-LM stage)."""
    if s.watch:
        return s.watch
    metric = study.study.metrics[0]
    if eval_source(metric) in s.sources:
        return metric
    main = max(mix, key=mix.get)
    return eval_metric(main, "loss")


def _mode(study: Study, watch: str, trainer: Trainer) -> str:
    if watch == study.study.metrics[0]:
        return study.study.modes[0]
    return "max" if metric_name(watch) in type(trainer).maximize else "min"
