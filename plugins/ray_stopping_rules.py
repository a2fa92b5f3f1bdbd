"""Ray's face of a stopping rule kept in plain Python (`pasha.PashaRungs`,
`curves.CurveStop`). Its own module: it subclasses a Ray class, and only a search (which has
Ray imported) builds it."""

from __future__ import annotations

from typing import Any, Protocol

from ray.tune.schedulers import FIFOScheduler

from autostage.ranking import finite


class StoppingRule(Protocol):
    def report(self, trial: str, t: int, value: float | None) -> bool:
        """`trial` reached `value` (None: not a finite number) at `t`; True: it goes on."""


class RuleScheduler(FIFOScheduler):
    """Asks `rule` about every result: CONTINUE or STOP, never PAUSE. Trials run in the order
    they come (FIFO); `time_attr` is the result's time, `metric` its value."""

    def __init__(self, rule: StoppingRule, metric: str, mode: str, time_attr: str) -> None:
        super().__init__()
        self.rule, self.time_attr = rule, time_attr
        self._metric, self._mode = metric, mode  # Ray's names: set_search_properties reads them

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        t = int(result[self.time_attr])
        go_on = self.rule.report(trial.trial_id, t, finite(result.get(self._metric)))
        return self.CONTINUE if go_on else self.STOP
