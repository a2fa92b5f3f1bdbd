"""Built-in components behave as their names promise (the full catalogue grows in its own
issue; these are the ones the core ships)."""

import math

import optuna
import pytest

from autostage.decisions import Advance, Continue, Eval, History, ScaleLR
from autostage_plugins.lr_schedules import WSD, Constant, Cosine, Linear
from autostage_plugins.stage_policies import Plateau


def test_cosine_warms_up_peaks_and_reaches_its_min_ratio():
    s = Cosine(warmup=0.1, min_ratio=0.2)
    assert s.multiplier(0, 1000) < 0.05
    assert s.multiplier(100, 1000) == pytest.approx(1.0)
    assert s.multiplier(1000, 1000) == pytest.approx(0.2)


def test_wsd_is_flat_until_its_decay_phase_then_decays_to_min():
    s = WSD(warmup=0.0, decay=0.2, shape="linear", min_ratio=0.0)
    assert s.multiplier(0, 1000) == s.multiplier(799, 1000) == 1.0
    assert s.multiplier(900, 1000) == pytest.approx(0.5)
    assert s.multiplier(1000, 1000) == pytest.approx(0.0)
    sqrt = WSD(warmup=0.0, decay=0.2, shape="1-sqrt")
    assert sqrt.multiplier(900, 1000) == pytest.approx(1 - math.sqrt(0.5))


def test_linear_and_constant():
    assert Linear(warmup=0.0, min_ratio=0.5).multiplier(500, 1000) == pytest.approx(0.75)
    assert Constant().multiplier(999, 1000) == 1.0


def history(values, mode="min"):
    evals = tuple(
        Eval(stage="s", visit=0, tokens=i, stage_tokens=i, stage_budget=100, lr=1.0,
             metrics={"eval.s.loss": v}, watch="eval.s.loss", watch_mode=mode)
        for i, v in enumerate(values)
    )
    return History(evals=evals, metric="eval.s.loss", mode=mode, stages=("s",),
                   remaining=(), final="s")


def decisions(policy, values):
    return [policy.decide(history(values[: i + 1])) for i in range(len(values))]


def test_plateau_cuts_the_lr_after_patience_flat_evals_then_advances():
    p = Plateau(patience=2, factor=0.5, max_cuts=1)
    got = decisions(p, [3.0, 2.0, 2.1, 2.2, 2.3, 2.4])
    assert got == [Continue(), Continue(), Continue(), ScaleLR(0.5), Continue(), Advance()]


def test_plateau_keeps_going_while_improving_and_respects_min_delta():
    assert decisions(Plateau(patience=1), [3.0, 2.0, 1.0])[-1] == Continue()
    assert decisions(Plateau(patience=1, min_delta=0.5), [3.0, 2.9])[-1] == ScaleLR(0.5)


def test_plateau_reads_max_mode_metrics_the_right_way_round():
    assert decisions(Plateau(patience=1), [0.5, 0.6])[-1] == ScaleLR(0.5)  # a loss got worse
    maxed = Plateau(patience=1).decide(history([0.5, 0.6], mode="max"))
    assert maxed == Continue()  # accuracy going up is progress


@pytest.mark.parametrize("name", ["tpe", "random", "cmaes", "gp", "qmc", "nsga2"])
def test_every_sampler_builds_and_finds_a_good_point(registry, name):
    sampler = registry.create("sampler", name).build(seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -4, 4) - 1) ** 2, n_trials=20)
    assert study.best_value < 1.0


@pytest.mark.parametrize("name", ["fifo", "asha", "hyperband", "median"])
def test_every_trial_scheduler_builds_a_ray_scheduler(registry, name):
    from ray.tune.schedulers import TrialScheduler

    built = registry.create("trial_scheduler", name).build(
        metric="eval.target.loss", mode="min", time_attr="evals", max_t=12)
    assert isinstance(built, TrialScheduler)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizers_reduce_a_quadratic(registry, name):
    import torch

    torch.manual_seed(0)
    x = torch.nn.Parameter(torch.randn(8) * 3)
    opt = registry.create("optimizer", name, {"lr": 0.05}).build([x])
    start = float((x**2).sum().detach())
    for _ in range(100):
        opt.zero_grad()
        loss = (x**2).sum()
        loss.backward()
        opt.step()
    assert float((x**2).sum().detach()) < start * 0.1
