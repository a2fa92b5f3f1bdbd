"""Which trial branched from which: a branched trial (a population search) starts from a
checkpoint of its parent and trains only the rest. A tree of the trials over the tokens their
models were trained on, each branch hanging from its parent where it started, and the compute
the shared prefixes saved — every branch would otherwise have trained its prefix again."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autostage.records import TrialRecord, best_trial, lineage, prefix_tokens
from autostage.report.page import Section
from autostage.report.style import BEST_COLOUR, STATUS_ORDER, esc, short, status_colour, tokens


def _saved_info(records: list[TrialRecord]) -> dict[str, Any] | None:
    """What the shared prefixes saved: the tokens branched trials did not train again (their
    branch points' lineage tokens), and their share of what all trials' models were trained
    on — their own tokens and the prefixes. None when no trial branched."""
    branched = [r for r in records if r.branch is not None]
    if not branched:
        return None
    saved = sum(r.branch.tokens for r in branched if r.branch is not None)
    charged = sum(r.tokens for r in records)
    return {"saved": saved, "charged": charged, "lineage": charged + saved,
            "share": saved / (charged + saved) if charged + saved else 0.0,
            "branched": len(branched),
            "parents": len({r.branch.parent for r in branched if r.branch is not None})}


def saved_text(saved: Mapping[str, Any]) -> str:
    """The compute saved, in words (plain text: the caller escapes it for its page)."""
    trials = "trial" if saved["branched"] == 1 else "trials"
    parents = "parent" if saved["parents"] == 1 else "parents"
    return (f"{saved['branched']} {trials} branched from {saved['parents']} {parents}. Shared "
            f"prefixes saved {tokens(saved['saved'])} training tokens ({saved['saved']:,}): "
            f"the trials' models were trained on {tokens(saved['lineage'])} tokens "
            f"({saved['lineage']:,}), {saved['share']:.1%} of them a parent's prefix, not "
            "trained again")


def _lineage_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """Every trial as a segment over lineage tokens — a branch from its branch point, the
    others from 0 — to where its model ended, in tree order (each parent above its branches,
    so a branch's connector is short); the best trial's lineage; what the prefixes saved."""
    saved = _saved_info(records)
    if saved is None:
        return {"missing": "no trial branched"}
    best = best_trial(records, mode)
    by_number = {r.number: r for r in records}
    trials = [_segment(by_number[n], depth, best) for n, depth in _tree_order(records)]
    return {"trials": trials, "saved": saved,
            "best_path": _best_path(best, by_number) if best is not None else []}


def _segment(record: TrialRecord, depth: int, best: TrialRecord | None) -> dict[str, Any]:
    branch = record.branch
    return {
        "number": record.number, "status": record.status, "depth": depth,
        "start": prefix_tokens(branch), "end": record.lineage_tokens,
        "tokens": record.tokens, "value": record.ranked_value,
        "best": best is not None and record.number == best.number,
        "parent": branch.parent if branch else None, "stage": branch.stage if branch else None,
        "changed": dict(sorted(record.continuation.items())),
    }


def _tree_order(records: list[TrialRecord]) -> list[tuple[int, int]]:
    """(trial number, depth) depth-first: the roots (trials that did not branch) by number,
    each followed by its branches, earliest branch point first. A trial's place is the path
    to it from its root — (branch tokens, number) per step — so sorting the paths is the
    depth-first order (a parent's path is a prefix of its branches'); the paths come from
    the one lineage walk, which refuses a missing parent or a cycle."""
    by_number = {r.number: r for r in records}
    paths = sorted([(prefix_tokens(r.branch), r.number)
                    for r in lineage(record, by_number)] for record in records)
    return [(path[-1][1], len(path) - 1) for path in paths]


def _best_path(best: TrialRecord, by_number: Mapping[int, TrialRecord]
               ) -> list[dict[str, Any]]:
    """What the best model was trained through: the best trial's own segment, then each
    ancestor's up to the branch point its descendant took."""
    path, end = [], best.lineage_tokens
    for record in reversed(lineage(best, by_number)):
        start = prefix_tokens(record.branch)
        path.append({"number": record.number, "start": start, "end": end})
        end = start
    return path


def lineage_sections(records: list[TrialRecord], mode: str) -> list[Section]:
    """The lineage section; none for a study in which no trial branched (it reads as it
    always did)."""
    info = _lineage_info(records, mode)
    if "missing" in info:
        return []
    return [Section(
        "Lineage", "Which trial branched from which: each trial is a line over the tokens its "
        "model was trained on, a branch starting where it left its parent (a grey connector "
        "from the parent's line) — it inherited the parent's prefix and trained only the "
        "rest. The best trial's lineage is underlaid in purple; hover a line for its parent, "
        "branch point and the parameters it changed there. "
        + saved_text(info["saved"]) + ".", figure=plot_lineage(info))]


def plot_lineage(info: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    trials = info["trials"]
    row = {t["number"]: _label(t) for t in trials}
    fig = go.Figure()
    if info["best_path"]:
        path = info["best_path"]
        fig.add_trace(go.Scatter(
            x=_gapped([(p["start"], p["end"]) for p in path]),
            y=_gapped([(row[p["number"]],) * 2 for p in path]), mode="lines",
            name=f"best: trial {path[0]['number']}'s lineage", hoverinfo="skip",
            line={"color": BEST_COLOUR, "width": 11}, opacity=0.35))
    fig.add_trace(_connectors(trials, row))
    for status in [s for s in STATUS_ORDER if any(t["status"] == s for t in trials)]:
        group = [t for t in trials if t["status"] == status]
        fig.add_trace(go.Scatter(
            x=_gapped([(t["start"], t["end"]) for t in group]),
            y=_gapped([(row[t["number"]],) * 2 for t in group]),
            text=_gapped([(_hover(t),) * 2 for t in group], ""), mode="lines+markers",
            name=f"{status} ({len(group)})", connectgaps=False,
            line={"color": status_colour(status), "width": 4}, marker={"size": 6},
            hovertemplate="%{text}<extra></extra>"))
    branched = [t for t in trials if t["parent"] is not None]
    fig.add_trace(go.Scatter(
        x=[t["start"] for t in branched], y=[row[t["parent"]] for t in branched],
        mode="markers", name=f"branch points ({len(branched)})",
        marker={"symbol": "circle-open", "size": 9, "color": "#333", "line": {"width": 2}},
        text=[_branch_hover(t) for t in branched], hovertemplate="%{text}<extra></extra>"))
    order = [row[t["number"]] for t in trials]
    fig.update_yaxes(categoryorder="array", categoryarray=order[::-1], type="category")
    fig.update_layout(height=180 + 18 * len(trials), margin={"t": 30}, hovermode="closest",
                      xaxis_title="training tokens (a branch's lineage: its parent's prefix, "
                      "then its own)", legend={"orientation": "h", "y": 1.0,
                                               "yanchor": "bottom"})
    return fig


def _connectors(trials: list[dict[str, Any]], row: Mapping[int, str]) -> Any:
    """A vertical line from the parent's row to the branch's, at the branch point."""
    import plotly.graph_objects as go

    branched = [t for t in trials if t["parent"] is not None]
    return go.Scatter(
        x=_gapped([(t["start"],) * 2 for t in branched]),
        y=_gapped([(row[t["parent"]], row[t["number"]]) for t in branched]), mode="lines",
        name="branched from", hoverinfo="skip", line={"color": "#888", "width": 1.2})


def _gapped(pairs: list[tuple[Any, ...]], gap: Any = None) -> list[Any]:
    """Many segments as one trace, `gap` between them (a legend entry per kind, and a page
    that stays fast with hundreds of trials)."""
    return [v for pair in pairs for v in (*pair, gap)]


def _label(trial: dict[str, Any]) -> str:
    return f"trial {trial['number']}"


def _hover(trial: dict[str, Any]) -> str:
    value = f", value {short(trial['value'])}" if trial["value"] is not None else ""
    head = f"trial {trial['number']}: {trial['status']}{value}"
    if trial["parent"] is None:
        return f"{head}<br>trained {trial['tokens']:,} tokens from scratch"
    return (f"{head}<br>{_branch_hover(trial)}<br>trained {trial['tokens']:,} tokens itself, "
            f"{trial['end']:,} with its prefix")


def _branch_hover(trial: dict[str, Any]) -> str:
    changed = "<br>".join(f"  {esc(k)} = {esc(short(v))}" for k, v in trial["changed"].items())
    return (f"trial {trial['number']} branched from trial {trial['parent']} at "
            f"{trial['start']:,} tokens (stage {esc(trial['stage'])})<br>"
            + (f"changed:<br>{changed}" if changed else "changed no parameter"))
