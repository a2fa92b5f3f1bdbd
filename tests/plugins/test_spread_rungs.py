"""Rungs placed by the data (`population` with `auto_grace = true`): no rung while every trial
sits on a shared plateau; the first rung where the trials part; ASHA's rule from there."""

import pytest

from autostage.testing import TrialSchedulerContract
from autostage_plugins.spread_rungs import SpreadRungs
from autostage_plugins.trial_schedulers import Population


def plateau_then(t, breaks_at=None, jitter=0.0):
    """A loss curve: 1.55 (+ jitter) on the plateau; from `breaks_at` on it falls 0.3 an eval."""
    if breaks_at is None or t < breaks_at:
        return 1.55 + jitter
    return 1.55 - 0.3 * (t - breaks_at + 1)


def feed(rule, curves, upto):
    """Report every curve at t = 1..upto in turn (all trials at t before any at t + 1)."""
    decisions = {}
    for t in range(1, upto + 1):
        for name, curve in curves.items():
            if decisions.get(name, True):
                decisions[name] = rule.report(name, t, curve(t))
    return decisions


def jittery(i):
    return lambda t: plateau_then(t, jitter=0.01 * ((t * (i + 3)) % 5 - 2))


def test_no_rung_while_every_trial_sits_on_the_plateau():
    rule = SpreadRungs("min", reduction_factor=2, max_t=16)
    decisions = feed(rule, {f"t{i}": jittery(i) for i in range(6)}, upto=12)
    assert rule.first is None and all(decisions.values())


def test_the_first_rung_falls_where_one_trial_breaks_away():
    rule = SpreadRungs("min", reduction_factor=2, max_t=16)
    curves = {f"t{i}": jittery(i) for i in range(5)}
    curves["leader"] = lambda t: plateau_then(t, breaks_at=6)
    decisions = feed(rule, curves, upto=6)
    assert rule.first == 6 and rule.levels == [6, 12]
    assert all(decisions.values())  # the others reported t=6 before the rung was placed
    decisions = feed(rule, curves, upto=7)  # ... and are judged at their next report
    # ASHA at the rung, by the values at t=6: the best half of the six go on
    assert decisions["leader"] and sum(decisions.values()) == 3


def test_the_mode_max_mirror_parts_the_same_way():
    rule = SpreadRungs("max", reduction_factor=2, max_t=16)
    curves = {f"t{i}": (lambda c: lambda t: -c(t))(jittery(i)) for i in range(5)}
    curves["leader"] = lambda t: -plateau_then(t, breaks_at=6)
    decisions = feed(rule, curves, upto=6)
    assert rule.first == 6 and decisions["leader"]


def test_a_trial_that_passed_the_rung_before_it_was_placed_is_judged_at_its_next_report():
    rule = SpreadRungs("min", reduction_factor=2, max_t=16, min_trials=3)
    # a slow trial reported t=1..3 on the plateau before the others got there
    for t in range(1, 4):
        assert rule.report("early", t, 1.60)
    curves = {f"t{i}": jittery(i) for i in range(3)}
    curves["leader"] = lambda t: plateau_then(t, breaks_at=2)
    feed(rule, curves, upto=2)
    assert rule.first == 2
    assert rule.report("early", 4, 1.60) is False  # the worst at rung 2: stopped now
    assert ("early", 2) in rule.judged


@pytest.mark.parametrize("settings", [{"auto_grace": True}, {"auto_grace": True, "spread": 1}])
def test_population_builds_the_rule_with_auto_grace(settings):
    from autostage_plugins.ray_stopping_rules import RuleScheduler

    built = Population(**settings).build("eval.target.loss", "min", "final_evals", 16)
    assert isinstance(built, RuleScheduler) and isinstance(built.rule, SpreadRungs)
    assert built.rule.reduction_factor == pytest.approx(4 / 3)  # 1 / (1 - quantile 0.25)


class TestAutoGrace(TrialSchedulerContract):
    @pytest.fixture(params=[{"auto_grace": True}, {"auto_grace": True, "spread": 0.5}])
    def component(self, request):
        return Population(**request.param)
