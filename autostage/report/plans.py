"""Which stage plans won: every plan the search tried, its trials' results and how many of its
trials were cut short."""

from __future__ import annotations

from typing import Any

from autostage.ranking import better
from autostage.records import TrialRecord, TrialStatus
from autostage.report.study_run import executed_plan
from autostage.report.style import BEST_COLOUR, esc


def _plans_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """Per stage plan (best first; plans without a result last): the results of its trials,
    their numbers, and its trials per status. Running trials are left out: their plan is not
    recorded until they end."""
    plans: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.status is TrialStatus.RUNNING:
            continue
        plan = plans.setdefault(executed_plan(r) or "(no evals)", {
            "values": [], "trials": [], "counts": {}, "best": None})
        plan["counts"][r.status] = plan["counts"].get(r.status, 0) + 1
        value = r.ranked_value
        if value is not None:
            plan["values"].append(value)
            plan["trials"].append(r.number)
            if better(value, plan["best"], mode):
                plan["best"] = value
    if not any(p["values"] for p in plans.values()):
        return {"missing": "no trial has a result yet"}
    sign = 1 if mode == "min" else -1
    order = sorted(plans, key=lambda p: (plans[p]["best"] is None,
                                         sign * (plans[p]["best"] or 0), p))
    return {"mode": mode, "plans": [{"plan": p, **plans[p]} for p in order]}


def plot_plans(info: dict[str, Any], metric: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    plans = info["plans"]
    labels = [_label(p) for p in plans]
    for i, (plan, label) in enumerate(zip(plans, labels, strict=True)):
        colour = BEST_COLOUR if i == 0 else "#5c677d"
        fig.add_trace(go.Box(  # a strip plot: a box of two or three points says nothing
            x=plan["values"], y=[label] * len(plan["values"]), orientation="h",
            boxpoints="all", pointpos=0, jitter=0.4, name=label, showlegend=False,
            fillcolor="rgba(0,0,0,0)", line={"width": 0}, marker={"color": colour, "size": 9},
            text=[f"trial {n}" for n in plan["trials"]],
            hovertemplate="%{text}: %{x:.4g}<extra></extra>"))
    _add_plans_without_results(fig, plans, labels)
    fig.update_layout(
        height=160 + 60 * len(plans), margin={"t": 20, "l": 20}, xaxis_title=esc(metric),
        yaxis={"categoryorder": "array", "categoryarray": labels[::-1], "automargin": True})
    return fig


def _add_plans_without_results(fig: Any, plans: list[dict[str, Any]], labels: list[str]) -> None:
    """A row for each plan whose trials were all cut short: the search paid for them too."""
    import plotly.graph_objects as go

    empty = [label for plan, label in zip(plans, labels, strict=True) if not plan["values"]]
    anywhere = [v for p in plans for v in p["values"]]
    if empty and anywhere:
        fig.add_trace(go.Scatter(
            x=[min(anywhere)] * len(empty), y=empty, mode="text", text=["no result"] * len(empty),
            textposition="middle right", showlegend=False, hoverinfo="skip",
            textfont={"color": "#888"}))


def _label(plan: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(plan["counts"].items()))
    return f"{esc(plan['plan'])}<br><span style='font-size:10px'>{counts}</span>"
