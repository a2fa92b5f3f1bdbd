"""The one ledger every method of benchmarks/hpo.py is charged through, and the statistics.

Compute is charged report by report, in the order the reports arrive, for every trial that
runs — a trial still training beside the one that reaches the target is counted up to its
last report: each report costs the training tokens since that run's previous report (or since
the checkpoint it started from: a PBT clone never pays for its donor's tokens, a branch never
for its prefix) plus its evals at the task's rate. A search stops once it has spent the
budget. `best` is the best final value of a trial that ran its plan to the end within the
budget; `compute_to_target` is the compute spent when that best first reached the target.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def segment_charges(restored_at: int, positions: Sequence[int]) -> list[int]:
    """The training tokens each report of one run is charged: what it trained since its
    previous report, or since the checkpoint it started from (0 when fresh)."""
    return [b - a for a, b in itertools.pairwise([restored_at, *positions])]


@dataclass
class Ledger:
    budget: float
    eval_compute: float  # one eval of one data source, in compute
    mode: str = "min"
    target: float | None = None
    spent: float = 0.0
    trained: int = 0
    evals: int = 0
    trials: set = field(default_factory=set)
    completed: set = field(default_factory=set)  # trials that ran their plan to the end
    clones: int = 0
    curve: list = field(default_factory=list)  # (compute spent, best so far) per completion
    finals: list = field(default_factory=list)  # (value, static config or None) per completion
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def charge(self, trial: Any, trained: int, evals: int, cloned: bool = False) -> None:
        with self._lock:
            self.trials.add(trial)
            self.trained += trained
            self.evals += evals
            self.clones += cloned
            self.spent += trained + evals * self.eval_compute

    def complete(self, trial: Any, value: float, config: dict | None = None) -> None:
        """A trial ran its plan to the end with this final value; `config` when it trained
        one configuration throughout (the oracle pools those)."""
        with self._lock:
            self.completed.add(trial)
            best = self._best([value, *(b for _, b in self.curve[-1:])])
            self.curve.append((round(self.spent), best))
            self.finals.append((value, config))

    def _best(self, values: Any) -> float:
        values = [v for v in values if math.isfinite(v)]
        if not values:
            return math.inf if self.mode == "min" else -math.inf
        return min(values) if self.mode == "min" else max(values)

    def reached(self, value: float) -> bool:
        return self.target is not None and (value <= self.target if self.mode == "min"
                                            else value >= self.target)

    def __getstate__(self) -> dict:  # Ray pickles the stopper that holds it: not the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    @property
    def spent_out(self) -> bool:
        return self.spent >= self.budget

    def summary(self, keep: int = 3) -> dict[str, Any]:
        """The row: best within the budget, compute_to_target (None: not reached within it),
        counts, the curve, and the `keep` best static configurations (for the oracle)."""
        within = [(t, b) for t, b in self.curve if t <= self.budget]
        reached = next((t for t, b in within if self.reached(b)), None)
        static = sorted(((v, c) for v, c in self.finals if c is not None and math.isfinite(v)),
                        key=lambda vc: vc[0], reverse=self.mode == "max")
        return {"best": self._best(b for _, b in within),
                "best_overall": self._best(b for _, b in self.curve),
                "compute_to_target": reached, "tokens_to_target": reached,
                "compute": round(self.spent), "tokens": self.trained,
                "trials": len(self.trials), "completed": len(self.completed),
                "pruned": len(self.trials - self.completed), "clones": self.clones,
                "curve": self.curve, "configs": [[v, c] for v, c in static[:keep]]}


def eval_times(started: float | None, ended: float | None,
               evals: Sequence[tuple[float | None, int]]) -> list[float]:
    """When each of an autostage trial's evals (time received or None, lineage tokens)
    happened. autostage holds the evals inside a prefix stage and sends them with the next
    report, so they carry no time of their own: place them between their timed neighbours
    (the trial's start and end at the edges) in proportion to their tokens."""
    anchors = [(started, 0)] + [(t, k) for t, k in evals if t is not None] + \
        [(ended, evals[-1][1] if evals else 0)]
    anchors = [(t, k) for t, k in anchors if t is not None]
    if not anchors:
        return [math.inf] * len(evals)
    out = []
    for t, tokens in evals:
        if t is None:
            before = max((a for a in anchors if a[1] <= tokens), key=lambda a: a[1],
                         default=anchors[0])
            after = min((a for a in anchors if a[1] >= tokens), key=lambda a: a[1],
                        default=anchors[-1])
            span = after[1] - before[1]
            t = before[0] + (after[0] - before[0]) * ((tokens - before[1]) / span if span
                                                      else 0.0)
        out.append(t)
    return out


def paired_ci(a: list[float], b: list[float], draws: int = 4000) -> tuple[float, float, float]:
    """Mean of the paired differences a - b and its bootstrap 95% interval."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(draws))
    return statistics.fmean(diffs), means[int(0.025 * draws)], means[int(0.975 * draws) - 1]
