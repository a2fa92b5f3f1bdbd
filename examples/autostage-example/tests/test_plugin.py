"""The example plugin's tests: autostage's contract suites (one fixture each) plus what is
particular to these components. Run from this directory after `pip install -e .`."""

import pytest
from autostage.decisions import Advance, Continue, Stop
from autostage.host import load_registry
from autostage.testing import (
    LRScheduleContract,
    StagePolicyContract,
    decisions,
    replay,
    run_toy_trial,
)

from autostage_example.plugin import Cyclic, GoodEnough


class TestCyclic(LRScheduleContract):
    @pytest.fixture(params=[1, 3])
    def component(self, request):
        return Cyclic(cycles=request.param, min_ratio=0.2)


class TestGoodEnough(StagePolicyContract):
    @pytest.fixture(params=[0.5, 2.5])
    def component(self, request):
        return GoodEnough(goal=request.param)


def test_cyclic_peaks_in_the_middle_of_each_cycle():
    s = Cyclic(cycles=2, min_ratio=0.2)
    assert [s.multiplier(d, 1000) for d in (0, 250, 500, 750, 1000)] == pytest.approx(
        [0.2, 1.0, 0.2, 1.0, 0.2])


def test_good_enough_advances_a_prefix_stage_and_stops_the_final_one():
    policy = GoodEnough(goal=2.0)
    steps = replay(policy, [("prereq", [3.0, 1.9]), ("target", [3.0, 2.5, 1.8])])
    got = [d for _, d in steps]
    assert got[:4] == [Continue(), Advance(), Continue(), Continue()]
    assert isinstance(got[4], Stop) and "goal 2" in got[4].reason
    assert decisions(policy, [0.5, 0.9], mode="max") == [Continue(), Continue()]


def test_good_enough_saves_tokens_on_the_toy_trainer():
    fixed = run_toy_trial(seed=0)
    stopped = run_toy_trial(GoodEnough(goal=2.0), seed=0)
    assert stopped.status == "stopped" and stopped.tokens < fixed.tokens
    assert stopped.value <= 2.0


def test_autostage_finds_the_installed_plugin():
    registry = load_registry()
    for kind, name in (("lr_schedule", "cyclic"), ("stage_policy", "good_enough")):
        entry = registry.entries[kind][name]
        assert entry.plugin == "example"
        assert registry.host.info["example"].dist == "autostage-example"
