"""How the search progressed: the best value so far against the tokens spent and against the
trial number, and where the tokens went (by trial outcome and stage)."""

from __future__ import annotations

from typing import Any

from autostage.ranking import better
from autostage.records import TrialRecord, TrialStatus, prefix_tokens
from autostage.report.study_run import stage_label, stage_order
from autostage.report.style import BEST_COLOUR, STATUS_ORDER, esc, status_colour


def _best_so_far_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """Finished trials in the order they ended, with the tokens spent by then (every trial's
    tokens count: pruned and failed ones cost compute too) and the best value by then; and
    the same best-so-far in trial-number order."""
    ended = sorted((r for r in records if r.status.finished),
                   key=lambda r: (r.ended or float("inf"), r.number))
    if not ended:
        return {"missing": "no trial has finished yet"}
    by_tokens = _walk(ended, mode, spent=True)
    by_number = _walk(sorted(ended, key=lambda r: r.number), mode, spent=False)
    return {"mode": mode, "by_tokens": by_tokens, "by_number": by_number}


def _walk(records: list[TrialRecord], mode: str, spent: bool) -> dict[str, list]:
    out: dict[str, list] = {"trial": [], "x": [], "value": [], "best": [], "status": []}
    total, best = 0, None
    for r in records:
        total += r.tokens
        value = r.ranked_value
        if better(value, best, mode):
            best = value
        out["trial"].append(r.number)
        out["x"].append(total if spent else r.number)
        out["value"].append(value)
        out["best"].append(best)
        out["status"].append(r.status)
    return out


def plot_best_so_far(info: dict[str, Any], metric: str) -> Any:
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        "against training tokens spent by all trials", "against trial number"))
    for col, key in ((1, "by_tokens"), (2, "by_number")):
        _add_walk(fig, info[key], col, show_legend=col == 1)
    fig.update_xaxes(title_text="tokens spent (all trials, in the order they ended)", row=1,
                     col=1)
    fig.update_xaxes(title_text="trial", row=1, col=2)
    fig.update_yaxes(title_text=esc(metric))
    fig.update_layout(height=420, margin={"t": 40}, legend={"orientation": "h", "y": -0.22})
    return fig


def _add_walk(fig: Any, walk: dict[str, list], col: int, show_legend: bool) -> None:
    import plotly.graph_objects as go

    points = [i for i, v in enumerate(walk["value"]) if v is not None]
    fig.add_trace(go.Scatter(
        x=[walk["x"][i] for i in points], y=[walk["value"][i] for i in points], mode="markers",
        name="a trial's result", marker={"color": "#5c677d", "size": 7},
        text=[f"trial {walk['trial'][i]}" for i in points], showlegend=show_legend,
        hovertemplate="%{text}<br>value %{y:.4g}<br>x %{x:,}<extra></extra>"), row=1, col=col)
    fig.add_trace(go.Scatter(
        x=walk["x"], y=walk["best"], mode="lines", line={"shape": "hv", "color": BEST_COLOUR,
                                                          "width": 3},
        name="best so far", showlegend=show_legend, connectgaps=False,
        text=[f"after trial {t}" for t in walk["trial"]],
        hovertemplate="best %{y:.4g}<br>%{text}<extra></extra>"), row=1, col=col)
    cut = [i for i, v in enumerate(walk["value"]) if v is None]
    fig.add_trace(go.Scatter(  # trials without a result: where their compute went, on the x axis
        x=[walk["x"][i] for i in cut], y=[walk["best"][i] for i in cut], mode="markers",
        name="pruned / failed (no result)", showlegend=show_legend,
        marker={"symbol": "x-thin-open", "size": 8,
                "color": [status_colour(walk["status"][i]) for i in cut]},
        text=[f"trial {walk['trial'][i]}: {walk['status'][i]}" for i in cut],
        hovertemplate="%{text}<extra></extra>"), row=1, col=col)


def _compute_info(records: list[TrialRecord], stages: list[str]) -> dict[str, Any]:
    """Training tokens by trial outcome and by stage visit (`stages`: the declared order):
    how much the search spent, and how much went into trials that never gave a result."""
    spent: dict[TrialStatus, dict[str, int]] = {}
    seen: set[str] = set()
    for r in records:
        for stage, n in _tokens_by_stage(r).items():
            seen.add(stage)
            by_stage = spent.setdefault(r.status, {})
            by_stage[stage] = by_stage.get(stage, 0) + n
    total = sum(sum(s.values()) for s in spent.values())
    if not total:
        return {"missing": "no trial has trained any tokens yet"}
    statuses = [s for s in STATUS_ORDER if s in spent]
    return {"total": total, "statuses": statuses, "tokens": spent,
            "stages": sorted(seen, key=lambda label: stage_order(label, stages)),
            "trials": {s: sum(r.status is s for r in records) for s in statuses}}


def _tokens_by_stage(record: TrialRecord) -> dict[str, int]:
    """Tokens trained per stage visit, from the token count at each eval. Tokens a trial
    reports beyond its last eval count towards the stage it was in. A branch's evals count
    its lineage's tokens: it is charged from its branch point on (its prefix was trained
    once, by its parent)."""
    out: dict[str, int] = {}
    start = prefix_tokens(record.branch)
    before, stage = start, None
    for ev in record.evals:
        stage = stage_label(ev)
        now = ev.eval.tokens
        out[stage] = out.get(stage, 0) + max(0, now - before)
        before = max(before, now)
    rest = start + record.tokens - before
    if rest > 0:
        key = stage or "(before the first eval)"
        out[key] = out.get(key, 0) + rest
    return out


def plot_compute(info: dict[str, Any]) -> Any:
    import plotly.express as px
    import plotly.graph_objects as go

    fig = go.Figure()
    labels = [f"{s} ({info['trials'][s]} trials)" for s in info["statuses"]]
    palette = px.colors.qualitative.Safe
    for i, stage in enumerate(info["stages"]):
        fig.add_trace(go.Bar(
            y=labels, x=[info["tokens"][s].get(stage, 0) for s in info["statuses"]],
            name=esc(stage), orientation="h", marker_color=palette[i % len(palette)],
            hovertemplate="stage %{fullData.name}<br>%{y}<br>%{x:,} tokens<extra></extra>"))
    fig.update_layout(barmode="stack", height=140 + 45 * len(labels), margin={"t": 20},
                      xaxis_title="training tokens", legend_title_text="stage",
                      yaxis={"autorange": "reversed"})
    return fig
