"""Built-in components behave as their names promise: the core's first ones. The rest of the
catalogue is in test_catalogue.py; every built-in's contract suite in test_contracts.py."""

import math

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


# an LR each optimizer suits on this problem: Adagrad's steps shrink, Lion's are all +-lr
@pytest.mark.slow
@pytest.mark.parametrize(("name", "lr"), [
    ("sgd", 0.05), ("adam", 0.05), ("adamw", 0.05), ("adagrad", 0.5), ("rmsprop", 0.05),
    ("adafactor", 0.05), ("lion", 0.05)])
def test_optimizers_reduce_a_quadratic(registry, name, lr):
    import torch

    torch.manual_seed(0)
    vector = torch.nn.Parameter(torch.randn(8) * 3)
    matrix = torch.nn.Parameter(torch.randn(4, 3) * 3)  # Adafactor factors matrices

    def loss():
        return (vector**2).sum() + (matrix**2).sum()

    opt = registry.create("optimizer", name, {"lr": lr}).build([vector, matrix])
    start = float(loss().detach())
    for _ in range(100):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < start * 0.1


def test_arith_operand_digits_writes_easy_problems_in_the_targets_format():
    from autostage_plugins.datasets import Arith

    easy = Arith(digits=4, operand_digits=2, train_size=200).examples("train", seed=0)
    full = Arith(digits=4, train_size=200).examples("train", seed=0)
    for e in easy:
        a, b = (int(x) for x in e.prompt.rstrip("=").split("+"))
        assert a < 100 and b < 100 and len(e.prompt) == len("0000+0000=")
        assert int(e.text[::-1]) == a + b and len(e.text) == 5  # reversed, padded answer
    assert max(int(e.prompt[:4]) for e in full) >= 100  # the default uses every digit
    # the held-out problems of the easy task are its own, and the same for every trial
    val = Arith(digits=4, operand_digits=2).examples("val", seed=0)
    assert val == Arith(digits=4, operand_digits=2).examples("val", seed=7)
    assert val != Arith(digits=4).examples("val", seed=0)
