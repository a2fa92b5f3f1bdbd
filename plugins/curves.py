"""Learning-curve extrapolation in NumPy alone: the rule of the `curve` trial scheduler
(`autostage_plugins.stopping_rules.Curve`), apart from Ray so it is tested without it.

Domhan, Springenberg, Hutter: "Speeding up automatic hyperparameter optimization of deep
neural networks by extrapolation of learning curves", IJCAI 2015 — a trial is stopped once
its curve, extrapolated to the end of training, is unlikely to beat the best seen so far.

Each family below is three (or two) parameters, one of them nonlinear (the shape): for each
shape on a grid the other two are a linear least-squares fit, and the best grid shape is
refined by a golden-section search. No SciPy, no sampling: the same evals give the same fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autostage.ranking import better

#: y = c + a * t**-shape (pow3), c + a * exp(-shape * t) (exp3), c + a * log(t) (log2)
FAMILIES = ("pow3", "exp3", "log2")
#: the shapes searched (pow3: the exponent; exp3: the rate per final-stage eval)
SHAPES = {"pow3": (0.02, 4.0), "exp3": (0.01, 4.0)}
GRID = 48
REFINE = 40  # golden-section steps: the bracket shrinks to 0.618**40 of a grid step


@dataclass(frozen=True)
class Fit:
    """One family's best fit to a curve: y = c + a * basis(t)."""

    family: str
    shape: float
    c: float
    a: float
    sse: float

    def at(self, t: float) -> float:
        return float(self.c + self.a * basis(self.family, self.shape, np.asarray(float(t))))


def basis(family: str, shape: float | np.ndarray, t: np.ndarray) -> np.ndarray:
    if family == "pow3":
        return t ** -shape
    if family == "exp3":
        return np.exp(-shape * t)
    return np.log(t)


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """y ~ c + a x along the last axis of `x` (one row per shape): c, a, squared error."""
    dx = x - x.mean(axis=-1, keepdims=True)
    sxx = (dx * dx).sum(axis=-1)
    a = np.where(sxx > 0, (dx * (y - y.mean())).sum(axis=-1) / np.where(sxx > 0, sxx, 1), 0)
    c = y.mean() - a * x.mean(axis=-1)
    sse = ((c[..., None] + a[..., None] * x - y) ** 2).sum(axis=-1)
    return c, a, sse


def fit(family: str, t: np.ndarray, y: np.ndarray) -> Fit:
    """`family`'s best fit to the points (t, y), t >= 1."""
    if family == "log2":
        c, a, sse = _least_squares(np.log(t)[None, :], y)
        return Fit(family, 0.0, float(c[0]), float(a[0]), float(sse[0]))
    shapes = np.geomspace(*SHAPES[family], GRID)
    best = int(np.argmin(_least_squares(basis(family, shapes[:, None], t), y)[2]))

    def error(log_shape: float) -> float:
        return float(_least_squares(basis(family, math.exp(log_shape), t)[None, :], y)[2][0])

    lo, hi = math.log(shapes[max(best - 1, 0)]), math.log(shapes[min(best + 1, GRID - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    m1, m2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    e1, e2 = error(m1), error(m2)
    for _ in range(REFINE):  # golden section: one new error per step
        if e1 <= e2:
            hi, m2, e2 = m2, m1, e1
            m1 = hi - ratio * (hi - lo)
            e1 = error(m1)
        else:
            lo, m1, e1 = m1, m2, e2
            m2 = lo + ratio * (hi - lo)
            e2 = error(m2)
    shape = math.exp((lo + hi) / 2)
    c, a, sse = _least_squares(basis(family, shape, t)[None, :], y)
    return Fit(family, shape, float(c[0]), float(a[0]), float(sse[0]))


def extrapolate(t: list[int], y: list[float], at: int, mode: str) -> float:
    """The curve (t, y) at `at`: the most optimistic of the families' best fits (the lowest
    prediction for mode min, the highest for max; a non-finite one is left out)."""
    ts, ys = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    predictions = [p for p in (fit(f, ts, ys).at(at) for f in FAMILIES) if math.isfinite(p)]
    if not predictions:
        return y[-1]
    return min(predictions) if mode == "min" else max(predictions)


class CurveStop:
    """Domhan et al.'s predictive termination, deterministic: at each final-stage eval from
    the `min_evals`th on (and before `max_t`), a trial's curve so far is extrapolated to
    `max_t`; the trial stops when even that is worse than the best value any trial has
    reached so far by more than `margin` (relative to that best value). The trial holding the
    best value is never stopped."""

    def __init__(self, mode: str, max_t: int, min_evals: int, margin: float) -> None:
        self.mode, self.max_t, self.min_evals, self.margin = mode, max_t, min_evals, margin
        self.curves: dict[str, dict[int, float]] = {}
        self.best: float | None = None
        self.leader: str | None = None
        self.predictions: dict[str, float] = {}  # each trial's last extrapolation

    def report(self, trial: str, t: int, value: float | None) -> bool:
        """`trial` reached `value` (None: not a finite number) at `t` final-stage evals; True:
        it goes on, False: stop it."""
        curve = self.curves.setdefault(trial, {})
        if value is not None:
            curve[t] = value
            if self.best is None or better(value, self.best, self.mode):
                self.best, self.leader = value, trial
        if t >= self.max_t or len(curve) < self.min_evals or trial == self.leader:
            return True
        ts = sorted(curve)
        prediction = extrapolate(ts, [curve[s] for s in ts], self.max_t, self.mode)
        self.predictions[trial] = prediction
        return self.best is None or not hopeless(prediction, self.best, self.margin, self.mode)


def hopeless(prediction: float, best: float, margin: float, mode: str) -> bool:
    """`prediction` is worse than `best` by more than `margin` (relative to `best`)."""
    slack = margin * abs(best)
    return better(best + slack if mode == "min" else best - slack, prediction, mode)
