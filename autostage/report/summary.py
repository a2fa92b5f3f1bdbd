"""The top of the report: what the study is, how far it got, what it spent, and the winner —
its configuration, stage plan and LR path — in words and numbers."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from autostage.report.records import StudyRun, executed_plan, metric_at, stage_label
from autostage.report.style import STATUS_ORDER, short, status_colour, tokens
from autostage.rundir import best_trial


def _summary_info(run: StudyRun, now: float) -> dict[str, Any]:
    records = run.records
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    spent = sum(int(r.get("tokens") or 0) for r in records)
    starts = [r["started"] for r in records if isinstance(r.get("started"), int | float)]
    ends = [r.get("ended") or now for r in records if isinstance(r.get("started"), int | float)]
    best = best_trial(records, run.mode)
    return {
        "name": run.name, "metric": run.metric, "mode": run.mode, "path": str(run.path),
        "requested": run.requested, "finished": run.finished, "running": run.running,
        "partial": run.partial, "counts": counts, "tokens": spent,
        "tokens_ranked": sum(int(r.get("tokens") or 0) for r in records
                             if r["status"] in ("completed", "stopped")),
        "seconds": max(ends) - min(starts) if starts else None,
        "best": _best_info(best) if best else None, "rendered": now,
    }


def _best_info(record: dict[str, Any]) -> dict[str, Any]:
    events = record.get("events", [])
    lrs = [metric_at(e, "lr") for e in events]
    lrs = [lr for lr in lrs if lr is not None]
    return {
        "number": record["number"], "value": record["value"], "tokens": record.get("tokens"),
        "plan": executed_plan(record), "config": dict(sorted(record.get("config", {}).items())),
        "decisions": [f"{d['decision']} in {stage_label(d)} at {d['tokens']:,} tokens"
                      for d in events if d.get("decision") not in ("continue", "", None)],
        "lr": (lrs[0], min(lrs), lrs[-1]) if lrs else None,
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
    running = (f", {info['running']} still running (their last evals are shown)"
               if info["running"] else "")
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
    goal = "lower" if info["mode"] == "min" else "higher"
    return (f"<table class='facts'>"
            f"<tr><th>metric</th><td><code>{escape(info['metric'])}</code> ({goal} is better)"
            f"</td></tr><tr><th>trials</th><td>{info['finished']} of {info['requested']} "
            f"finished {chips}</td></tr>"
            f"<tr><th>compute</th><td>{tokens(info['tokens'])} training tokens "
            f"({info['tokens']:,}){share}, {seconds} of wall time</td></tr></table>")


def _status_rank(status: str) -> int:
    return STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)


def _best_html(best: dict[str, Any], metric: str) -> str:
    config = "".join(f"<tr><th>{escape(k)}</th><td>{escape(short(v))}</td></tr>"
                     for k, v in best["config"].items())
    lr = ("learning rate {:.3g} at its first eval, lowest {:.3g}, {:.3g} at the end"
          .format(*best["lr"]) if best["lr"] else "no learning rate recorded")
    decisions = ("; ".join(escape(d) for d in best["decisions"])
                 or "none (every stage ran to its token budget)")
    return (f"<div class='best'><h2>Best: trial {best['number']} — "
            f"<code>{escape(metric)}</code> = {best['value']:.4g}</h2>"
            f"<p><b>stage plan</b> <code>{escape(best['plan'])}</code> · "
            f"{tokens(best['tokens'])} tokens · {lr}</p>"
            f"<p><b>stage-policy decisions</b>: {decisions}</p>"
            f"<table class='config'>{config}</table></div>")
