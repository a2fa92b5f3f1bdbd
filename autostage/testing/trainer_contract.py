"""The trainer contract: a run the trial loop can drive, checked on the trainer's own data."""

from __future__ import annotations

import math
from typing import Any

import pytest

from autostage.components import PreflightContext, StageVisit, TrialSetup
from autostage.errors import Problem
from autostage.records import TrialStatus
from autostage.testing.contracts import ComponentContract
from autostage.testing.fakes import builtin
from autostage.trial import TrialPlan, run_trial


class TrainerContract(ComponentContract):
    """A trainer run the trial loop can drive: trains about the tokens asked with the LR it
    is given, evaluates every source it is asked (a finite loss for each), learns, returns
    exactly to a snapshot, continues from a checkpoint, and repeats itself under a seed.

    Its `preflight` (and its data sources') finds nothing wrong with that setup.

    Fixtures: `component` (the trainer) and `setup` (a TrialSetup with its data); optionally
    `train_tokens` (tokens per training call; a few optimizer steps). Evaluation must be a
    function of the weights (fixed held-out data), or a Rewind could not be judged.
    """

    @pytest.fixture
    def train_tokens(self) -> int:
        return 4096

    def _stage(self, trainer: Any, setup: TrialSetup, tokens: int, source: str | None = None,
               final: bool = False) -> StageVisit:
        source = source or next(iter(setup.data))
        objective = setup.objectives.get(source) or type(trainer).objectives[0]
        return StageVisit(name=source, objective=objective, mix={source: 1.0},
                          tokens=4 * tokens, eval_every=tokens, evals=tuple(setup.data),
                          optimizer=builtin("optimizer", "adamw", lr=3e-3),
                          lr_schedule=builtin("lr_schedule", "constant"),
                          watch=f"eval.{source}.loss", final=final)

    def _started(self, trainer: Any, setup: TrialSetup, tokens: int) -> tuple[Any, StageVisit]:
        run = trainer.start(setup)
        stage = self._stage(trainer, setup, tokens)
        run.begin_stage(stage)
        return run, stage

    def _loss(self, run: Any, source: str) -> float:
        return run.evaluate([source])[source]["loss"]

    def test_declares_what_it_trains(self, component: Any) -> None:
        cls = type(component)
        assert cls.objectives, "a trainer names the objectives its stages may use"
        assert "loss" in cls.metrics and set(cls.maximize) <= set(cls.metrics)

    def test_preflight_finds_nothing_wrong_with_a_setup_it_trains(self, component: Any,
                                                                   setup: TrialSetup) -> None:
        context = PreflightContext(tuple(setup.data), dict(setup.data), component,
                                   dict(setup.objectives))
        problems = component.preflight(context)
        assert isinstance(problems, list)
        assert all(isinstance(p, (Problem, str)) for p in problems), problems
        assert problems == [], f"preflight refuses a setup the trainer trains: {problems}"
        for name, dataset in setup.data.items():
            assert dataset.preflight(context) == [], f"data source {name!r}"

    def test_trains_about_the_tokens_asked(self, component: Any, setup: TrialSetup,
                                           train_tokens: int) -> None:
        run, _ = self._started(component, setup, train_tokens)
        asked: list[int] = []
        result = run.train(train_tokens, lambda done: asked.append(done) or 3e-3)
        assert train_tokens // 2 <= result.tokens <= 2 * train_tokens
        assert asked and asked[0] == 0 and asked == sorted(asked)
        assert all(0 <= d <= result.tokens for d in asked)
        assert all(math.isfinite(v) for v in result.metrics.values())

    def test_evaluates_every_source_it_is_asked(self, component: Any, setup: TrialSetup,
                                                train_tokens: int) -> None:
        run, _ = self._started(component, setup, train_tokens)
        metrics = run.evaluate(list(setup.data))
        assert set(metrics) == set(setup.data)
        for values in metrics.values():
            assert "loss" in values and set(values) <= set(type(component).metrics)
            assert all(math.isfinite(v) for v in values.values())

    def test_training_lowers_the_loss(self, component: Any, setup: TrialSetup,
                                      train_tokens: int) -> None:
        run, stage = self._started(component, setup, train_tokens)
        before = self._loss(run, stage.name)
        run.train(4 * train_tokens, lambda done: 3e-3)
        assert self._loss(run, stage.name) < before

    def test_restore_returns_to_the_snapshot(self, component: Any, setup: TrialSetup,
                                             train_tokens: int) -> None:
        run, stage = self._started(component, setup, train_tokens)
        run.train(train_tokens, lambda done: 3e-3)
        snapshot = run.snapshot()
        kept = self._loss(run, stage.name)
        run.train(train_tokens, lambda done: 3e-3)
        run.restore(snapshot)
        assert self._loss(run, stage.name) == pytest.approx(kept, rel=1e-6)

    def test_a_fresh_run_continues_from_a_checkpoint(self, component: Any, setup: TrialSetup,
                                                     train_tokens: int, tmp_path: Any) -> None:
        run, stage = self._started(component, setup, train_tokens)
        run.train(train_tokens, lambda done: 3e-3)
        run.save(str(tmp_path))
        saved = self._loss(run, stage.name)
        fresh = component.start(setup)
        fresh.load(str(tmp_path))
        fresh.begin_stage(stage)
        assert self._loss(fresh, stage.name) == pytest.approx(saved, rel=1e-6)

    def test_same_seed_same_training(self, component: Any, setup: TrialSetup,
                                     train_tokens: int) -> None:
        losses = []
        for _ in range(2):
            run, stage = self._started(component, setup, train_tokens)
            run.train(train_tokens, lambda done: 3e-3)
            losses.append(self._loss(run, stage.name))
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)

    def test_runs_a_trial_through_the_loop(self, component: Any, setup: TrialSetup,
                                           train_tokens: int) -> None:
        sources = list(setup.data)
        first, last = sources[0], sources[-1]
        stages = {s: self._stage_plan(component, setup, train_tokens, s, final=s == last)
                  for s in dict.fromkeys([first, last])}
        plan = TrialPlan(stages=stages, order=tuple(stages),
                         policy=builtin("stage_policy", "fixed"), metric=f"eval.{last}.loss",
                         mode="min", seed=setup.seed)
        result = run_trial(plan, component.start(setup))
        assert result.status == TrialStatus.COMPLETED, result.reason
        assert result.evals[-1].stage == last and result.tokens > 0

    def _stage_plan(self, trainer: Any, setup: TrialSetup, tokens: int, source: str,
                    final: bool) -> StageVisit:
        return self._stage(trainer, setup, tokens, source, final)
