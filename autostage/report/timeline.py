"""When each trial ran: a bar per trial from its start to its end, coloured by outcome, and how
many trials ran at once (the parallelism the search actually got)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from autostage.records import TrialRecord, TrialStatus
from autostage.report.study_run import executed_plan
from autostage.report.style import STATUS_ORDER, esc, short, status_colour, status_legend


def _timeline_info(records: list[TrialRecord], now: float) -> dict[str, Any]:
    """Seconds since the first trial started; a running trial ends `now`. Trials without
    start and end times (interrupted by a killed search) are counted, not drawn."""
    timed = [(r, r.started, r.ended if r.ended is not None else now) for r in records
             if r.started is not None
             and (r.ended is not None or r.status is TrialStatus.RUNNING)]
    if not timed:
        return {"missing": "no trial has start and end times yet"}
    t0 = min(started for _, started, _ in timed)
    trials = [{
        "number": r.number, "status": r.status, "start": started - t0, "end": ended - t0,
        "plan": executed_plan(r), "value": r.ranked_value, "reason": r.reason,
        "parent": r.branch.parent if r.branch else None,
    } for r, started, ended in sorted(timed, key=lambda t: t[0].number)]
    return {"t0": t0, "trials": trials, "untimed": len(records) - len(timed),
            "counts": Counter(r.status for r in records),  # as the header counts
            "parallel": _parallelism(trials)}


def _parallelism(trials: list[dict[str, Any]]) -> dict[str, list]:
    """Trials running at each moment a trial started or ended (a step function)."""
    changes = sorted([(t["start"], 1) for t in trials] + [(t["end"], -1) for t in trials],
                     key=lambda c: (c[0], c[1]))  # an end before a start at the same instant
    times, running, now = [0.0], [0], 0
    for time, step in changes:
        now += step
        if times[-1] == time:
            running[-1] = now
        else:
            times.append(time)
            running.append(now)
    return {"t": times, "at_once": running, "peak": max(running)}


def plot_timeline(info: dict[str, Any]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22],
                        vertical_spacing=0.04)
    trials = info["trials"]
    for status in [s for s in STATUS_ORDER if any(t["status"] == s for t in trials)]:
        group = [t for t in trials if t["status"] == status]
        fig.add_trace(go.Bar(
            y=[f"trial {t['number']}" for t in group], base=[t["start"] for t in group],
            x=[max(t["end"] - t["start"], 1e-3) for t in group], orientation="h",
            name=status_legend(status, len(group), info["counts"].get(status, len(group)),
                               "without start and end times"),
            marker_color=status_colour(status),
            text=[_hover(t) for t in group], textposition="none",
            hovertemplate="%{text}<extra></extra>"), row=1, col=1)
    p = info["parallel"]
    fig.add_trace(go.Scatter(x=p["t"], y=p["at_once"], mode="lines", line_shape="hv",
                             name="trials running", line={"color": "#333"},
                             hovertemplate="%{y} running at %{x:.1f} s<extra></extra>"),
                  row=2, col=1)
    order = [f"trial {t['number']}" for t in trials]
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], row=1, col=1)
    fig.update_yaxes(title_text="trials running", dtick=1, rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="seconds since the first trial started", row=2, col=1)
    fig.update_layout(barmode="overlay", height=240 + 16 * len(trials), margin={"t": 40},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"})
    return fig


def _hover(trial: dict[str, Any]) -> str:
    value = f", value {short(trial['value'])}" if trial["value"] is not None else ""
    reason = f"<br>{esc(trial['reason'])}" if trial["reason"] else ""
    branch = f", branch of trial {trial['parent']}" if trial.get("parent") is not None else ""
    return (f"trial {trial['number']}: {trial['status']}{value}{branch}<br>"
            f"plan {esc(trial['plan'])}"
            f"<br>{trial['start']:.1f} s → {trial['end']:.1f} s{reason}")
