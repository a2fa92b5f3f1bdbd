"""Built-in Ray Tune trial schedulers. Ray is imported inside `build`: only `search` needs it.

Time is counted in evals (or tokens), so rungs fall at stage evaluations.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from autostage.components import TrialScheduler
from autostage.hookspecs import hookimpl


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
    """Synchronous HyperBand over several brackets of successive halving (Li et al. 2018)."""

    reduction_factor: float = Field(3.0, ge=1.5, le=10)

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from ray.tune.schedulers import HyperBandScheduler

        return HyperBandScheduler(
            metric=metric, mode=mode, time_attr=time_attr, max_t=max_t,
            reduction_factor=self.reduction_factor, stop_last_trials=False,
        )


class Median(TrialScheduler):
    """Stop a trial whose best result is below the median of others at the same time."""

    grace_period: int = Field(2, ge=1, le=10_000)
    min_samples_required: int = Field(3, ge=1, le=1000)

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from ray.tune.schedulers import MedianStoppingRule

        return MedianStoppingRule(
            metric=metric, mode=mode, time_attr=time_attr, grace_period=self.grace_period,
            min_samples_required=self.min_samples_required,
        )


@hookimpl
def register_trial_schedulers(register):
    register("fifo", FIFO)
    register("asha", ASHA)
    register("hyperband", HyperBand)
    register("median", Median)
