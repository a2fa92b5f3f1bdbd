"""Ray Tune's trial schedulers, adjusted to autostage's rule that a trial is only ever
continued or stopped. Their own module: they subclass Ray classes, and only a search (which
has Ray imported) builds them."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, MedianStoppingRule, TrialScheduler


class BracketsInTurn(AsyncHyperBandScheduler):
    """Ray draws each trial's bracket from NumPy's global RNG, so two runs of one study would
    stop different trials; here trial k goes to bracket k mod brackets."""

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)  # checks the metric and mode
        self._trial_info[trial.trial_id] = self._brackets[self._counter % len(self._brackets)]
        self._counter += 1


class MedianNeverYields(MedianStoppingRule):
    """With too few other trials to compare against, Ray's rule PAUSEs a trial to let waiting
    ones run; a paused trial restarts from its last stage boundary and retrains tokens no
    record counts. Here it goes on: waiting trials run as slots free up."""

    def _on_insufficient_samples(self, tune_controller: Any, trial: Any, time: float) -> str:
        return TrialScheduler.CONTINUE
