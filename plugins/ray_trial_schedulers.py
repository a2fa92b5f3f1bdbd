"""Ray Tune's trial schedulers, adjusted to autostage's rule that a trial is only ever
continued or stopped. Their own module: they subclass Ray classes, and only a search (which
has Ray imported) builds them."""

from __future__ import annotations

from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler, MedianStoppingRule, TrialScheduler

from autostage.search import ray_internals


class BracketsInTurn(AsyncHyperBandScheduler):
    """Ray draws each trial's bracket from NumPy's global RNG, so two runs of one study would
    stop different trials; here trial k goes to bracket k mod brackets."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.turn = 0  # the next trial's

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)  # checks the metric and mode
        ray_internals.assign_bracket(self, trial.trial_id, self.turn)
        self.turn += 1


class MedianNeverYields(MedianStoppingRule):
    """With too few other trials to compare against, Ray's rule PAUSEs a trial to let waiting
    ones run; a paused trial restarts from its last stage boundary and retrains tokens no
    record counts. Here it goes on: waiting trials run as slots free up.

    A rule that stops hard (the only kind built here) PAUSEs for no other reason, so its
    PAUSE is read as CONTINUE."""

    def __init__(self, **settings: Any) -> None:
        if not settings.pop("hard_stop", True):
            raise ValueError("MedianNeverYields stops trials hard: a paused trial would "
                             "retrain what it trained since its last stage boundary")
        super().__init__(hard_stop=True, **settings)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        return TrialScheduler.CONTINUE if action == TrialScheduler.PAUSE else action
