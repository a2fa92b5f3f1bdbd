"""The `pasha` and `curve` trial schedulers' rules, in plain Python (no Ray: `PashaRungs`,
`CurveStop` and the curve fits), and their Ray trial schedulers against the contract with
settings other than the defaults (test_contracts.py drives the defaults)."""

import numpy as np
import pytest

from autostage.testing import TrialSchedulerContract
from autostage_plugins.curves import FAMILIES, CurveStop, extrapolate, fit
from autostage_plugins.pasha import PashaRungs, crossings, percentile, rung_levels
from autostage_plugins.stopping_rules import Curve, Pasha


def feed(rule, trial, curve, sign=1.0):
    """Report `curve` (t -> value; values times `sign`) to `rule` in order of t, up to the
    eval it is stopped at: that t, or None when it ran through."""
    for t in sorted(curve):
        if not rule.report(trial, t, sign * curve[t]):
            return t
    return None


def flat(value, until):
    return {t: value for t in range(1, until + 1)}


# --- PASHA -----------------------------------------------------------------------------------


def test_rungs_fall_below_the_last_eval():
    assert rung_levels(2, 3, 100) == [2, 6, 18, 54]
    assert rung_levels(2, 3, 6) == [2]  # a rung at max_t would judge a finished trial
    assert rung_levels(1, 1.5, 10) == [1, 2, 3, 5, 8]  # rounded, no rung twice


def pasha_after_the_field(mode, epsilon=0.0):
    """Rungs at 2, 6, 18 (max_t 40); trial a leads throughout, b..d fall behind at the first
    rung, and the maximum rung is the second (6 evals)."""
    sign = 1.0 if mode == "min" else -1.0
    rule = PashaRungs(mode, grace_period=2, reduction_factor=3, max_t=40, epsilon=epsilon)
    assert feed(rule, "a", flat(1.0, 10), sign) is None  # leads the maximum rung: runs on
    for trial, value in [("b", 3.0), ("c", 4.0), ("d", 5.0)]:
        assert feed(rule, trial, flat(value, 10), sign) == 2  # ASHA's cut at the first rung
    assert rule.max_level == 6
    return rule, sign


@pytest.mark.parametrize("mode", ["min", "max"])
def test_pasha_keeps_two_rungs_while_the_ranking_holds(mode):
    rule, sign = pasha_after_the_field(mode)
    # e is second at both rungs: the ranking holds, and it stops at the maximum rung
    e = {1: 1.6, 2: 1.5, 3: 1.4, 4: 1.3, 5: 1.25, 6: 1.2, 7: 1.1}
    assert feed(rule, "e", e, sign) == 6
    assert rule.max_level == 6 and rule.top == 1


@pytest.mark.parametrize("mode", ["min", "max"])
def test_pasha_grows_the_maximum_when_the_top_two_rungs_disagree(mode):
    rule, sign = pasha_after_the_field(mode)
    # e trails a at 2 evals and leads it at 6: the top two rungs rank a and e differently
    e = {1: 1.6, 2: 1.5, 3: 1.3, 4: 1.1, 5: 0.9, 6: 0.8, 7: 0.8}
    assert feed(rule, "e", e, sign) is None  # goes on past 6: the best at that rung
    assert rule.max_level == 18


def test_pasha_soft_ranking_lets_trials_within_epsilon_swap():
    rule, sign = pasha_after_the_field("min", epsilon=1.0)  # a and e differ by 0.5 at 2 evals
    e = {1: 1.6, 2: 1.5, 3: 1.3, 4: 1.1, 5: 0.9, 6: 0.8, 7: 0.8}
    assert feed(rule, "e", e, sign) is None  # it leads the maximum rung: runs to the end
    assert rule.max_level == 6  # but its swap with a was within epsilon: no growth


def test_pasha_estimates_epsilon_from_trials_that_cross_and_cross_back():
    rule = PashaRungs("min", grace_period=2, reduction_factor=3, max_t=40)  # epsilon: noise
    rule.report("a", 1, 1.0)
    for t, value in {1: 1.2, 2: 1.2, 3: 0.9, 4: 1.1, 5: 1.15}.items():
        rule.report("b", t, value)  # b: behind a, ahead at 3, behind again at 4
    rule.report("a", 2, 1.0)
    for t in (3, 4, 5):
        rule.report("a", t, 1.0)
    assert rule.epsilon == pytest.approx(0.15)  # |1.15 - 1.0| at the last shared eval
    for t, value in {1: 1.3, 2: 1.3, 3: 0.5, 4: 0.5, 5: 0.5}.items():
        rule.report("c", t, value)  # c passes a and stays ahead: no noise, a real change
    assert rule.epsilon == pytest.approx(0.15)
    assert crossings([0.2, 0.2, -0.1, 0.1]) == 2 and crossings([0.1, 0, 0.1]) == 0
    assert percentile([0.1, 0.2, 0.3, 0.4], 90) == pytest.approx(0.37)  # NumPy's rule


def test_pasha_with_one_rung_below_the_last_eval_is_asha():
    rule = PashaRungs("min", grace_period=2, reduction_factor=3, max_t=4)
    assert rule.max_level is None
    assert feed(rule, "a", flat(1.0, 4)) is None
    assert feed(rule, "b", flat(2.0, 4)) == 2
    assert feed(rule, "c", flat(0.5, 4)) is None


# --- learning-curve extrapolation -------------------------------------------------------------

T = np.arange(1, 9, dtype=float)


def test_pow3_fit_recovers_a_power_law_and_its_limit():
    got = fit("pow3", T, 0.5 + 2 * T ** -0.7)
    assert got.c == pytest.approx(0.5, abs=1e-4) and got.shape == pytest.approx(0.7, abs=1e-3)
    assert got.at(100) == pytest.approx(0.5 + 2 * 100 ** -0.7, abs=1e-4)


def test_exp3_fit_recovers_an_exponential_and_its_limit():
    got = fit("exp3", T, 1 + 3 * np.exp(-0.4 * T))
    assert got.c == pytest.approx(1.0, abs=1e-4) and got.at(50) == pytest.approx(1.0, abs=1e-4)


def test_fits_tolerate_eval_noise():
    noisy = 0.5 + 2 * T ** -0.7 + np.random.default_rng(0).normal(0, 0.005, T.size)
    assert fit("pow3", T, noisy).at(12) == pytest.approx(0.5 + 2 * 12 ** -0.7, abs=0.03)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_the_ensemble_takes_the_most_optimistic_family(mode):
    sign = 1.0 if mode == "min" else -1.0
    y = sign * (1 + 3 * np.exp(-0.4 * T))
    each = [fit(f, T, y).at(20) for f in FAMILIES]
    got = extrapolate(list(T), list(y), 20, mode)
    assert got == (min(each) if mode == "min" else max(each))
    assert sign * got < 1.0  # log2 still descends: more optimistic than the exp3 limit


def curve_after_a_leader(mode, margin=0.02):
    """Trial a reached 1.0 and holds the best value (max_t 12)."""
    sign = 1.0 if mode == "min" else -1.0
    rule = CurveStop(mode, max_t=12, min_evals=3, margin=margin)
    assert feed(rule, "a", flat(1.0, 12), sign) is None
    return rule, sign


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_trial_whose_extrapolation_cannot_beat_the_best_is_stopped(mode):
    rule, sign = curve_after_a_leader(mode)
    assert feed(rule, "b", {1: 2.4, 2: 2.1, 3: 2.02, 4: 2.01}, sign) == 3  # at min_evals
    assert sign * rule.predictions["b"] > 1.02  # even the most optimistic misses the bar


@pytest.mark.parametrize("mode", ["min", "max"])
def test_a_trial_whose_extrapolation_can_beat_the_best_goes_on(mode):
    rule, sign = curve_after_a_leader(mode)
    steep = {t: 0.5 + 2.5 / t for t in range(1, 6)}  # 3.0, 1.75, 1.33, ...: heads to 0.5
    assert feed(rule, "c", steep, sign) is None
    assert sign * rule.predictions["c"] < 1.0


def test_the_best_trial_so_far_and_early_evals_are_never_judged():
    rule = CurveStop("min", max_t=12, min_evals=3, margin=0.0)
    assert feed(rule, "a", flat(2.0, 12)) is None  # alone: always the best
    assert feed(rule, "b", {1: 3.0, 2: 3.0}) is None  # under min_evals
    assert not rule.report("b", 3, 3.0)
    assert rule.report("b", 12, 3.0)  # its last eval: trained everything


def test_the_trial_holding_the_best_value_is_never_stopped():
    rule = CurveStop("min", max_t=12, min_evals=3, margin=0.0)
    assert feed(rule, "a", {1: 1.0, 2: 1.5, 3: 2.0, 4: 2.5}) is None  # its 1.0 is the best
    assert feed(rule, "b", {1: 1.2, 2: 1.6, 3: 2.0}) == 3  # the same curve, not the best


def test_the_margin_keeps_a_trial_just_short_of_the_best():
    rule, _ = curve_after_a_leader("min", margin=0.02)
    assert feed(rule, "b", flat(1.01, 5)) is None  # within 2% of the best
    strict, _ = curve_after_a_leader("min", margin=0.0)
    assert feed(strict, "b", flat(1.01, 5)) == 3


def test_values_that_are_not_numbers_are_not_fitted():
    rule = CurveStop("min", max_t=12, min_evals=3, margin=0.0)
    feed(rule, "a", flat(1.0, 12))
    assert rule.report("b", 1, None) and rule.report("b", 2, 2.0) and rule.report("b", 3, 2.0)
    assert not rule.report("b", 4, 2.0)  # its third number


# --- the contract, with settings other than the defaults ---------------------------------------


class TestPashaSettings(TrialSchedulerContract):
    @pytest.fixture(params=[{"epsilon": 0.0}, {"grace_period": 1, "reduction_factor": 1.5}])
    def component(self, request):
        return Pasha(**request.param)


class TestCurveSettings(TrialSchedulerContract):
    @pytest.fixture(params=[{"min_evals": 2, "margin": 0.0}, {"min_evals": 5, "margin": 0.5}])
    def component(self, request):
        return Curve(**request.param)
