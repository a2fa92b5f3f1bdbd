"""What a person watching `autostage search` sees: a live panel on a terminal (rich), one line
per finished trial otherwise (CI logs, pipes), and the final summary."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from autostage.rundir import best_trial


class QuietView:
    """A search view that draws nothing: for `run_search` from Python (benchmarks, notebooks)."""

    def start(self, study: Any, done: int, tokens: int) -> None: ...
    def stop(self) -> None: ...
    def trial_started(self) -> None: ...
    def trial_result(self, result: dict[str, Any]) -> None: ...
    def trial_ended(self, record: dict[str, Any]) -> None: ...


class SearchView:
    """Counts trials and tokens from the driver's callbacks; draws them."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.counts = {"running": 0, "completed": 0, "stopped": 0, "failed": 0, "pruned": 0}
        self.tokens: dict[int, int] = {}
        self.records: list[dict[str, Any]] = []
        self.requested = self.done_before = self.tokens_before = 0
        self.mode, self.metric, self.began = "min", "", time.time()

    def start(self, study: Any, done: int, tokens: int) -> None:
        self.requested, self.done_before, self.tokens_before = study.study.trials, done, tokens
        self.mode, self.metric = study.study.modes[0], study.study.metrics[0]
        self.began = time.time()
        if self.console.is_terminal:
            self.live = Live(self._panel(), console=self.console, refresh_per_second=4,
                             get_renderable=self._panel, transient=True)
            self.live.start()
        elif done:
            self.console.print(f"resuming: {done} of {self.requested} trials already finished")

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def trial_started(self) -> None:
        with self.lock:
            self.counts["running"] += 1

    def trial_result(self, result: dict[str, Any]) -> None:
        with self.lock:
            self.tokens[int(result["trial_number"])] = int(result.get("tokens", 0))

    def trial_ended(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.counts["running"] = max(0, self.counts["running"] - 1)
            self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
            self.tokens[record["number"]] = int(record.get("tokens") or 0)
            self.records.append(record)
        value = record.get("value")
        shown = f"{value:.4g}" if isinstance(value, float) else "-"
        self.console.print(  # printed above the live panel on a terminal
            f"trial {record['number']:>3} {record['status']:<9} {self.metric} {shown:>8}  "
            f"plan {record.get('plan', '')}  {record.get('reason', '')}".rstrip(),
            highlight=False, soft_wrap=True)

    def _finished(self) -> int:
        return self.done_before + sum(v for k, v in self.counts.items() if k != "running")

    def _panel(self) -> Table:
        with self.lock:
            finished, best = self._finished(), best_trial(self.records, self.mode)
            spent = self.tokens_before + sum(self.tokens.values())
            counts = dict(self.counts)
        elapsed = time.time() - self.began
        fresh = finished - self.done_before
        eta = elapsed / fresh * (self.requested - finished) if fresh else math.nan
        table = Table.grid(padding=(0, 2))
        table.add_row("trials", f"{finished}/{self.requested} done  "
                      f"{counts['running']} running  {counts['completed']} completed  "
                      f"{counts['pruned']} pruned  {counts['failed']} failed")
        table.add_row("best", f"{self.metric} {best['value']:.4g} (trial {best['number']}, "
                      f"plan {best.get('plan', '')})" if best else "-")
        table.add_row("tokens", f"{spent:,}")
        table.add_row("time", f"{elapsed:.0f} s elapsed" +
                      (f", ~{eta:.0f} s left" if math.isfinite(eta) else ""))
        return table


def print_summary(console: Console, outcome: Any, mode: str, metric: str) -> None:
    """The end of a search: the best trial, its config, plan and decisions, and where to look."""
    records = outcome.records
    statuses: dict[str, int] = {}
    for r in records:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    tokens = sum(r.get("tokens") or 0 for r in records)
    console.print(f"\nstudy finished: {len(records)} trials ("
                  + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
                  + f"), {tokens:,} training tokens", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: continue with --resume")
    best = best_trial(records, mode)
    if best is None:
        console.print("no trial finished with a finite value")
    else:
        print_trial(console, best, metric)
    console.print(f"run directory: {outcome.run_dir}   (autostage best {outcome.run_dir})",
                  highlight=False)


def print_trial(console: Console, record: dict[str, Any], metric: str) -> None:
    console.print(f"best: trial {record['number']}  {metric} = {record['value']:.4g}  "
                  f"({record.get('tokens', 0):,} tokens)", highlight=False)
    console.print(f"  stage plan: {record.get('plan', '')}", highlight=False)
    for key, value in sorted(record.get("config", {}).items()):
        if key != "plan.order":
            shown = f"{value:.4g}" if isinstance(value, float) else value
            console.print(f"  {key} = {shown}", highlight=False, markup=False)
    for d in record.get("decisions", []):
        console.print(f"  decision at {d['tokens']:,} tokens in {d['stage']}: {d['decision']}",
                      highlight=False)
