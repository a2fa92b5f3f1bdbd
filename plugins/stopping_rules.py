"""Built-in trial schedulers from the literature whose rules are autostage's own code: PASHA
and learning-curve extrapolation. Each rule is plain Python (`pasha`, `curves`: tested without
Ray); `build` wraps it in a Ray trial scheduler, importing Ray only there."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from autostage.components import TrialScheduler
from autostage.hookspecs import hookimpl


class Pasha(TrialScheduler):
    """PASHA (Bohdal, Balles, Wistuba, Ermis, Archambeau, Zappella: "PASHA: Efficient HPO and
    NAS with Progressive Resource Allocation", ICLR 2023): ASHA whose maximum rung starts at
    the second (`grace_period`, then `grace_period * reduction_factor` final-stage evals) and
    moves up one rung only while the top two rungs rank their trials differently — a soft
    ranking: trials within `epsilon` of each other at the lower rung may swap places.

    This is the stopping variant: a trial reaching the maximum rung stops there unless the
    ranking is unstable with it in (the maximum grows, and it is judged as at any ASHA rung)
    or it leads that rung (it runs to its last eval: a stopped trial is never ranked, and
    the study needs a winner trained in full, as the paper retrains its pick). A stopped
    trial is not resumed when the maximum grows later, as it is in the paper's promotion
    variant: autostage refuses PAUSE, because a paused Ray trial restarts from its last
    stage boundary and retrains tokens no record counts. A trial is never stopped at its
    last eval. The same results give the same decisions (no RNG)."""

    grace_period: int = Field(2, ge=1, le=10_000, description="final-stage evals before the "
                              "first rung")
    reduction_factor: float = Field(3.0, ge=1.5, le=10, description="rungs are this many "
                                    "times apart; 1/this of a rung's trials go on")
    epsilon: float | None = Field(None, ge=0, description="trials this close at a rung (in "
                                  "the metric's units) may swap places; default: estimated "
                                  "from the noise of the curves, as in the paper")

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from autostage_plugins.pasha import PashaRungs
        from autostage_plugins.ray_stopping_rules import RuleScheduler

        rule = PashaRungs(mode, self.grace_period, self.reduction_factor, max_t, self.epsilon)
        return RuleScheduler(rule, metric=metric, mode=mode, time_attr=time_attr)


class Curve(TrialScheduler):
    """Learning-curve extrapolation (Domhan, Springenberg, Hutter: "Speeding up automatic
    hyperparameter optimization of deep neural networks by extrapolation of learning curves",
    IJCAI 2015): from its `min_evals`th final-stage eval on, a trial's metric so far is fitted
    by three curves of the final-stage evals t — pow3 `c + a*t**-alpha`, exp3
    `c + a*exp(-b*t)`, log2 `c + a*log(t)` — each extrapolated to the last eval. The trial
    stops when even the most optimistic of the three is worse than the best value any trial
    has reached so far, by more than `margin` (relative). The trial holding that best value
    is never stopped, nor any trial at its last eval.

    The most optimistic, not a mean weighted by fit error: a stopped trial is gone for good
    while one kept too long costs only its remaining evals (Domhan et al. stop only below a
    5% chance of beating the best), and with 3 evals the three-parameter curves can pass
    through every point, so fit error cannot weigh them. A curve the LR schedule bends (a
    cosine or wsd decay steepens the end) is extrapolated as if it were not: raise
    `min_evals` or `margin` there.

    LC-PFN (Adriaensen, Rakotoarison, Müller, Hutter, NeurIPS 2023) extrapolates better, but
    `lcpfn` 0.1.3 and `ifbo` 0.4.1 on PyPI download their trained weights from a hub at first
    use (their wheels, 32 kB and 713 kB, hold none) and cannot run where it is unreachable:
    hence a parametric ensemble, NumPy only."""

    min_evals: int = Field(3, ge=2, le=10_000, description="final-stage evals before a trial's "
                           "curve is first extrapolated")
    margin: float = Field(0.02, ge=0, le=10, description="a trial stops when its extrapolation "
                          "is worse than the best value so far by more than this share of it")

    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        from autostage_plugins.curves import CurveStop
        from autostage_plugins.ray_stopping_rules import RuleScheduler

        rule = CurveStop(mode, max_t, self.min_evals, self.margin)
        return RuleScheduler(rule, metric=metric, mode=mode, time_attr=time_attr)


@hookimpl
def register_trial_schedulers(register):
    register("pasha", Pasha)
    register("curve", Curve)
