"""Rungs placed by the data: the rule of the `population` trial scheduler with
`auto_grace = true`, in plain Python (tested without Ray).

A fixed grace period puts the first rung where the study's author guessed the curves part. Where
every trial sits on a shared plateau first (the addition task: 1.50-1.58 nats until ~half the
final stage), a rung inside the plateau ranks trials by noise, and one far past it wastes the
compute of every poor trial. Here the first rung is the first count of final-stage evals at
which the trials there have parted: the best is ahead of the median by more than `spread`
times the eval noise — the median absolute change of a trial's value from one eval to the
next, over every trial's evals so far (a breakaway moves one trial; the noise is everyone's).
From there the rungs are ASHA's: `first * reduction_factor**k`, each keeping the best
1/reduction_factor of the trials that reached it.
"""

from __future__ import annotations

import math
import statistics

from autostage_plugins.pasha import rung_levels


class SpreadRungs:
    """ASHA's rule, its first rung placed where the trials part (see the module)."""

    def __init__(self, mode: str, reduction_factor: float, max_t: int, spread: float = 3.0,
                 min_trials: int = 3) -> None:
        self.sign = 1.0 if mode == "max" else -1.0  # scores: higher is better
        self.reduction_factor, self.max_t = reduction_factor, max_t
        self.spread, self.min_trials = spread, min_trials
        self.curves: dict[str, dict[int, float]] = {}  # trial -> t -> score
        self.first: int | None = None  # the first rung, once the trials have parted
        self.levels: list[int] = []
        self.judged: set[tuple[str, int]] = set()  # (trial, rung): ASHA judges each once

    def report(self, trial: str, t: int, value: float | None) -> bool:
        """`trial` reached `value` (None: not a finite number) at `t` final-stage evals; True:
        it goes on, False: stop it."""
        self.curves.setdefault(trial, {})[t] = -math.inf if value is None else self.sign * value
        if self.first is None and self._parted(t):
            self.first = t
            self.levels = rung_levels(t, self.reduction_factor, self.max_t)
        # judged once at each rung, when it first reports at or past it (a rung placed after
        # a trial passed it judges the trial at its next report, by its value there)
        due = [level for level in self.levels if level <= t and (trial, level) not in self.judged]
        self.judged.update((trial, level) for level in due)
        return all(self._in_top_share(trial, level) for level in due)

    def noise(self) -> float:
        """The median absolute change of a trial's score between consecutive evals; infinite
        (nothing has parted) until `min_trials` trials have changed at least once."""
        per_trial = [[abs(c[b] - c[a]) for a, b in zip(ts, ts[1:], strict=False)
                      if math.isfinite(c[a]) and math.isfinite(c[b])]
                     for c in self.curves.values() if len(ts := sorted(c)) > 1]
        steps = [step for trial in per_trial for step in trial]
        if sum(bool(trial) for trial in per_trial) < self.min_trials:
            return math.inf
        return statistics.median(steps)

    def _parted(self, t: int) -> bool:
        here = [c[t] for c in self.curves.values() if t in c and math.isfinite(c[t])]
        if len(here) < self.min_trials or t >= self.max_t:
            return False
        return max(here) - statistics.median(here) > self.spread * self.noise()

    def _in_top_share(self, trial: str, level: int) -> bool:
        """ASHA's rule at rung `level`: `trial`'s score there (when it first reported at or
        past it) is among the best 1/reduction_factor of the trials that reached it."""
        scores = {k: _at(c, level) for k, c in self.curves.items() if max(c) >= level}
        mine = scores[trial]
        ahead = sum(s > mine for s in scores.values())
        return ahead < math.ceil(len(scores) / self.reduction_factor)


def _at(curve: dict[int, float], level: int) -> float:
    """A curve's score when it reached `level`: at its first eval at or past it."""
    return curve[min(t for t in curve if t >= level)]

