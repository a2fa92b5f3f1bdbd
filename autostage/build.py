"""Turn a checked study and one decoded config into what a trial runs: the trainer, its setup
and the stage plan, with every component instantiated (and validated) from the registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from autostage.components import Trainer, TrialSetup
from autostage.errors import AutostageError
from autostage.host import Registry
from autostage.space import TrialConfig
from autostage.spec import StageSection, Study, source_objectives
from autostage.trial import StagePlan, TrialPlan


@dataclass(frozen=True)
class BuiltTrial:
    trainer: Trainer
    setup: TrialSetup
    plan: TrialPlan


def build_trial(study: Study, registry: Registry, config: TrialConfig, seed: int,
                threads: int = 0, workdir: str | None = None,
                cache_dir: str | None = None) -> BuiltTrial:
    """Instantiate every component `config` chose; raise AutostageError naming a bad one."""
    make = _Maker(registry, config)
    trainer = make("trainer", study.model.trainer, study.model.settings)
    data = {name: make("dataset", d.dataset, d.settings, settings_from_config=False)
            for name, d in study.data.items()}
    stages = {s.name: _stage(study, s, trainer, config, make) for s in study.stage}
    plan = TrialPlan(
        stages=stages, order=config.plan, policy=make("stage_policy"),
        metric=study.study.metrics[0], mode=study.study.modes[0], seed=seed,
    )
    judged = tuple(m.split(".")[1] for m in study.study.metrics if m.startswith("eval."))
    everywhere = tuple(s.watch.split(".")[1] for s in stages.values()) + judged
    objectives = source_objectives(study.stage, type(trainer).objectives[0], everywhere,
                                   judged)
    setup = TrialSetup(seed=seed, data=data, init=make("init"), threads=threads,
                       workdir=workdir, cache_dir=cache_dir, objectives=objectives)
    return BuiltTrial(trainer, setup, plan)


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
           make: _Maker) -> StagePlan:
    mix = config.mix.get(s.name) or {src: 1.0 / len(s.sources) for src in s.sources}
    watch = _watch(study, s, mix)
    metric_sources = [m.split(".")[1] for m in study.study.metrics if m.startswith("eval.")]
    watch_source = watch.split(".")[1]
    evals = tuple(dict.fromkeys([*s.sources, *metric_sources, *s.evals, watch_source]))
    return StagePlan(
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
    source = metric.split(".")[1]
    if source in s.sources:
        return metric
    main = max(mix, key=mix.get)
    return f"eval.{main}.loss"


def _mode(study: Study, watch: str, trainer: Trainer) -> str:
    if watch == study.study.metrics[0]:
        return study.study.modes[0]
    return "max" if watch.split(".")[-1] in type(trainer).maximize else "min"
