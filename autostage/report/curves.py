"""Every trial through its stages: a metric (the study's, the learning rate, or any one a
trial recorded) against training tokens, with stage boundaries and the stage policy's decisions
marked, the best trial drawn over the rest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from autostage.keys import train_metric
from autostage.ranking import finite
from autostage.records import EvalRecord, TrialRecord, TrialStatus, best_trial, lineage_evals
from autostage.report.study_run import stage_label, stage_visits
from autostage.report.style import (
    BEST_COLOUR,
    DECISION_SYMBOLS,
    STATUS_ORDER,
    decision_kind,
    esc,
    status_colour,
    status_legend,
)

#: the share of a training segment's optimizer steps whose gradient norm was clipped
CLIPPED = train_metric("clipped")


def _curves_info(records: list[TrialRecord], metric: str, mode: str) -> dict[str, Any]:
    """Per trial with evals: the study metric at each eval (None where it was not finite)."""
    return _paths(records, mode, metric, metric)


def _lr_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """Per trial with evals: the learning rate at each eval, after the schedule and every
    ScaleLR / Rewind factor so far."""
    return _paths(records, mode, "lr", "learning rate")


def _paths(records: list[TrialRecord], mode: str, key: str, y_name: str) -> dict[str, Any]:
    """Per trial with evals: `key` (a metric key, or `lr`) at each eval as it was measured —
    after a Rewind too, so the regression that caused it shows."""
    best = best_trial(records, mode)
    by_number = {r.number: r for r in records}
    made_by = {id(e): r.number for r in records if r.evals for e in r.evals}
    trials = [_path(r, key, best is not None and r.number == best.number, by_number, made_by)
              for r in records if r.evals]
    if not trials:
        return {"missing": "no trial has been evaluated yet"}
    counts = Counter(r.status for r in records)  # what the header counts: legends say it too
    return {"y": y_name, "best": best.number if best else None, "trials": trials,
            "counts": counts}


def _path(record: TrialRecord, key: str, is_best: bool, by_number: Mapping[int, TrialRecord],
          made_by: Mapping[int, int]) -> dict[str, Any]:
    """`by_number`: every record, for a branch's prefix; `made_by`: the trial number of each
    eval record, by its id()."""
    evals = record.evals
    points = {"tokens": [e.eval.tokens for e in evals], "y": [e.metric(key) for e in evals],
              "stage": [stage_label(e) for e in evals]}
    branch = {} if record.branch is None else {"branch": {  # its evals: after its branch point
        "parent": record.branch.parent, "tokens": record.branch.tokens,
        "prefix": _prefix(record, key, by_number, made_by)}}
    decisions = [_decision(e, key) for e in record.decisions]  # Continue changes nothing
    visits = stage_visits(evals)
    boundaries = [{"tokens": before[-1].eval.tokens, "y": before[-1].metric(key),
                   "from": stage_label(before[-1]), "to": stage_label(after[0])}
                  for before, after in zip(visits, visits[1:], strict=False)]
    clipped = [{"tokens": e.eval.tokens, "y": e.metric(key), "stage": stage_label(e),
                "share": share}
               for e in evals if (share := e.metric(CLIPPED)) is not None and share > 0]
    return {"number": record.number, "status": record.status, "best": is_best,
            **points, **branch, "decisions": decisions, "boundaries": boundaries,
            "clipped": clipped}


def _prefix(record: TrialRecord, key: str, by_number: Mapping[int, TrialRecord],
            made_by: Mapping[int, int]) -> dict[str, list]:
    """A branched trial's prefix: its ancestors' evals up to its branch point, each with the
    trial that made it (empty when its parent has no record)."""
    lineage = lineage_evals(record, by_number)
    prefix = lineage[:len(lineage) - len(record.evals)]
    return {"tokens": [e.eval.tokens for e in prefix], "y": [e.metric(key) for e in prefix],
            "stage": [stage_label(e) for e in prefix],
            "trial": [made_by.get(id(e)) for e in prefix]}


def _decision(record: EvalRecord, key: str) -> dict[str, Any]:
    """A decision where it was made; a Rewind also says what it went back to: the watched
    metric of the weights it restored."""
    ev = record.eval
    out = {"tokens": ev.tokens, "y": record.metric(key), "stage": stage_label(record),
           "decision": record.decision_label, "kind": decision_kind(ev.decision)}
    if ev.restored is not None:
        out["restored"] = {"metric": ev.watch, "value": finite(ev.restored.get(ev.watch))}
    return out


def plot_learning_curves(info: dict[str, Any], metric: str) -> Any:
    fig = plot_paths(info, path_traces(info))
    fig.update_layout(yaxis_title=esc(metric))
    return fig


def plot_lr_paths(info: dict[str, Any]) -> Any:
    floor = _lowest_positive(info["trials"])
    if floor is None:  # no positive LR at all: nothing a log axis could show
        return plot_paths(info, path_traces(info)).update_layout(yaxis_title="learning rate")
    info = {**info, "trials": [_on_log_axis(t, floor) for t in info["trials"]]}
    fig = plot_paths(info, path_traces(info) + _zero_marks(info["trials"]))
    fig.update_layout(yaxis_title="learning rate", yaxis_type="log")
    return fig


def _lowest_positive(trials: list[dict[str, Any]]) -> float | None:
    values = [y for t in trials for y in t["y"] + t.get("branch", {}).get("prefix", {}).get(
        "y", []) if y is not None and y > 0]
    return min(values, default=None)


def _on_log_axis(trial: dict[str, Any], floor: float) -> dict[str, Any]:
    """A trial's LR path as a log axis can draw it. It has no 0: a line that reaches 0 (a
    schedule with min_ratio 0) would plunge off the bottom of the figure, so it ends at its
    last positive value; its evals at 0 become `zeros`, marked level with that end, as are
    a stage boundary or decision at 0. `floor`: the height for a trial with no positive LR."""
    points = [(x, y) for x, y in zip(*_lineage_points(trial), strict=True)
              if y is not None and y > 0]

    def level(tokens: int) -> float:  # the last positive LR at or before `tokens`
        before = [y for x, y in points if x <= tokens]
        return before[-1] if before else points[0][1] if points else floor

    def lifted(mark: dict[str, Any]) -> dict[str, Any]:
        y = mark["y"]
        return mark if y is None or y > 0 else {**mark, "y": level(mark["tokens"])}

    out = {**trial, "y": _positive(trial["y"]),
           "zeros": [{"tokens": x, "y": level(x), "stage": stage}
                     for x, y, stage in zip(trial["tokens"], trial["y"], trial["stage"],
                                            strict=True) if y is not None and y <= 0],
           "boundaries": [lifted(b) for b in trial["boundaries"]],
           "decisions": [lifted(d) for d in trial["decisions"]]}
    if "branch" in trial:
        prefix = trial["branch"]["prefix"]
        out["branch"] = {**trial["branch"], "prefix": {**prefix, "y": _positive(prefix["y"])}}
    return out


def _lineage_points(trial: dict[str, Any]) -> tuple[list, list]:
    """A trial's tokens and values through its lineage: a branch's prefix, then its own."""
    prefix = trial.get("branch", {}).get("prefix", {"tokens": [], "y": []})
    return prefix["tokens"] + trial["tokens"], prefix["y"] + trial["y"]


def _positive(values: list[float | None]) -> list[float | None]:
    return [y if y is not None and y > 0 else None for y in values]


def _zero_marks(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a learning rate reached 0, which a log axis cannot show (none: no trace)."""
    points = [(t, z) for t in trials for z in t["zeros"]]
    return [_markers(
        points, f"learning rate reached 0 ({len(points)})",
        {"symbol": "arrow-bar-down", "size": 10, "color": "#333"},
        [f"trial {t['number']} in {esc(z['stage'])}: the learning rate reached 0 (not drawn "
         "on the log axis: the line ends at the last eval above 0)" for t, z in points])
    ] if points else []


def plot_paths(info: dict[str, Any], traces: list[dict[str, Any]]) -> Any:
    """`traces` against the trial's tokens, the best trial's stage starts marked."""
    import plotly.graph_objects as go

    fig = go.Figure(data=traces)
    best = [t for t in info["trials"] if t["best"]]
    if best:
        _mark_stages(fig, best[0])
    lineage = any(t.get("branch") for t in info["trials"])
    fig.update_layout(height=520, margin={"t": 40},
                      xaxis_title="training tokens (the trial's lineage: a branch's prefix "
                      "dotted)" if lineage else "training tokens (trial)",
                      legend={"orientation": "h", "y": -0.18}, hovermode="closest")
    return fig


def path_traces(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials by status, the best one over them, stage boundaries and decisions, as
    Plotly scatter traces (plain dicts: Plotly checks them once, when they make a figure).
    A point without a value (a metric not recorded there) is kept and not drawn: whatever
    is plotted, the traces and their points are the same."""
    rest = [t for t in info["trials"] if not t["best"]]
    best = [t for t in info["trials"] if t["best"]]
    traces = _prefixes(rest, best)
    traces += [_lines([t for t in rest if t["status"] == status], _legend(info, status),
                      status_colour(status), 1.2, 0.45)
               for status in STATUS_ORDER if any(t["status"] == status for t in rest)]
    if best:
        traces.append(_lines(best, f"best: trial {best[0]['number']}", BEST_COLOUR, 3.5, 1.0))
    return traces + _boundaries(info["trials"]) + _decisions(info["trials"])


def _legend(info: dict[str, Any], status: TrialStatus) -> str:
    """A status's entry: its trials drawn here, the best among them though drawn apart, and
    those without evals, which have no line."""
    drawn = sum(t["status"] == status for t in info["trials"])
    return status_legend(status, drawn, info.get("counts", {}).get(status, drawn),
                         "without evals")


def _prefixes(rest: list[dict[str, Any]], best: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Branched trials' prefixes, dotted under the solid lines of what each trained itself:
    a branch's curve continues its parent's. The best trial's prefix in its colour, the
    others' faint; none (no trace) in a study without branches."""
    def prefixed(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [t for t in trials if t.get("branch") and t["branch"]["prefix"]["tokens"]]

    traces = []
    if branches := prefixed(rest):
        traces.append(_prefix_lines(branches, f"prefixes of branches ({len(branches)})",
                                    "#8d99ae", 1.2, 0.45))
    if best_branch := prefixed(best):
        parent = best_branch[0]["branch"]["parent"]
        traces.append(_prefix_lines(best_branch, f"best's prefix (from trial {parent})",
                                    BEST_COLOUR, 2.0, 0.8))
    return traces


def _prefix_lines(trials: list[dict[str, Any]], name: str, colour: str, width: float,
                  opacity: float) -> dict[str, Any]:
    prefixes = [{**t["branch"]["prefix"], "number": t["number"]} for t in trials]
    return {**_lines(prefixes, name, colour, width, opacity, _prefix_text),
            "mode": "lines", "line": {"color": colour, "width": width, "dash": "dot"}}


def _prefix_text(prefix: dict[str, Any]) -> list[str]:
    return [f"trial {prefix['number']}'s prefix: trial {n} · {esc(s)}"
            for n, s in zip(prefix["trial"], prefix["stage"], strict=True)]


def _trial_text(trial: dict[str, Any]) -> list[str]:
    return [f"trial {trial['number']} ({trial['status']}) · {esc(s)}" for s in trial["stage"]]


def _lines(trials: list[dict[str, Any]], name: str, colour: str, width: float,
           opacity: float, texts: Callable[[dict[str, Any]], list[str]] = _trial_text
           ) -> dict[str, Any]:
    """Many trials as one trace (gaps between them): a legend entry per status, and a page
    that stays fast with hundreds of trials. A branch's line starts at its branch point,
    on its parent's curve."""
    x: list = []
    y: list = []
    text: list = []
    for t in trials:
        joined = _branch_point(t)
        x += [*joined["tokens"], *t["tokens"], None]
        y += [*joined["y"], *t["y"], None]
        text += [*joined["text"], *texts(t), ""]
    return {"type": "scatter", "x": x, "y": y, "text": text, "name": name,
            "mode": "lines+markers", "opacity": opacity,
            "line": {"color": colour, "width": width}, "marker": {"size": 3 + width},
            "connectgaps": False,
            "hovertemplate": "%{text}<br>%{x:,} tokens: %{y:.4g}<extra></extra>"}


def _branch_point(trial: dict[str, Any]) -> dict[str, list]:
    """Where a branched trial left its parent: the last eval of its prefix (nothing for a
    trial that did not branch, or whose parent has no record)."""
    prefix = trial.get("branch", {}).get("prefix")
    if not prefix or not prefix["tokens"]:
        return {"tokens": [], "y": [], "text": []}
    return {"tokens": prefix["tokens"][-1:], "y": prefix["y"][-1:],
            "text": [f"trial {trial['number']} branched from trial "
                     f"{trial['branch']['parent']} here · {esc(prefix['stage'][-1])}"]}


def _mark_stages(fig: Any, best: dict[str, Any]) -> None:
    """The best trial's stage boundaries as labelled vertical lines; a branch's across its
    lineage: its model went through its prefix's stages too."""
    branch = best.get("branch")
    prefix = branch["prefix"] if branch else {"tokens": [], "stage": []}
    at, stages = prefix["tokens"] + best["tokens"], prefix["stage"] + best["stage"]
    origin = branch["tokens"] if branch and not prefix["tokens"] else 0  # a parent unknown
    starts = [(origin, stages[0] if stages else "")] + [
        (at[i - 1], stages[i]) for i in range(1, len(stages)) if stages[i] != stages[i - 1]]
    for tokens, stage in starts:
        fig.add_vline(x=tokens, line={"color": BEST_COLOUR, "dash": "dot", "width": 1},
                      opacity=0.6)
        fig.add_annotation(x=tokens, y=1.0, yref="paper", yanchor="bottom", xanchor="left",
                           text=f"▶ {esc(stage)}", showarrow=False,
                           font={"color": BEST_COLOUR, "size": 11})


def _boundaries(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every trial's stage boundaries as ticks (none: no trace)."""
    points = [(t, b) for t in trials for b in t["boundaries"]]
    return [_markers(
        points, "stage boundary", {"symbol": "line-ns-open", "size": 12, "color": "#333"},
        [f"trial {t['number']}: {esc(b['from'])} → {esc(b['to'])}" for t, b in points])
    ] if points else []


def _decisions(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A trace per kind of stage-policy decision."""
    by_kind: dict[str, list] = {}
    for t in trials:
        for d in t["decisions"]:
            by_kind.setdefault(d["kind"], []).append((t, d))
    return [_markers(points, f"policy: {esc(kind)} ({len(points)})",
                     {"symbol": DECISION_SYMBOLS.get(kind, "star"), "size": 11,
                      "color": "#d62828", "line": {"width": 1, "color": "#fff"}},
                     [_decision_text(t, d) for t, d in points])
            for kind, points in sorted(by_kind.items())]


def _decision_text(trial: dict[str, Any], decision: dict[str, Any]) -> str:
    text = f"trial {trial['number']} in {esc(decision['stage'])}: {esc(decision['decision'])}"
    restored = decision.get("restored")
    if restored is not None and restored["value"] is not None:
        text += f"<br>restored {esc(restored['metric'])} = {restored['value']:.4g}"
    return text


def clipping_traces(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evals whose training segment clipped gradients (`train.clipped` > 0); none of
    them (a trainer that does not report it): no trace."""
    points = [(t, c) for t in trials for c in t["clipped"]]
    return [_markers(
        points, f"gradients clipped ({len(points)})",
        {"symbol": "diamond-open", "size": 9, "color": "#f4a261", "line": {"width": 2}},
        [f"trial {t['number']} in {esc(c['stage'])}: {c['share']:.0%} of its optimizer steps "
         "clipped" for t, c in points])
    ] if points else []


def _markers(points: list[tuple[dict, dict]], name: str, marker: dict[str, Any],
             text: list[str]) -> dict[str, Any]:
    """Marks at (trial, point) pairs, each point with its tokens and y."""
    return {"type": "scatter", "x": [p["tokens"] for _, p in points],
            "y": [p["y"] for _, p in points], "mode": "markers", "name": name,
            "marker": marker, "text": text,
            "hovertemplate": "%{text}<br>at %{x:,} tokens<extra></extra>"}
