"""A study with several metrics has no one best trial: the Pareto front is the trials no other
beats in every metric at once — each a trade-off. A table of them, and a figure of every trial
with a result in the first two metrics, the front connected."""

from __future__ import annotations

from html import escape
from typing import Any

from autostage.keys import PLAN_KEY, TOKENS
from autostage.ranking import finite
from autostage.records import TrialRecord, pareto_front
from autostage.report.study_run import executed_plan, searched_params
from autostage.report.style import BEST_COLOUR, esc, short, tokens
from autostage.report.tables import _table, branched, parent, parent_cell, parent_head


def _pareto_info(records: list[TrialRecord], metrics: list[str], modes: list[str]
                 ) -> dict[str, Any]:
    """The front's trials (best in the first metric first) with their values, plan and
    sampled parameters; every trial with a result, marked on the front or not."""
    front = pareto_front(records, modes)
    if not front:
        return {"missing": "no trial has a result in every metric yet"}
    on_front = {r.number for r in front}
    searched = [k for k in searched_params(records) if k != PLAN_KEY]
    sign = 1 if modes[0] == "min" else -1
    lineage = branched(records)
    rows = [{**_trial(r), "params": {k: r.config[k] for k in searched if k in r.config},
             **parent(r, lineage)}
            for r in sorted(front, key=lambda r: (sign * (r.value or 0.0), r.number))]
    trials = [{**_trial(r), "front": r.number in on_front}
              for r in _ranked_in_every_metric(records, modes)]
    return {"metrics": metrics, "modes": modes, "front": rows, "trials": trials,
            "lineage": lineage}


def _trial(record: TrialRecord) -> dict[str, Any]:
    return {"number": record.number, "values": list(record.values or ()),
            "plan": executed_plan(record)}


def _ranked_in_every_metric(records: list[TrialRecord], modes: list[str]
                            ) -> list[TrialRecord]:
    """The trials `pareto_front` compares: a ranked status and a finite value per metric."""
    return [r for r in records if r.status.ranked and r.values is not None
            and len(r.values) == len(modes) and all(finite(v) is not None for v in r.values)]


def plot_pareto(info: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    metrics = info["metrics"]
    front = sorted((t for t in info["trials"] if t["front"]), key=lambda t: t["values"][:2])
    rest = [t for t in info["trials"] if not t["front"]]
    fig = go.Figure()
    fig.add_trace(_points(rest, metrics, name=f"dominated ({len(rest)})", mode="markers",
                          marker={"color": "#5c677d", "size": 8, "opacity": 0.6}))
    fig.add_trace(_points(front, metrics, name=f"Pareto front ({len(front)})",
                          mode="lines+markers", marker={"color": BEST_COLOUR, "size": 11},
                          line={"color": BEST_COLOUR, "width": 2}))
    fig.update_layout(height=480, margin={"t": 30}, hovermode="closest",
                      xaxis_title=_axis_title(metrics[0], info["modes"][0]),
                      yaxis_title=_axis_title(metrics[1], info["modes"][1]),
                      legend={"orientation": "h", "y": -0.18})
    return fig


def _points(trials: list[dict[str, Any]], metrics: list[str], **style: Any) -> Any:
    """Trials in the first two metrics; `customdata` is each point's trial number."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[t["values"][0] for t in trials], y=[t["values"][1] for t in trials],
        customdata=[t["number"] for t in trials], text=[_hover(t, metrics) for t in trials],
        hovertemplate="%{text}<extra></extra>", **style)


def _hover(trial: dict[str, Any], metrics: list[str]) -> str:
    values = "".join(f"<br>{esc(m)} = {_value(m, v)}"
                     for m, v in zip(metrics, trial["values"], strict=True))
    return f"trial {trial['number']} · {esc(trial['plan'])}{values}"


def _axis_title(metric: str, mode: str) -> str:
    return f"{esc(metric)} ({'lower' if mode == 'min' else 'higher'} is better)"


def _value(metric: str, value: float) -> str:
    """A metric's value as a reader wants it: training tokens as 401k, others to 4 digits."""
    return tokens(value) if metric == TOKENS else f"{value:.4g}"


def pareto_table(info: dict[str, Any]) -> str:
    head = ["trial", *parent_head(info.get("lineage", False)),
            *(f"{escape(m)} ({m_mode})" for m, m_mode in
              zip(info["metrics"], info["modes"], strict=True)),
            "stage plan", "parameters"]
    body = []
    for row in info["front"]:
        params = "<br>".join(f"{escape(k)} = {escape(short(v))}"
                             for k, v in row["params"].items())
        body.append([str(row["number"]), *parent_cell(row),
                     *(_value(m, v) for m, v in zip(info["metrics"], row["values"], strict=True)),
                     escape(row["plan"]), f"<span class='params'>{params}</span>"])
    return _table(head, body)
