"""Contract suites: pytest classes a plugin author subclasses, giving one fixture, to get a
battery of checks every component of that kind must pass.

    class TestMyOptimizer(OptimizerContract):
        @pytest.fixture
        def component(self):
            return MyOptimizer(lr=1e-3)

Every built-in passes these (tests/plugins/test_contracts.py), so they say what autostage relies on.
This module has the suites of the small kinds; stage policies and trainers have their own.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from autostage.components import BASES, Component
from autostage.fields import check_value, fields_of
from autostage.testing.fakes import tiny_model


class ComponentContract:
    """What every component must be: fields autostage can validate and search, defaults
    inside their own bounds, and nothing about it that its fields do not say."""

    @pytest.fixture
    def component_class(self, component: Component) -> type[Component]:
        return type(component)

    def test_is_a_component_of_its_kind(self, component: Component) -> None:
        assert isinstance(component, BASES[component.kind])

    def test_fields_are_types_autostage_accepts(self, component_class: type) -> None:
        fields_of(component_class)  # raises FieldTypeError naming the field

    def test_defaults_lie_inside_their_bounds(self, component_class: type) -> None:
        wrong = {name: check_value(component_class, name, info.default)
                 for name, info in fields_of(component_class).items() if not info.required}
        assert {k: v for k, v in wrong.items() if v} == {}

    def test_is_rebuilt_from_its_fields(self, component: Component) -> None:
        # Ray workers and `autostage best --export` rebuild components from field values
        assert type(component)(**component.model_dump()) == component


class SearchableContract(ComponentContract):
    """For the kinds a study searches: bounds are the search range, so declare both."""

    def test_numeric_fields_declare_both_bounds(self, component_class: type) -> None:
        open_ended = [
            name for name, f in fields_of(component_class).items()
            if f.numeric and (f.ge is None and f.gt is None or f.le is None and f.lt is None)
        ]
        assert open_ended == [], "a numeric field's ge/gt and le/lt are its search range"


# --- LR schedules ---------------------------------------------------------------------------


def _progress_points(total: int) -> list[int]:
    grid = {round(total * i / 40) for i in range(41)}
    # trainers round up to whole batches, so `done` can pass `total` a little
    return sorted(grid | {0, 1, total - 1, total, total + 1, total + total // 10 + 1})


def _multiplier_outside_0_1(schedule: Any, totals: tuple[int, ...]) -> list[tuple]:
    """(done, total, multiplier) wherever the multiplier is no finite number in [0, 1]."""
    bad = []
    for total in totals:
        for done in _progress_points(total):
            m = schedule.multiplier(done, total)
            ok = isinstance(m, int | float) and not isinstance(m, bool) and \
                math.isfinite(m) and 0 <= m <= 1 + 1e-12
            if not ok:
                bad.append((done, total, m))
    return bad


def _field_ends(info: Any) -> list[float]:
    """The values at a numeric field's bounds a search may sample (just inside an open one)."""
    step = 1 if info.type == "int" else 1e-9
    ends = [info.ge, info.le]
    if info.gt is not None:
        ends.append(info.gt + step * max(1.0, abs(info.gt)))
    if info.lt is not None:
        ends.append(info.lt - step * max(1.0, abs(info.lt)))
    return [int(e) if info.type == "int" else float(e) for e in ends if e is not None]


class LRScheduleContract(SearchableContract):
    """A multiplier of the peak LR: a finite float in [0, 1] everywhere in (and a little past)
    a stage of any length — also with each field at the ends of its bounds, where a search
    may sample it — and a pure function of (done, total). 0 is allowed (a warmup's start, a
    decay to `min_ratio = 0`): every trainer takes an LR of 0 as "learn nothing"."""

    TOTALS = (1, 7, 1000, 123_457)

    def test_multiplier_is_a_number_between_0_and_1(self, component: Any) -> None:
        bad = _multiplier_outside_0_1(component, self.TOTALS)
        assert bad == [], "multiplier(done, total) must be a finite float in [0, 1]"

    def test_multiplier_stays_between_0_and_1_at_its_fields_bounds(self, component: Any
                                                                    ) -> None:
        from pydantic import ValidationError

        cls, settings = type(component), component.model_dump()
        bad = {}
        for name, info in fields_of(cls).items():
            for end in _field_ends(info) if info.numeric else []:
                try:
                    variant = cls(**{**settings, name: end})
                except ValidationError:
                    continue  # a rule between the fields refuses it: never sampled
                if found := _multiplier_outside_0_1(variant, self.TOTALS):
                    bad[f"{name}={end}"] = found[:3]
        assert bad == {}, "with a field at its bound, multiplier(done, total) left [0, 1]"

    def test_multiplier_at_the_stage_start_and_end(self, component: Any) -> None:
        for total in self.TOTALS:
            for done in (0, total):
                assert 0 <= component.multiplier(done, total) <= 1 + 1e-12

    def test_multiplier_is_pure(self, component: Any) -> None:
        points = _progress_points(1000)
        forward = [component.multiplier(d, 1000) for d in points]
        backward = [component.multiplier(d, 1000) for d in reversed(points)]
        assert forward == backward[::-1]


# --- optimizers -----------------------------------------------------------------------------


def _quadratic_params(seed: int = 0) -> list[Any]:
    """A matrix and a vector (Adafactor factors matrices), far from the optimum at 1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(4, 3, generator=g) * 3),
            torch.nn.Parameter(torch.randn(3, generator=g) * 3)]


def _quadratic(params: list[Any]) -> Any:
    return sum(((p - 1.0) ** 2).sum() for p in params)


def _steps(optimizer: Any, params: list[Any], n: int) -> float:
    for _ in range(n):
        optimizer.zero_grad()
        _quadratic(params).backward()
        optimizer.step()
    return float(_quadratic(params).detach())


class OptimizerContract(SearchableContract):
    """Builds a torch optimizer over tensors or param groups, lowers a small quadratic,
    follows the LR the trainer writes into its param groups, and resumes from its state."""

    def test_builds_a_torch_optimizer_at_its_peak_lr(self, component: Any) -> None:
        import torch

        optimizer = component.build(_quadratic_params())
        assert isinstance(optimizer, torch.optim.Optimizer)
        assert [g["lr"] for g in optimizer.param_groups] == [component.lr]

    def test_reduces_a_small_quadratic(self, component: Any) -> None:
        params = _quadratic_params()
        start = float(_quadratic(params).detach())
        assert _steps(component.build(params), params, 50) < start

    def test_accepts_param_groups(self, component: Any) -> None:
        # trainers may exempt biases and norms from weight decay with a group of their own
        matrix, vector = _quadratic_params()
        optimizer = component.build([{"params": [matrix]},
                                     {"params": [vector], "weight_decay": 0.0}])
        assert len(optimizer.param_groups) == 2
        start = float(_quadratic([matrix, vector]).detach())
        assert _steps(optimizer, [matrix, vector], 20) < start

    def test_follows_the_lr_in_its_param_groups(self, component: Any) -> None:
        # trainers set each group's lr every step from the schedule: lr 0 must mean no step
        params = _quadratic_params()
        optimizer = component.build(params)
        _steps(optimizer, params, 3)
        for group in optimizer.param_groups:
            group["lr"] = 0.0
        before = [p.detach().clone() for p in params]
        _steps(optimizer, params, 2)
        assert all(bool((p.detach() == b).all()) for p, b in zip(params, before, strict=True))

    def test_resumes_from_its_state_dict(self, component: Any) -> None:
        params = _quadratic_params()
        optimizer = component.build(params)
        _steps(optimizer, params, 5)
        copies = [_detached_parameter(p) for p in params]
        resumed = component.build(copies)
        # a deep copy, as a checkpoint on disk is: load_state_dict may share the tensors
        resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        _steps(optimizer, params, 3)
        _steps(resumed, copies, 3)
        assert all(bool((a.detach() == b.detach()).all()) for a, b in zip(params, copies,
                                                                        strict=True))


def _detached_parameter(p: Any) -> Any:
    import torch

    return torch.nn.Parameter(p.detach().clone())


# --- inits ----------------------------------------------------------------------------------


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


class InitContract(SearchableContract):
    """Initialises a model in place: deterministically under torch's seed, finite, keeping
    every parameter (and tied weights tied). Override the `model_factory` fixture to test on
    your own model, and `changes_parameters` (False) for an init that keeps the model's."""

    @pytest.fixture
    def model_factory(self) -> Any:
        return tiny_model

    @pytest.fixture
    def changes_parameters(self) -> bool:
        return True

    def _initialised(self, component: Any, factory: Any, seed: int) -> tuple[Any, dict]:
        import torch

        torch.manual_seed(seed)
        model = factory()
        before = _state(model)
        component.apply(model)
        return model, before

    def test_is_deterministic_under_a_seed(self, component: Any, model_factory: Any) -> None:
        a, _ = self._initialised(component, model_factory, seed=0)
        b, _ = self._initialised(component, model_factory, seed=0)
        assert _same(_state(a), _state(b))

    def test_changes_parameters_only_if_it_says_so(self, component: Any, model_factory: Any,
                                                   changes_parameters: bool) -> None:
        model, before = self._initialised(component, model_factory, seed=0)
        assert (not _same(_state(model), before)) == changes_parameters

    def test_keeps_parameters_finite(self, component: Any, model_factory: Any) -> None:
        model, _ = self._initialised(component, model_factory, seed=0)
        assert all(bool(p.isfinite().all()) for p in model.parameters())

    def test_keeps_every_parameter_and_tied_weights(self, component: Any,
                                                    model_factory: Any) -> None:
        import torch

        torch.manual_seed(0)
        model = model_factory()
        before = {n: (p, p.shape, p.data_ptr()) for n, p in model.named_parameters()}
        component.apply(model)
        after = {n: (p, p.shape, p.data_ptr()) for n, p in model.named_parameters()}
        assert before.keys() == after.keys()
        assert all(before[n][0] is after[n][0] and before[n][1:] == after[n][1:] for n in before)


# --- samplers and trial schedulers -----------------------------------------------------------


class SamplerContract(ComponentContract):
    """Builds a seeded Optuna sampler: the same seed suggests the same points, and it finds
    a good point of a 1-D quadratic in 20 trials (a two-metric study too, if it says so)."""

    def _study(self, component: Any, seed: int, directions: int = 1) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        return optuna.create_study(sampler=component.build(seed=seed),
                                   directions=["minimize"] * directions)

    def test_builds_an_optuna_sampler(self, component: Any) -> None:
        import optuna

        assert isinstance(component.build(seed=0), optuna.samplers.BaseSampler)

    def test_pickles_and_goes_on_suggesting(self, component: Any) -> None:
        # Ray pickles the searcher, with its sampler, when a search starts and at every
        # experiment checkpoint: a sampler that cannot be pickled ends every search. A deep
        # copy goes through the same __getstate__/__setstate__ as pickle, without loading
        # bytes back.
        import copy
        import pickle

        study = self._study(component, seed=0)
        study.optimize(lambda t: t.suggest_float("x", -4, 4) ** 2, n_trials=3)
        pickle.dumps(study.sampler)
        study.sampler = copy.deepcopy(study.sampler)
        study.optimize(lambda t: t.suggest_float("x", -4, 4) ** 2, n_trials=2)
        assert len(study.trials) == 5

    def test_same_seed_same_suggestions(self, component: Any) -> None:
        def params(seed: int) -> list:
            study = self._study(component, seed)
            study.optimize(lambda t: t.suggest_float("x", -4, 4) ** 2, n_trials=5)
            return [t.params for t in study.trials]

        assert params(3) == params(3)

    def test_finds_a_good_point(self, component: Any) -> None:
        study = self._study(component, seed=0)
        study.optimize(lambda t: (t.suggest_float("x", -4, 4) - 1) ** 2, n_trials=20)
        assert study.best_value < 1.0

    def test_runs_the_studies_it_declares(self, component: Any) -> None:
        multi = type(component).multi_objective
        study = self._study(component, seed=0, directions=2 if multi else 1)

        def objective(t: Any) -> Any:
            x = t.suggest_float("x", -4, 4)
            return (x**2, (x - 2) ** 2) if multi else x**2

        study.optimize(objective, n_trials=6)
        assert len(study.best_trials) >= 1


class TrialSchedulerContract(ComponentContract):
    """Builds a Ray Tune trial scheduler for either mode, which only ever CONTINUEs or STOPs
    a trial: autostage refuses PAUSE (a paused Ray trial restarts from its last stage
    boundary, retraining tokens no record counts)."""

    @pytest.mark.parametrize("mode", ["min", "max"])
    def test_builds_a_ray_tune_trial_scheduler(self, component: Any, mode: str) -> None:
        from ray.tune.schedulers import TrialScheduler

        built = component.build(metric="eval.target.loss", mode=mode, time_attr="final_evals",
                                max_t=12)
        assert isinstance(built, TrialScheduler)

    @pytest.mark.parametrize("mode", ["min", "max"])
    def test_never_pauses_a_trial(self, component: Any, mode: str) -> None:
        actions = _drive(component.build(metric="eval.target.loss", mode=mode,
                                         time_attr="final_evals", max_t=12), mode)
        assert "PAUSE" not in actions, "autostage trial schedulers may only CONTINUE or STOP"
        assert set(actions) <= {"CONTINUE", "STOP"}


class _Controller:
    """What Ray's trial schedulers ask of Tune's controller, for `_drive`."""

    def __init__(self, trials: list) -> None:
        self.trials = trials

    def get_live_trials(self) -> list:
        return [t for t in self.trials if t.status in ("PENDING", "RUNNING", "PAUSED")]

    def get_trials(self) -> list:
        return self.trials


def _drive(scheduler: Any, mode: str, trials: int = 8, parallel: int = 2,
           max_t: int = 12) -> list[str]:
    """Run `trials` fake trials through `scheduler`, `parallel` at a time, each reporting
    `final_evals` 1..max_t with a seeded loss curve (some good, some poor); every decision it
    made, in order."""
    import random

    from ray.tune.experiment import Trial

    rng = random.Random(0)
    population = [Trial("__fake", stub=True, config={}, trial_id=f"fake{i}")
                  for i in range(trials)]
    controller = _Controller(population)
    for trial in population:
        scheduler.on_trial_add(controller, trial)
    actions: list[str] = []
    queue = list(population)
    while queue:
        batch, queue = queue[:parallel], queue[parallel:]
        for trial in batch:
            trial.set_status(Trial.RUNNING)
        for trial in batch:
            level = rng.uniform(1.0, 3.0)
            for t in range(1, max_t + 1):
                value = level + 1.0 / t
                result = {"final_evals": t, "training_iteration": t,
                          "eval.target.loss": value if mode == "min" else -value}
                action = scheduler.on_trial_result(controller, trial, result)
                actions.append(str(action))
                if action != "CONTINUE" or t == max_t:
                    break
            trial.set_status(Trial.TERMINATED)
            scheduler.on_trial_complete(controller, trial, result)
    return actions
