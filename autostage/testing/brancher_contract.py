"""`BrancherContract`: what autostage relies on from a branching trial scheduler's brancher
(`TrialScheduler.branching(metric, mode)`, an `autostage.branching.Brancher`), checked on
made-up branch points without Ray. A trial scheduler that does not branch skips it.

    class TestMyTrialScheduler(TrialSchedulerContract, BrancherContract):
        @pytest.fixture
        def component(self):
            return MyTrialScheduler()
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from autostage.branching import Brancher, BranchPoint
from autostage.decisions import Continue, Eval

METRIC = "eval.target.loss"


def made_up_points(seed: int = 0, trials: int = 8) -> list[BranchPoint]:
    """`trials` trials' points at a stage boundary and at three final-stage evals (four
    places), with seeded metric values, in the order a search would report them."""
    rng = random.Random(seed)
    points = []
    for trial in range(trials):
        level = rng.uniform(0.5, 3.0)
        for evals, (stage, finals) in enumerate(
                [("prereq", 0), ("target", 1), ("target", 2), ("target", 3)], start=1):
            loss = level + rng.uniform(0.0, 0.3) / evals
            ev = Eval(stage=stage, visit=0, tokens=1000 * evals, stage_tokens=1000,
                      stage_budget=1000, lr=1e-3, metrics={METRIC: loss}, watch=METRIC,
                      decision=Continue())
            name = f"ray-0/trial-{trial}/checkpoint_{evals:06d}"
            points.append(BranchPoint(trial, {"optimizer": "adamw"}, trial, ev, evals, finals,
                                      name, f"/store/{name}", done=(stage,) if not finals
                                      else ()))
    return points


class BrancherContract:
    """A brancher proposes only points it saw that the search says are usable, draws its
    randomness from the search's seeded generator, keeps (wants) what it may propose, and
    does branch once it has seen enough."""

    @pytest.fixture(params=["min", "max"])
    def brancher(self, component: Any, request: Any) -> Brancher:
        made = component.branching(METRIC, request.param)
        if made is None:
            pytest.skip(f"{type(component).__name__} does not branch (branching() is None)")
        return made

    def _fed(self, brancher: Brancher, seed: int = 0) -> list[BranchPoint]:
        points = made_up_points(seed)
        for p in points:
            brancher.see(p)
        return points

    def test_is_a_brancher(self, brancher: Any) -> None:
        assert isinstance(brancher, Brancher)

    def test_proposes_nothing_before_it_saw_a_point(self, brancher: Brancher) -> None:
        rng = random.Random(0)
        assert all(brancher.propose(lambda p: True, rng) is None for _ in range(20))

    def test_proposes_only_points_it_saw_that_are_usable(self, brancher: Brancher) -> None:
        seen = {id(p) for p in self._fed(brancher)}
        usable = lambda p: p.trial % 2 == 0 or p.evals < 3  # noqa: E731
        rng = random.Random(1)
        for _ in range(200):
            p = brancher.propose(usable, rng)
            assert p is None or (id(p) in seen and usable(p)), p

    def test_keeps_the_checkpoints_it_may_propose(self, brancher: Brancher) -> None:
        self._fed(brancher)
        wanted = {id(p) for p in brancher.wanted()}
        rng = random.Random(2)
        proposed = [brancher.propose(lambda p: True, rng) for _ in range(200)]
        assert all(id(p) in wanted for p in proposed if p is not None)

    def test_the_same_seed_proposes_the_same_points(self, component: Any,
                                                    brancher: Brancher) -> None:
        def proposals(b: Brancher) -> list:
            self._fed(b)
            rng = random.Random(3)
            return [(p.trial, p.evals) if p else None
                    for p in (b.propose(lambda p: True, rng) for _ in range(50))]

        twin = component.branching(METRIC, "min")
        assert proposals(component.branching(METRIC, "min")) == proposals(twin)

    def test_branches_once_it_has_seen_enough(self, brancher: Brancher) -> None:
        self._fed(brancher)
        rng = random.Random(4)
        assert any(brancher.propose(lambda p: True, rng) for _ in range(200)), \
            "a brancher that never proposes a point makes every trial fresh"

    def test_takes_forgotten_points_quietly(self, brancher: Brancher) -> None:
        points = self._fed(brancher)
        dropped = [p for p in points if p.trial == 0 and p.evals > 1]
        brancher.forget(dropped)
        rng = random.Random(5)
        usable = lambda p: p not in dropped  # noqa: E731  (the search's usable() filters them)
        assert all(brancher.propose(usable, rng) not in dropped for _ in range(100))
