"""Every trial through its stages: the study metric and the learning rate against training
tokens, with stage boundaries and the stage policy's decisions marked, the best trial drawn
over the rest."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autostage.records import EvalRecord, TrialRecord, best_trial
from autostage.report.records import stage_label, stage_visits
from autostage.report.style import (
    BEST_COLOUR,
    DECISION_SYMBOLS,
    STATUS_ORDER,
    decision_kind,
    esc,
    status_colour,
)

YOf = Callable[[EvalRecord], float | None]


def _curves_info(records: list[TrialRecord], metric: str, mode: str) -> dict[str, Any]:
    """Per trial with evals: the study metric at each eval (None where it was not finite)."""
    return _paths(records, mode, lambda e: e.metric(metric), metric)


def _lr_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """Per trial with evals: the learning rate at each eval, after the schedule and every
    ScaleLR / Rewind factor so far."""
    return _paths(records, mode, lambda e: e.metric("lr"), "learning rate")


def _paths(records: list[TrialRecord], mode: str, y_of: YOf, y_name: str) -> dict[str, Any]:
    best = best_trial(records, mode)
    trials = [_path(r, y_of, best is not None and r.number == best.number)
              for r in records if r.evals]
    if not trials:
        return {"missing": "no trial has been evaluated yet"}
    return {"y": y_name, "best": best.number if best else None, "trials": trials}


def _path(record: TrialRecord, y_of: YOf, is_best: bool) -> dict[str, Any]:
    evals = record.evals
    points = {"tokens": [e.eval.tokens for e in evals], "y": [y_of(e) for e in evals],
              "stage": [stage_label(e) for e in evals]}
    decisions = [{"tokens": e.eval.tokens, "y": y_of(e), "stage": stage_label(e),
                  "decision": e.decision_label, "kind": decision_kind(e.eval.decision)}
                 for e in record.decisions]  # Continue changes nothing: not marked
    visits = stage_visits(evals)
    boundaries = [{"tokens": before[-1].eval.tokens, "y": y_of(before[-1]),
                   "from": stage_label(before[-1]), "to": stage_label(after[0])}
                  for before, after in zip(visits, visits[1:], strict=False)]
    return {"number": record.number, "status": record.status, "best": is_best,
            **points, "decisions": decisions, "boundaries": boundaries}


def plot_learning_curves(info: dict[str, Any], metric: str) -> Any:
    fig = _plot_paths(info)
    fig.update_layout(yaxis_title=esc(metric))
    return fig


def plot_lr_paths(info: dict[str, Any]) -> Any:
    fig = _plot_paths(info)
    fig.update_layout(yaxis_title="learning rate", yaxis_type="log")
    return fig


def _plot_paths(info: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    rest = [t for t in info["trials"] if not t["best"]]
    for status in [s for s in STATUS_ORDER if any(t["status"] == s for t in rest)]:
        group = [t for t in rest if t["status"] == status]
        fig.add_trace(_lines(group, f"{status} ({len(group)})", status_colour(status), 1.2,
                             0.45))
    best = [t for t in info["trials"] if t["best"]]
    if best:
        fig.add_trace(_lines(best, f"best: trial {best[0]['number']}", BEST_COLOUR, 3.5, 1.0))
        _mark_stages(fig, best[0])
    _add_boundaries(fig, info["trials"])
    _add_decisions(fig, info["trials"])
    fig.update_layout(height=520, margin={"t": 40}, xaxis_title="training tokens (trial)",
                      legend={"orientation": "h", "y": -0.18}, hovermode="closest")
    return fig


def _lines(trials: list[dict[str, Any]], name: str, colour: str, width: float,
           opacity: float) -> Any:
    """Many trials as one trace (gaps between them): a legend entry per status, and a page
    that stays fast with hundreds of trials."""
    import plotly.graph_objects as go

    x: list = []
    y: list = []
    text: list = []
    for t in trials:
        x += [*t["tokens"], None]
        y += [*t["y"], None]
        text += [f"trial {t['number']} ({t['status']}) · {esc(s)}" for s in t["stage"]] + [""]
    return go.Scatter(x=x, y=y, text=text, name=name, mode="lines+markers", opacity=opacity,
                      line={"color": colour, "width": width}, marker={"size": 3 + width},
                      connectgaps=False,
                      hovertemplate="%{text}<br>%{x:,} tokens: %{y:.4g}<extra></extra>")


def _mark_stages(fig: Any, best: dict[str, Any]) -> None:
    """The best trial's stage boundaries as labelled vertical lines."""
    first = best["stage"][0] if best["stage"] else ""
    starts = [(0, first)] + [(b["tokens"], b["to"]) for b in best["boundaries"]]
    for tokens, stage in starts:
        fig.add_vline(x=tokens, line={"color": BEST_COLOUR, "dash": "dot", "width": 1},
                      opacity=0.6)
        fig.add_annotation(x=tokens, y=1.0, yref="paper", yanchor="bottom", xanchor="left",
                           text=f"▶ {esc(stage)}", showarrow=False,
                           font={"color": BEST_COLOUR, "size": 11})


def _add_boundaries(fig: Any, trials: list[dict[str, Any]]) -> None:
    import plotly.graph_objects as go

    points = [(t, b) for t in trials for b in t["boundaries"] if b["y"] is not None]
    if not points:
        return
    fig.add_trace(go.Scatter(
        x=[b["tokens"] for _, b in points], y=[b["y"] for _, b in points], mode="markers",
        name="stage boundary", marker={"symbol": "line-ns-open", "size": 12, "color": "#333"},
        text=[f"trial {t['number']}: {esc(b['from'])} → {esc(b['to'])}" for t, b in points],
        hovertemplate="%{text}<br>at %{x:,} tokens<extra></extra>"))


def _add_decisions(fig: Any, trials: list[dict[str, Any]]) -> None:
    import plotly.graph_objects as go

    by_kind: dict[str, list] = {}
    for t in trials:
        for d in t["decisions"]:
            if d["y"] is not None:
                by_kind.setdefault(d["kind"], []).append((t, d))
    for kind, points in sorted(by_kind.items()):
        fig.add_trace(go.Scatter(
            x=[d["tokens"] for _, d in points], y=[d["y"] for _, d in points], mode="markers",
            name=f"policy: {esc(kind)} ({len(points)})",
            marker={"symbol": DECISION_SYMBOLS.get(kind, "star"), "size": 11,
                    "color": "#d62828", "line": {"width": 1, "color": "#fff"}},
            text=[f"trial {t['number']} in {esc(d['stage'])}: {esc(d['decision'])}"
                  for t, d in points],
            hovertemplate="%{text}<br>at %{x:,} tokens<extra></extra>"))
