"""Every metric the trials recorded — training loss, held-out loss, accuracy or F1 per data
source, gradient norms — per trial against its training tokens, one metric at a time, picked
in a menu on the figure. Gradient norms come first, on a log axis: vanishing and exploding
gradients are what a reader looks for there."""

from __future__ import annotations

from typing import Any

from autostage.keys import eval_source, parse_metric, train_metric
from autostage.records import TrialRecord
from autostage.report.curves import _paths, clipping_traces, path_traces, plot_paths
from autostage.report.style import esc

#: a segment's mean, smallest and largest gradient norm: drawn on a log axis
GRADIENT_NORMS = tuple(train_metric(n) for n in ("grad_norm", "grad_norm_min", "grad_norm_max"))
#: what the figure shows first, the first of these a trial recorded
FIRST_SHOWN = (train_metric("grad_norm"), train_metric("loss"))
#: metric names that count what was measured, not how a trial did (`eval.<source>.examples`)
BOOKKEEPING = frozenset({"examples"})


def recorded_metrics(records: list[TrialRecord]) -> list[str]:
    """Every metric key any eval recorded that can show a reader something — not bookkeeping,
    and not one value at every eval that measured it — the training statistics, then the
    held-out metrics by data source."""
    measured: dict[str, list[float | None]] = {}
    for e in (e for r in records for e in r.evals):
        for key in e.eval.metrics:
            measured.setdefault(key, []).append(e.metric(key))
    keys = [key for key, values in measured.items()
            if not _bookkeeping(key) and not _constant(values)]
    return sorted(keys, key=lambda key: (eval_source(key) is not None, key))


def _bookkeeping(key: str) -> bool:
    parsed = parse_metric(key)
    return parsed is not None and parsed.name in BOOKKEEPING


def _constant(values: list[float | None]) -> bool:
    """Measured more than once, the same every time: a flat line in every trial, a menu
    entry that says nothing (measured once: kept, there is nothing to compare it with)."""
    finite = [v for v in values if v is not None]
    return len(finite) > 1 and len(set(finite)) == 1


def _metrics_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """Per recorded metric, every trial's path through it (as `curves._paths` draws it), and
    which metric is shown first."""
    keys = recorded_metrics(records)
    if not keys:
        return {"missing": "no trial has recorded a metric yet"}
    return {"keys": keys, "shown": next((k for k in FIRST_SHOWN if k in keys), keys[0]),
            "paths": {key: _paths(records, mode, key, key) for key in keys}}


def plot_metrics(info: dict[str, Any]) -> Any:
    """The shown metric's figure, with a menu of every recorded metric. Every metric draws
    the same traces — the same trials, evals and markers at the same tokens — and only their
    y values differ: a menu entry swaps those in, so the page carries each metric's numbers
    once, not a copy of every trace (its points' hover text included) per metric."""
    keys, shown = info["keys"], info["shown"]
    traces = {key: _metric_traces(info["paths"][key], key in GRADIENT_NORMS) for key in keys}
    fig = plot_paths(info["paths"][shown], traces[shown])
    fig.update_layout(
        updatemenus=[{"buttons": [_menu_entry(key, traces[key]) for key in keys],
                      "active": keys.index(shown), "direction": "down",
                      "x": 0, "xanchor": "left", "y": 1.09, "yanchor": "bottom"}],
        margin={"t": 80}, **_y_axis(shown))
    return fig


def _metric_traces(paths: dict[str, Any], log: bool) -> list[dict[str, Any]]:
    traces = path_traces(paths) + clipping_traces(paths["trials"])
    return [{**trace, "y": [_plotted(y, log) for y in trace["y"]]} for trace in traces]


def _plotted(value: float | None, log: bool) -> float | None:
    """6 significant digits: more than a screen or the hover (4) shows, and a third of the
    characters of a float's full repr — this figure carries every value of every metric.
    A log axis has no 0: a gradient norm of 0 is a gap there, not a plunge off the bottom."""
    if value is None or (log and value <= 0):
        return None
    return float(f"{value:.6g}")


def _menu_entry(key: str, traces: list[dict[str, Any]]) -> dict[str, Any]:
    return {"label": esc(key), "method": "update",
            "args": [{"y": [trace["y"] for trace in traces]},
                     {"yaxis.autorange": True, **_y_axis(key)}]}


def _y_axis(key: str) -> dict[str, Any]:
    """The axis of `key`, as `update_layout` and a menu entry's relayout both take it."""
    return {"yaxis.title.text": esc(key),
            "yaxis.type": "log" if key in GRADIENT_NORMS else "linear"}
