"""The built-in catalogue behaves as documented: schedule shapes at their boundaries, stage
policies through the trial loop, optimizers on a quadratic, inits on real module layouts."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from types import SimpleNamespace

import pytest

from autostage.decisions import Advance, Eval, Rewind
from autostage.errors import AutostageError
from autostage.records import TrialStatus
from autostage.testing import CurveRun, run_toy_trial, tiny_model, trial_plan
from autostage.trial import run_trial
from autostage_plugins.inits import Kaiming, Normal, ScaledResidual, XavierUniform
from autostage_plugins.lr_schedules import WSD, Cosine, Exponential, InverseSqrt, OneCycle, Step
from autostage_plugins.stage_policies import Bandit, BudgetSplit, Plateau, RewindOnRegression

# --- LR schedules ---------------------------------------------------------------------------


def test_wsd_at_its_phase_boundaries():
    s = WSD(warmup=0.1, decay=0.2, shape="linear", min_ratio=0.1)
    assert s.multiplier(0, 1000) == pytest.approx(1 / 101)  # warming up
    assert s.multiplier(99, 1000) == pytest.approx(100 / 101)
    assert s.multiplier(100, 1000) == 1.0  # warmup over: stable
    assert s.multiplier(799, 1000) == 1.0
    assert s.multiplier(800, 1000) == 1.0  # decay starts from the peak
    assert s.multiplier(900, 1000) == pytest.approx(0.55)
    assert s.multiplier(1000, 1000) == pytest.approx(0.1)
    assert s.multiplier(1100, 1000) == pytest.approx(0.1)  # a batch past the end holds


@pytest.mark.parametrize(("shape", "midway"), [
    ("linear", 0.5), ("1-sqrt", 1 - math.sqrt(0.5)), ("cosine", 0.5)])
def test_wsd_decay_shapes(shape, midway):
    s = WSD(warmup=0.0, decay=0.5, shape=shape, min_ratio=0.0)
    assert s.multiplier(750, 1000) == pytest.approx(midway)
    assert s.multiplier(1000, 1000) == pytest.approx(0.0)


def test_cosine_decays_monotonically_to_its_min_ratio():
    s = Cosine(warmup=0.0, min_ratio=0.2)
    values = [s.multiplier(d, 1000) for d in range(0, 1001, 10)]
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.2)
    assert s.multiplier(500, 1000) == pytest.approx(0.6)  # halfway down the half cosine
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_one_cycle_peaks_where_configured():
    s = OneCycle(peak=0.25, start_ratio=0.1, end_ratio=0.01)
    values = [s.multiplier(d, 1000) for d in range(1001)]
    assert values.index(max(values)) == 250 and max(values) == 1.0
    assert values[0] == pytest.approx(0.1) and values[-1] == pytest.approx(0.01)
    assert all(a < b for a, b in zip(values[:250], values[1:251], strict=True))
    assert all(a > b for a, b in zip(values[250:], values[251:], strict=False))


def test_step_drops_by_gamma_at_every_interval():
    s = Step(every=0.25, gamma=0.5)
    got = [s.multiplier(d, 1000) for d in (0, 249, 250, 499, 500, 750, 999, 1000)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25, 0.125, 0.125, 0.0625]


def test_exponential_decays_by_the_same_factor_per_token():
    s = Exponential(min_ratio=0.04)
    assert s.multiplier(500, 1000) == pytest.approx(0.2)  # sqrt(0.04)
    assert s.multiplier(1000, 1000) == pytest.approx(0.04)
    assert s.multiplier(250, 1000) / s.multiplier(0, 1000) == pytest.approx(
        s.multiplier(750, 1000) / s.multiplier(500, 1000))


def test_inverse_sqrt_is_the_transformer_schedule_when_timescale_is_warmup():
    s = InverseSqrt(warmup=0.1, timescale=0.1)
    for done in (100, 400, 900):
        assert s.multiplier(done, 1000) == pytest.approx(math.sqrt(100 / done))
    assert s.multiplier(50, 1000) < s.multiplier(99, 1000) < 1.0  # warming up


def test_warmup_rewarms_at_every_stage_visit():
    # the loop restarts `done` at each visit: each stage's first segment starts near zero
    run = CurveRun(lambda source, trained: 1.0)
    plan = trial_plan(None, [("a", 1000), ("b", 1000)], every=100,
                      lr_schedule=Cosine(warmup=0.2, min_ratio=0.1))
    run_trial(plan, run)
    first = dict(reversed(run.lrs))  # each stage's LR at its first segment
    assert first["a"] < 3e-3 * 0.01 and first["b"] < 3e-3 * 0.01
    assert max(lr for stage, lr in run.lrs if stage == "b") == pytest.approx(3e-3, rel=0.01)


# --- stage policies through the trial loop --------------------------------------------------


def test_plateau_cuts_the_lr_after_patience_flat_evals_then_advances():
    run = CurveRun(lambda source, trained: 2.0)  # flat from the start
    policy = Plateau(patience=2, factor=0.5, max_cuts=2)
    result = run_trial(trial_plan(policy, [("a", 2000), ("b", 500)], every=100), run)
    a = [e for e in result.evals if e.stage == "a"]
    # evals 3 and 5 follow two flat evals each: cut, cut; eval 7: out of cuts, advance
    assert [str(e.decision) for e in a] == ["Continue()", "Continue()", "ScaleLR(factor=0.5)",
                                            "Continue()", "ScaleLR(factor=0.5)", "Continue()",
                                            "Advance(to=None)"]
    lrs = [lr for stage, lr in run.lrs if stage == "a"]
    assert lrs[:4] == [3e-3] * 3 + [1.5e-3] and lrs[-1] == pytest.approx(7.5e-4)
    assert run.trained["a"] == 700  # the rest of a's 2000 tokens were not spent


class Recording(CurveRun):
    def __init__(self, curve):
        super().__init__(curve)
        self.restored = []

    def restore(self, snapshot):
        super().restore(snapshot)
        self.restored.append(dict(self.trained))


def overfits(source, trained):
    """Loss falls until 500 tokens, then rises: more training hurts."""
    return 1.0 + ((trained.get(source, 0) - 500) / 500) ** 2


def test_rewind_restores_the_best_weights_then_advances():
    run = Recording(overfits)
    policy = RewindOnRegression(threshold=0.02, lr_factor=0.5, max_rewinds=2)
    result = run_trial(trial_plan(policy, [("a", 2000), ("b", 300)], every=100), run)
    a = [e for e in result.evals if e.stage == "a"]
    assert [e.decision for e in a].count(Rewind(0.5)) == 2
    assert a[-1].decision == Advance()  # a third regression: the stage stopped helping
    # each rewind went back to the weights of the best eval (500 tokens trained on a), and
    # so did the Advance: stage b starts from them, not from the third regression ...
    assert run.restored == [{"a": 500}, {"a": 500}, {"a": 500}]
    assert a[-1].restored_from == 500
    # ... and the LR was halved at each rewind
    assert [lr for stage, lr in run.lrs if stage == "a"][-1] == pytest.approx(3e-3 / 4)
    assert result.evals[-1].stage == "b"


def test_a_rewind_records_what_was_measured_and_what_the_weights_are_now():
    run = Recording(overfits)
    policy = RewindOnRegression(threshold=0.02, lr_factor=0.5, max_rewinds=2)
    result = run_trial(trial_plan(policy, [("a", 2000), ("b", 300)], every=100), run)
    best = next(e for e in result.evals if e.stage_tokens == 500)
    rewind = next(e for e in result.evals if e.decision == Rewind(0.5))
    # the regression that triggered the rewind is kept ...
    assert rewind.metrics["eval.a.loss"] > best.metrics["eval.a.loss"] * 1.02
    # ... beside the metrics of the weights the trial goes on with
    assert rewind.restored == best.metrics and rewind.value == best.value
    assert Eval.from_json(rewind.to_json()) == rewind
    # ... and where the stage ended (an Advance, worse than the best): its best weights went on
    advance = next(e for e in result.evals if e.decision == Advance())
    assert advance.restored == best.metrics
    assert all(e.restored is None for e in result.evals
               if e.decision not in (Rewind(0.5), Advance()))


def learns(rate):
    """A stage whose loss falls `rate` per 100k tokens trained on it."""
    return lambda trained_here: 4.0 - rate * trained_here / 100_000


def curriculum(source, trained):
    curves = {"fast": learns(0.8), "slow": learns(0.05), "target": learns(0.5)}
    return curves[source](trained.get(source, 0))


def bandit_trial(seed, order=None, every=10_000, policy=None):
    run = CurveRun(curriculum)
    plan = trial_plan(policy or Bandit(), [("fast", 100_000), ("slow", 100_000),
                                           ("target", 50_000)],
                      every=every, seed=seed, order=order)
    return run_trial(plan, run), run


def test_bandit_prefers_the_stage_with_more_learning_progress():
    for seed in range(8):
        result, run = bandit_trial(seed)
        assert result.status == TrialStatus.COMPLETED and result.evals[-1].stage == "target"
        assert run.trained["fast"] >= 2 * run.trained["slow"], (seed, run.trained)
        # it spends what the fixed plan would on the prefix: both stages' budgets
        assert run.trained["fast"] + run.trained["slow"] == 200_000


def test_bandit_never_ends_on_a_non_final_stage():
    for seed in range(20):
        result, _ = bandit_trial(seed, every=5_000, policy=Bandit(min_segment=2, explore=1.0))
        # not failed on too many visits
        assert result.status == TrialStatus.COMPLETED, result.reason
        assert result.evals[-1].stage == "target"
        toy = run_toy_trial(Bandit(), seed=seed)
        assert toy.status == TrialStatus.COMPLETED and toy.evals[-1].stage == "target"


def test_bandit_waits_a_segment_before_switching_and_keeps_to_the_plan():
    result, run = bandit_trial(seed=1, order=("fast", "target"))  # the plan skips "slow"
    assert "slow" not in run.stages
    runs = [len(list(g)) for _, g in itertools.groupby(
        e.stage for e in result.evals if e.stage != "target")]
    assert all(n >= 2 for n in runs)


def test_bandit_decides_the_same_from_the_same_history():
    a, _ = bandit_trial(seed=5)
    b, _ = bandit_trial(seed=5)
    c, _ = bandit_trial(seed=6)
    trace = [[(e.stage, e.decision) for e in r.evals] for r in (a, b, c)]
    assert trace[0] == trace[1] and trace[0] != trace[2]


def test_budget_split_spends_a_fraction_of_each_visit_by_position():
    run = CurveRun(lambda source, trained: 1.0)
    policy = BudgetSplit(first=0.5, second=0.25)
    stages = [("a", 1000), ("b", 1000), ("t", 1000)]
    run_trial(trial_plan(policy, stages, every=125), run)
    assert run.trained == {"a": 500, "b": 250, "t": 1000}  # the final stage runs in full
    swapped = CurveRun(lambda source, trained: 1.0)
    run_trial(trial_plan(policy, stages, every=125, order=("b", "a", "t")), swapped)
    assert swapped.trained == {"b": 500, "a": 250, "t": 1000}


# --- optimizers -----------------------------------------------------------------------------


@pytest.mark.slow
def test_lion_follows_the_update_rule_of_chen_et_al():
    import torch

    from autostage_plugins.optimizers import Lion

    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = Lion(lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.5).build([p])
    grads = [torch.tensor([0.5, -1.0, 0.0]), torch.tensor([-2.0, -1.0, 1.0])]
    expected, m = p.detach().clone(), torch.zeros(3)
    for g in grads:
        expected = expected * (1 - 0.1 * 0.5) - 0.1 * torch.sign(0.9 * m + 0.1 * g)
        m = 0.99 * m + 0.01 * g
        p.grad = g.clone()
        opt.step()
    assert torch.allclose(p.detach(), expected)


# --- inits ----------------------------------------------------------------------------------


def stds(model):
    import torch

    return {n: float(p.detach().std()) for n, p in model.named_parameters() if p.dim() >= 2
            and not torch.all(p == 0)}


@pytest.mark.slow
def test_scaled_residual_scales_the_residual_projections_of_a_torch_module():
    import torch

    torch.manual_seed(0)
    model = tiny_model(n_layer=2, width=64)
    ScaledResidual(std=0.04).apply(model)
    got = stds(model)
    for name, std in got.items():
        want = 0.04 / 2 if name.endswith("c_proj.weight") else 0.04  # 1/sqrt(2 * 2 blocks)
        assert std == pytest.approx(want, rel=0.1), name
    assert all(float(b.detach().abs().max()) == 0 for n, b in model.named_parameters()
               if n.endswith("bias"))
    assert model.lm_head.weight is model.wte.weight


@pytest.mark.slow
def test_scaled_residual_reads_n_layer_from_the_model_config():
    import torch

    torch.manual_seed(0)
    model = tiny_model(n_layer=2, width=64)
    model.config = SimpleNamespace(n_layer=8)  # e.g. a model pruned to two of eight blocks
    ScaledResidual(std=0.04).apply(model)
    assert float(model.h[0].mlp.c_proj.weight.detach().std()) == pytest.approx(0.01, rel=0.1)


@pytest.mark.slow
def test_scaled_residual_on_gpt2_and_bert():
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                      n_positions=32))
    ScaledResidual(std=0.02).apply(gpt2)
    for name, std in stds(gpt2).items():
        want = 0.01 if ".c_proj." in name else 0.02
        assert std == pytest.approx(want, rel=0.15), name
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight
    bert = BertModel(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=128,
                                max_position_embeddings=32))
    ScaledResidual(std=0.02).apply(bert)
    got = stds(bert)
    assert got["encoder.layer.0.attention.output.dense.weight"] == pytest.approx(0.01, rel=0.15)
    assert got["encoder.layer.1.output.dense.weight"] == pytest.approx(0.01, rel=0.15)
    assert got["encoder.layer.0.intermediate.dense.weight"] == pytest.approx(0.02, rel=0.15)


@pytest.mark.slow
def test_scaled_residual_names_what_it_looks_for_when_nothing_matches():
    import torch

    with pytest.raises(AutostageError, match="scaled_residual.*c_proj"):
        ScaledResidual().apply(torch.nn.Sequential(torch.nn.Linear(4, 4)))


@pytest.mark.slow
def test_kaiming_and_xavier_use_the_true_fan_of_gpt2_conv1d_layers():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=64,
                                       n_positions=32))
    fc = model.transformer.h[0].mlp.c_fc.weight  # Conv1D: stored (in 64, out 256)
    Kaiming(mode="fan_in").apply(model)
    assert float(fc.detach().std()) == pytest.approx(math.sqrt(2 / 64), rel=0.05)  # not sqrt(2/256)
    XavierUniform(gain=1.0).apply(model)
    bound = math.sqrt(6 / (64 + 256))
    assert bound * 0.95 < float(fc.detach().abs().max()) <= bound
    assert float(model.transformer.h[0].mlp.c_fc.bias.detach().abs().max()) == 0


@pytest.mark.slow
def test_normal_draws_every_matrix_embeddings_included():
    import torch

    torch.manual_seed(0)
    model = tiny_model(width=64)
    Normal(std=0.1).apply(model)
    got = stds(model)
    assert "wte.weight" in got
    assert all(s == pytest.approx(0.1, rel=0.1) for s in got.values())


def test_every_catalogue_name_is_listed_by_the_plugins_command(capsys):
    from autostage.cli import main

    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    names = Counter()
    for line in out.splitlines():
        for part in line.split(";"):
            if ":" in part:
                names.update(n.strip() for n in part.split(":", 1)[1].split(","))
    for name in ("lion", "adafactor", "one_cycle", "inverse_sqrt", "bandit", "budget_split",
                 "rewind", "scaled_residual", "kaiming"):
        assert names[name] == 1, name
