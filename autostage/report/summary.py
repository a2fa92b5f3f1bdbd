"""The top of the report: what the study is, how far it got, what it spent, and the winner —
its configuration, stage plan and LR path — in words and numbers."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from autostage.records import TrialRecord, TrialStatus, best_trial
from autostage.report.lineage import _saved_info, saved_text
from autostage.report.study_run import StudyRun, executed_plan, stage_label
from autostage.report.style import STATUS_ORDER, short, status_colour, tokens
from autostage.target import first_reached, target_text


def _summary_info(run: StudyRun, now: float) -> dict[str, Any]:
    records = run.records
    counts: dict[TrialStatus, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    starts = [r.started for r in records if r.started is not None]
    ends = [r.ended or now for r in records if r.started is not None]
    best = best_trial(records, run.mode)
    return {
        "name": run.name, "metric": run.metric, "path": str(run.path),
        "objectives": list(zip(run.metrics, run.modes, strict=True)),
        "requested": run.requested, "finished": run.finished, "still_running": run.running,
        "partial": run.partial, "counts": counts, "tokens": sum(r.tokens for r in records),
        "budget": run.token_budget if run.budget_spent else None,
        "tokens_ranked": sum(r.tokens for r in records if r.status.ranked),
        "saved": _saved_info(records),  # None: no trial branched
        "seconds": max(ends) - min(starts) if starts else None,
        "best": _best_info(best) if best else None, "rendered": now,
        "target": None if run.target is None or len(run.metrics) > 1 else target_text(
            first_reached(records, run.metric, run.target, run.mode), run.metric,
            run.target, run.mode),
    }


def _best_info(record: TrialRecord) -> dict[str, Any]:
    lrs = [lr for e in record.evals if (lr := e.metric("lr")) is not None]
    return {
        "number": record.number, "value": record.ranked_value, "tokens": record.tokens,
        "plan": executed_plan(record), "config": dict(sorted(record.config.items())),
        "decisions": [f"{e.decision_label} in {stage_label(e)} at {e.eval.tokens:,} tokens"
                      for e in record.decisions],
        "lr": (lrs[0], min(lrs), lrs[-1]) if lrs else None,
        "branch": None if record.branch is None else {
            "parent": record.branch.parent, "stage": record.branch.stage,
            "tokens": record.branch.tokens, "lineage_tokens": record.lineage_tokens,
            "changed": sorted(record.continuation)},
    }


def summary_html(info: dict[str, Any]) -> str:
    parts = [f"<h1>Study <code>{escape(info['name'])}</code></h1>",
             f"<p class='sub'>{escape(info['path'])} · rendered "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(info['rendered']))}</p>"]
    if info["partial"]:
        parts.append(_partial_banner(info))
    parts.append(_facts(info))
    parts.append(_best_html(info["best"], info["metric"]) if info["best"] else
                 "<p class='note'>No trial has a result yet.</p>")
    return "\n".join(parts)


def _partial_banner(info: dict[str, Any]) -> str:
    running = (f", {info['still_running']} still running (their last evals are shown)"
               if info["still_running"] else "")
    return (f"<div class='partial'><b>Partial results:</b> {info['finished']} of "
            f"{info['requested']} trials finished{running}. The study is still running, or "
            "was interrupted (<code>autostage search --resume</code> continues it); render "
            "again for the latest.</div>")


def _facts(info: dict[str, Any]) -> str:
    chips = "".join(
        f"<span class='chip' style='border-color:{status_colour(s)}'>{n} {escape(s)}</span>"
        for s, n in sorted(info["counts"].items(), key=lambda kv: _status_rank(kv[0])))
    seconds = f"{info['seconds']:.0f} s" if info["seconds"] is not None else "-"
    share = (f" ({info['tokens_ranked'] / info['tokens']:.0%} of them in trials that gave a "
             "result)" if info["tokens"] else "")
    if info.get("budget"):
        share += f"; the token budget of {tokens(info['budget'])} was spent: the search ended"
    target = (f"<tr><th>target</th><td>{escape(info['target'])}</td></tr>"
              if info.get("target") else "")
    saved = (f"<tr><th>shared prefixes</th><td>{escape(saved_text(info['saved']))}</td></tr>"
             if info.get("saved") else "")
    return (f"<table class='facts'>{_objectives(info['objectives'])}"
            f"<tr><th>trials</th><td>{info['finished']} of {info['requested']} "
            f"finished {chips}</td></tr>"
            f"<tr><th>compute</th><td>{tokens(info['tokens'])} training tokens "
            f"({info['tokens']:,}){share}, {seconds} of wall time</td></tr>{saved}{target}"
            "</table>")


def _objectives(objectives: list[tuple[str, str]]) -> str:
    metrics = ", ".join(f"<code>{escape(metric)}</code> "
                        f"({'lower' if mode == 'min' else 'higher'} is better)"
                        for metric, mode in objectives)
    if len(objectives) == 1:
        return f"<tr><th>metric</th><td>{metrics}</td></tr>"
    return (f"<tr><th>metrics</th><td>{metrics} — no one trial is best in all: the Pareto "
            "front below has every trade-off; <i>Best</i> here is by the first</td></tr>")


def _status_rank(status: TrialStatus) -> int:
    return STATUS_ORDER.index(status)


def _best_html(best: dict[str, Any], metric: str) -> str:
    config = "".join(f"<tr><th>{escape(k)}</th><td>{escape(short(v))}</td></tr>"
                     for k, v in best["config"].items())
    lr = ("learning rate {:.3g} at its first eval, lowest {:.3g}, {:.3g} at the end"
          .format(*best["lr"]) if best["lr"] else "no learning rate recorded")
    decisions = ("; ".join(escape(d) for d in best["decisions"])
                 or "none (every stage ran to its token budget)")
    branch = best.get("branch")
    trained = f"{tokens(best['tokens'])} tokens" + (
        f" ({tokens(branch['lineage_tokens'])} with its prefix)" if branch else "")
    return (f"<div class='best'><h2>Best: trial {best['number']} — "
            f"<code>{escape(metric)}</code> = {best['value']:.4g}</h2>"
            f"<p><b>stage plan</b> <code>{escape(best['plan'])}</code> · "
            f"{trained} · {lr}</p>{_branch_html(branch)}"
            f"<p><b>stage-policy decisions</b>: {decisions}</p>"
            f"<table class='config'>{config}</table></div>")


def _branch_html(branch: dict[str, Any] | None) -> str:
    """Where a branched best trial started: its model is its parent's prefix, then its own."""
    if branch is None:
        return ""
    changed = ", ".join(f"<code>{escape(k)}</code>" for k in branch["changed"]) or "nothing"
    return (f"<p><b>branched</b> from trial {branch['parent']} at {branch['tokens']:,} tokens "
            f"(stage <code>{escape(branch['stage'])}</code>); changed: {changed}</p>")
