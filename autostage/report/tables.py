"""The report's tables: the top trials with the study metric at the end of each stage, and
the failed trials with their reasons. Rendered as HTML here; every cell is escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from autostage.keys import PLAN_KEY
from autostage.records import TrialRecord, TrialStatus
from autostage.report.study_run import (
    executed_plan,
    searched_params,
    stage_label,
    stage_order,
    stage_visits,
)
from autostage.report.style import short, tokens


def _top_trials_info(records: list[TrialRecord], metric: str, mode: str, stages: list[str],
                     limit: int = 10) -> dict[str, Any]:
    """The `limit` best trials with a result: value, plan, tokens, the study metric at the
    last eval of each stage visit, the stage policy's decisions, and the sampled parameters
    (the plan has its own column)."""
    sign = 1 if mode == "min" else -1
    ranked = sorted((r for r in records if r.ranked_value is not None),
                    key=lambda r: sign * (r.ranked_value or 0.0))[:limit]
    if not ranked:
        return {"missing": "no trial has a result yet"}
    searched = searched_params(records)
    lineage = branched(records)
    rows = [{"number": r.number, "value": r.ranked_value, "plan": executed_plan(r),
             "tokens": r.tokens, "stage_evals": _stage_ends(r, metric),
             "decisions": [f"{e.decision_label} ({stage_label(e)}, {tokens(e.eval.tokens)})"
                           for e in r.decisions],
             "params": {k: r.config[k] for k in searched if k in r.config and k != PLAN_KEY},
             **parent(r, lineage)}
            for r in ranked]
    labels = {label for row in rows for label in row["stage_evals"]}
    return {"rows": rows, "stages": sorted(labels, key=lambda s: stage_order(s, stages)),
            "lineage": lineage}


def branched(records: list[TrialRecord]) -> bool:
    """Some trial branched: tables get a parent column (a study without branches reads as
    it always did)."""
    return any(r.branch is not None for r in records)


def parent(record: TrialRecord, lineage: bool) -> dict[str, Any]:
    """A table row's parent: the trial it branched from, None when it did not (nothing in
    a study without branches)."""
    return {"parent": record.branch.parent if record.branch else None} if lineage else {}


def parent_cell(row: dict[str, Any]) -> list[str]:
    """The parent column's cell (none in a study without branches)."""
    if "parent" not in row:
        return []
    return ["" if row["parent"] is None else str(row["parent"])]


def parent_head(lineage: bool) -> list[str]:
    return ["parent"] if lineage else []


def _stage_ends(record: TrialRecord, metric: str) -> dict[str, float | None]:
    return {stage_label(v[-1]): v[-1].metric(metric) for v in stage_visits(record.evals)}


def top_trials_table(info: dict[str, Any], metric: str) -> str:
    head = ["#", "trial", *parent_head(info.get("lineage", False)), escape(metric),
            "stage plan", "tokens"] + \
        [f"{escape(metric)}<br>after {escape(s)}" for s in info["stages"]] + \
        ["stage-policy decisions", "parameters"]
    body = []
    for rank, row in enumerate(info["rows"], 1):
        evals = [_number(row["stage_evals"].get(s)) for s in info["stages"]]
        params = "<br>".join(f"{escape(k)} = {escape(short(v))}"
                             for k, v in row["params"].items())
        body.append([str(rank), str(row["number"]), *parent_cell(row), _number(row["value"]),
                     escape(row["plan"]), tokens(row["tokens"]), *evals,
                     "<br>".join(escape(d) for d in row["decisions"]) or "-",
                     f"<span class='params'>{params}</span>"])
    return _table(head, body)


def _failed_info(records: list[TrialRecord]) -> dict[str, Any]:
    """Every failed trial: where it was (stage, tokens) and why it failed."""
    failed = [r for r in records if r.status is TrialStatus.FAILED]
    lineage = branched(records)
    return {"rows": [{"number": r.number, "plan": executed_plan(r),
                      "stage": stage_label(r.evals[-1]) if r.evals else "before its first eval",
                      "tokens": r.tokens, "reason": r.reason or "(no reason recorded)",
                      **parent(r, lineage)}
                     for r in failed], "lineage": lineage}


def failed_table(info: dict[str, Any]) -> str:
    if not info["rows"]:
        return "<p class='note'>No trial failed.</p>"
    head = ["trial", *parent_head(info.get("lineage", False)), "stage plan",
            "last stage evaluated", "tokens", "reason"]
    body = [[str(r["number"]), *parent_cell(r), escape(r["plan"]), escape(r["stage"]),
             tokens(r["tokens"]), escape(r["reason"])] for r in info["rows"]]
    return _table(head, body)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Cells arrive escaped (some carry <br> of our own)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
