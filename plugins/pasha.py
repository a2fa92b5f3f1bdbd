"""PASHA's rungs in plain Python: the rule of the `pasha` trial scheduler
(`autostage_plugins.stopping_rules.Pasha`), apart from Ray so it is tested without it.

Bohdal, Balles, Wistuba, Ermis, Archambeau, Zappella: "PASHA: Efficient HPO and NAS with
Progressive Resource Allocation", ICLR 2023.
"""

from __future__ import annotations

import itertools
import math

#: the paper's noise estimate: epsilon is this percentile of the gaps between trials that
#: swapped places and swapped back between the top two rungs
NOISE_PERCENTILE = 90


def rung_levels(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """ASHA's rungs, `grace_period * reduction_factor**k` rounded, below `max_t` (a rung at
    `max_t` would judge a trial that has trained everything)."""
    levels: list[int] = []
    for k in itertools.count():
        level = round(grace_period * reduction_factor ** k)
        if level >= max_t:
            return levels
        if not levels or level > levels[-1]:
            levels.append(level)
    return levels  # unreachable: reduction_factor > 1 makes the levels grow


def percentile(values: list[float], q: float) -> float:
    """The `q`th percentile of `values`, interpolated linearly (NumPy's default)."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def crossings(gaps: list[float]) -> int:
    """How often the sign of `gaps` (one trial's value minus another's, over time) changes;
    zero gaps are skipped."""
    signs = [g > 0 for g in gaps if g != 0]
    return sum(a != b for a, b in zip(signs, signs[1:], strict=False))


class PashaRungs:
    """ASHA's stopping rule whose maximum rung starts at the second rung and moves up one
    rung whenever the top two rungs rank their trials differently.

    A trial reporting `value` at `t` final-stage evals is recorded at every rung it has
    reached; at a rung below the maximum it goes on when it is among the best
    1/`reduction_factor` recorded there (ASHA). At the maximum rung it stops — unless the
    ranking of the trials at the top two rungs is unstable once its value is in (the maximum
    grows, and the rung it reached is judged as ASHA's), or it leads that rung (it then runs
    to its last eval: the study's winner is trained in full, as the paper retrains the
    configuration it picks). The ranking is soft: two trials whose values at the lower rung
    differ by at most `epsilon` may swap places. `epsilon` None: estimated as the paper does,
    the 90th percentile of the gaps between pairs of trials whose order flipped and flipped
    back over the evals between the top two rungs (0 until such a pair is seen)."""

    def __init__(self, mode: str, grace_period: int, reduction_factor: float, max_t: int,
                 epsilon: float | None = None) -> None:
        self.sign = 1.0 if mode == "max" else -1.0  # scores: higher is better
        self.levels = rung_levels(grace_period, reduction_factor, max_t)
        self.reduction_factor = reduction_factor
        self.fixed_epsilon = epsilon
        self.epsilon = 0.0 if epsilon is None else epsilon
        self.top = 1  # the maximum rung's index; len(levels) and above: no maximum
        self.rungs: list[dict[str, float]] = [{} for _ in self.levels]  # trial -> score
        self.curves: dict[str, dict[int, float]] = {}  # trial -> t -> score, for epsilon
        self.finishing: set[str] = set()  # leaders of the maximum rung, run to the end
        self.gaps: dict[tuple[str, str], float] = {}  # pairs that crossed and crossed back

    @property
    def max_level(self) -> int | None:
        """The maximum rung's level (final-stage evals), None once there is none."""
        return self.levels[self.top] if self.top < len(self.levels) else None

    def report(self, trial: str, t: int, value: float | None) -> bool:
        """`trial` reached `value` (None: not a finite number) at `t` final-stage evals; True:
        it goes on, False: stop it."""
        score = -math.inf if value is None else self.sign * value
        self.curves.setdefault(trial, {})[t] = score
        reached = [k for k, level in enumerate(self.levels)
                   if level <= t and trial not in self.rungs[k]]
        for k in reached:
            self.rungs[k][trial] = score
        if self.fixed_epsilon is None and self.max_level is not None and \
                self.levels[self.top - 1] < t <= self.max_level:
            self.note_noise(trial)
        if self.max_level is not None and not self.stable():
            self.top += 1
            if self.fixed_epsilon is None and self.max_level is not None:
                self.gaps = {}  # a new window between the top two rungs
                for other in list(self.curves):
                    self.note_noise(other)
        if not reached or trial in self.finishing:
            return True
        k = reached[-1]
        if k < self.top:
            return self.in_top_share(k, trial)
        if self.leads(k, trial):
            self.finishing.add(trial)
            return True
        return False

    def in_top_share(self, k: int, trial: str) -> bool:
        """ASHA's rule: `trial` is among the best 1/reduction_factor of rung `k` (ties go on)."""
        rung = self.rungs[k]
        ahead = sum(s > rung[trial] for s in rung.values())
        return ahead < math.ceil(len(rung) / self.reduction_factor)

    def leads(self, k: int, trial: str) -> bool:
        rung = self.rungs[k]
        return all(s <= rung[trial] for s in rung.values())

    def stable(self) -> bool:
        """The trials at the maximum rung rank there as at the rung below, up to epsilon: the
        one at each place of the maximum rung's ranking is within epsilon (at the rung below)
        of the one at that place of the lower rung's ranking (the paper's soft ranking)."""
        top, below = self.rungs[self.top], self.rungs[self.top - 1]
        here = sorted(top, key=lambda x: -top[x])  # stable: ties keep the order of arrival
        before = sorted(top, key=lambda x: -below[x])
        return all(not abs(below[a] - below[b]) > self.epsilon  # -inf twice: the same place
                   for a, b in zip(here, before, strict=True))

    def note_noise(self, trial: str) -> None:
        """Update epsilon, the paper's way, with `trial`'s pairs: the gap at their last shared
        eval between the top two rungs of each pair whose order flipped and flipped back up to
        it; epsilon is the 90th percentile of all such gaps (unchanged while there are none)."""
        low, high = self.levels[self.top - 1], self.levels[self.top]
        mine = self.curves[trial]
        for other, theirs in self.curves.items():
            if other != trial:
                key = (trial, other) if trial < other else (other, trial)
                gap = crossed_gap(mine, theirs, low, high)
                if gap is None:
                    self.gaps.pop(key, None)
                else:
                    self.gaps[key] = gap
        if self.gaps:
            self.epsilon = percentile(list(self.gaps.values()), NOISE_PERCENTILE)


def crossed_gap(a: dict[int, float], b: dict[int, float], low: int, high: int) -> float | None:
    """|a - b| at the last eval in (low, high] both curves reached, when their order flipped
    and flipped back up to it (noise, not a real change of places); else None."""
    shared = sorted(t for t in a.keys() & b.keys() if math.isfinite(a[t]) and math.isfinite(b[t]))
    latest = [t for t in shared if low < t <= high]
    if latest and crossings([a[t] - b[t] for t in shared if t <= latest[-1]]) >= 2:
        return abs(a[latest[-1]] - b[latest[-1]])
    return None
