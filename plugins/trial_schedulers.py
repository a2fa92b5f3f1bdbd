"""Built-in Ray Tune trial schedulers. Ray is imported inside `build`: only `search` needs it.

Time is counted in evals (or tokens), so rungs fall at stage evaluations.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from autostage.branching import Brancher, BranchPoint
from autostage.components import TrialScheduler
from autostage.hookspecs import hookimpl
from autostage.ranking import better


class FIFO(TrialScheduler):
    """Run every trial to its end: no early stopping."""

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()


class ASHA(TrialScheduler):
    """Asynchronous successive halving (Li et al. 2020): stop the weaker trials at each rung."""

    grace_period: int = Field(2, ge=1, le=10_000, description="evals before the first rung")
    reduction_factor: float = Field(3.0, ge=1.5, le=10)

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            metric=metric, mode=mode, time_attr=time_attr, max_t=max(max_t, self.grace_period),
            grace_period=self.grace_period, reduction_factor=self.reduction_factor,
            stop_last_trials=False,  # a trial at max_t still has its outcome to report
        )


class HyperBand(TrialScheduler):
    """Asynchronous HyperBand (Li et al. 2020): several brackets of successive halving, each
    with its first rung later than the one before, so a slow starter has a bracket where it
    is not judged early. Trials go to the brackets in turn.

    Ray's synchronous HyperBandScheduler is not used: it halves a bracket only once the
    bracket is full, and with a few trials at a time finished trials leave their bracket
    first, so it stopped nothing (34 toy trials at `parallel = 2`)."""

    grace_period: int = Field(1, ge=1, le=10_000, description="evals before the first rung")
    reduction_factor: float = Field(3.0, ge=1.5, le=10)
    brackets: int | None = Field(None, ge=1, le=20,
                                 description="default: every bracket with a rung before max_t")

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from autostage_plugins.ray_trial_schedulers import BracketsInTurn

        max_t = max(max_t, self.grace_period)
        # bracket s has its first rung at grace_period * reduction_factor**s: keep those with
        # a rung before the last eval (a rung at max_t judges a trial that has finished)
        rungs = math.log(max_t / self.grace_period, self.reduction_factor)
        brackets = max(1, math.ceil(rungs - 1e-9))
        return BracketsInTurn(
            metric=metric, mode=mode, time_attr=time_attr, max_t=max_t,
            grace_period=self.grace_period, reduction_factor=self.reduction_factor,
            brackets=self.brackets or brackets, stop_last_trials=False)


class Median(TrialScheduler):
    """Stop a trial whose best result is below the median of others at the same time (Ray's
    median stopping rule; with fewer than `min_samples_required` others it goes on)."""

    grace_period: int = Field(2, ge=1, le=10_000)
    min_samples_required: int = Field(3, ge=1, le=1000)

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from autostage_plugins.ray_trial_schedulers import MedianNeverYields

        return MedianNeverYields(
            metric=metric, mode=mode, time_attr=time_attr, grace_period=self.grace_period,
            min_samples_required=self.min_samples_required, hard_stop=True,
        )


class Population(TrialScheduler):
    """Population-based search whose explore step is the study's own sampler. Trials take a
    checkpoint at every eval of the final stage (besides every stage boundary). At each rung
    of final-stage evals the bottom `quantile` of trials is stopped (ASHA with reduction
    factor 1/(1 - quantile)); each new trial, except a `fresh` share sampled whole, branches
    from a checkpoint of a trial in the top `quantile` at its point, inherits what already
    took effect there, and has the sampler propose its continuation: optimizer, LR schedule,
    stage policy and the mixtures of the stages still to come. `min_points` and `rank_by`
    let it branch before the first trial breaks away from a plateau all share (`TopQuantile`).
    """

    quantile: float = Field(0.25, ge=0.05, le=0.5, description="share of trials stopped at "
                            "a rung, and share branched from")
    fresh: float = Field(0.25, ge=0, le=1, description="share of new trials sampled whole, "
                         "never branched (keeps the search from collapsing onto one lineage)")
    grace_period: int = Field(2, ge=1, le=10_000, description="final-stage evals before the "
                              "first rung")
    auto_grace: bool = Field(False, description="place the first rung by the data instead: at "
                             "the first count of final-stage evals where the trials there have "
                             "parted (the best ahead of the median by more than `spread` times "
                             "the eval noise)")
    spread: float = Field(3.0, gt=0, le=100, description="auto_grace: how many times the eval "
                          "noise the best must lead the median by")
    min_points: int = Field(2, ge=1, le=2, description="points a place (a stage boundary, a "
                            "count of final-stage evals) holds before its top is branched "
                            "from; 1: a trial alone at its place, as the first to get ahead "
                            "is, may be branched from at once")
    rank_by: Literal["value", "improvement"] = Field(
        "value", description="how the points at a place are ranked: value, the study metric "
        "there; improvement, how fast their trial's metric was improving up to there (FIRE-PBT)"
        ", finding the trial that breaks away from a plateau before its value leads")
    slope_evals: int = Field(3, ge=2, le=100, description="rank_by improvement: a trial's "
                             "last final-stage evals the improvement is fitted over")

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        if self.auto_grace:  # rungs placed by the data (spread_rungs)
            from autostage_plugins.ray_stopping_rules import RuleScheduler
            from autostage_plugins.spread_rungs import SpreadRungs

            rule = SpreadRungs(mode, 1 / (1 - self.quantile), max_t, self.spread)
            return RuleScheduler(rule, metric=metric, mode=mode, time_attr=time_attr)
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            metric=metric, mode=mode, time_attr=time_attr, max_t=max(max_t, self.grace_period),
            grace_period=self.grace_period, reduction_factor=1 / (1 - self.quantile),
            stop_last_trials=False)

    def branching(self, metric: str, mode: str) -> Brancher:
        return TopQuantile(self.quantile, self.fresh, metric, mode, min_points=self.min_points,
                           rank_by=self.rank_by, slope_evals=self.slope_evals)


class TopQuantile(Brancher):
    """The population trial scheduler's brancher: each new trial is fresh with probability
    `fresh`; otherwise it branches from a point drawn uniformly from the top `quantile` of a
    place holding at least `min_points` points (with 2, a point alone at its place has
    nothing to be compared with: it is kept, not proposed; with 1 it is its place's top).

    `rank_by` orders a place: "value" by the metric there; "improvement" by how fast each
    point's trial was improving up to it — the least-squares slope of the metric against
    tokens over the trial's last `slope_evals` final-stage points up to it, steepest first
    (falling for mode "min", rising for "max"), ties by value. A point without two such
    points (a stage boundary, a trial's first final-stage eval) follows those with a slope,
    by value; a branched trial's slope counts only its own evals (its parent's measured the
    settings it changed). While all trials share a plateau the values at a place differ by
    noise, and the trial that begins to leave it has the steepest slope: FIRE-PBT's premise
    (Dalibard & Jaderberg 2021, "Faster Improvement Rate Population Based Training",
    arXiv:2109.13800), that of two networks at a similar value the faster improving one ends
    better. MF-PBT (Doulazmi et al. 2025, "Multiple-Frequencies Population-Based Training",
    arXiv:2506.03225) documents the greediness of selecting on short-term value that this
    counters (its own remedy: sub-populations that evolve at different rates)."""

    def __init__(self, quantile: float, fresh: float, metric: str, mode: str, *,
                 min_points: int = 2, rank_by: str = "value", slope_evals: int = 3) -> None:
        self.quantile, self.fresh, self.metric, self.mode = quantile, fresh, metric, mode
        self.min_points, self.rank_by, self.slope_evals = min_points, rank_by, slope_evals
        self.places: dict[tuple[str, int], list[BranchPoint]] = defaultdict(list)
        self.finals: dict[int, list[BranchPoint]] = defaultdict(list)  # trial -> its final-
        # stage points, in report order: what a slope is fitted to
        self._top: list[BranchPoint] | None = None  # ranking is costly: once per change

    def see(self, point: BranchPoint) -> None:
        self.places[point.place].append(point)
        if point.final_evals:
            self.finals[point.trial].append(point)
        self._top = None

    def forget(self, points: list[BranchPoint]) -> None:
        for p in points:
            self.places[p.place] = [q for q in self.places[p.place] if q is not p]
            self.finals[p.trial] = [q for q in self.finals[p.trial] if q is not p]
        self._top = None

    def propose(self, usable: Callable[[BranchPoint], bool],
                rng: random.Random) -> BranchPoint | None:
        if rng.random() < self.fresh:
            return None
        candidates = [p for p in self.top() if usable(p)]
        return rng.choice(candidates) if candidates else None

    def wanted(self) -> list[BranchPoint]:
        """The top quantile at each place, and every point of a place with too few points to
        be ranked yet."""
        return [*self.top(), *(p for group in self.places.values()
                               if len(group) < self.min_points for p in group)]

    def top(self) -> list[BranchPoint]:
        """The top quantile of every place holding at least `min_points` points."""
        if self._top is None:
            self._top = [p for group in self.places.values() if len(group) >= self.min_points
                         for p in self.ranked(group)[:max(1, int(self.quantile * len(group)))]]
        return self._top

    def ranked(self, points: list[BranchPoint]) -> list[BranchPoint]:
        """`points` best first by `rank_by`."""
        by_value = _ranked(points, self.metric, self.mode)
        if self.rank_by == "value":
            return by_value
        sign = 1 if self.mode == "min" else -1
        slopes = {id(p): self.slope(p) for p in by_value}
        steep = [p for p in by_value if slopes[id(p)] is not None]
        return sorted(steep, key=lambda p: sign * slopes[id(p)]) + \
            [p for p in by_value if slopes[id(p)] is None]

    def slope(self, point: BranchPoint) -> float | None:
        """The metric's change per token over the last `slope_evals` final-stage points of
        `point`'s trial up to it; None with fewer than two."""
        fitted = [p for p in self.finals[point.trial] if p.evals <= point.evals][
            -self.slope_evals:] if point.final_evals else []
        try:
            return statistics.linear_regression(
                [p.ev.tokens for p in fitted], [p.ev.current[self.metric] for p in fitted]).slope
        except statistics.StatisticsError:  # fewer than two points, or all at one token count
            return None


def _ranked(points: list[BranchPoint], metric: str, mode: str) -> list[BranchPoint]:
    """Best first by `metric`; ties keep the order the points came in."""
    def order(a: BranchPoint, b: BranchPoint) -> int:
        x, y = a.ev.current[metric], b.ev.current[metric]
        return -1 if better(x, y, mode) else (1 if better(y, x, mode) else 0)

    return sorted(points, key=functools.cmp_to_key(order))


@hookimpl
def register_trial_schedulers(register):
    register("fifo", FIFO)
    register("asha", ASHA)
    register("hyperband", HyperBand)
    register("median", Median)
    register("population", Population)
