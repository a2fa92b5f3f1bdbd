"""What a person watching `autostage search` sees: a live panel on a terminal (rich), one line
per finished trial otherwise (CI logs, pipes), and the final summary."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from autostage.keys import PLAN_KEY
from autostage.records import TrialRecord, TrialStatus, best_trial


class QuietView:
    """A search view that draws nothing: for `run_search` from Python (benchmarks, notebooks)."""

    def start(self, study: Any, done: int, tokens: int) -> None: ...
    def note(self, lines: list[str]) -> None: ...
    def stop(self) -> None: ...
    def trial_started(self) -> None: ...
    def trial_result(self, number: int, tokens: int) -> None: ...
    def trial_ended(self, record: TrialRecord) -> None: ...


class SearchView:
    """Counts trials and tokens from the driver's callbacks; draws them."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.running = 0
        self.counts: dict[TrialStatus, int] = dict.fromkeys(TrialStatus, 0)
        # Only what the panel draws: tokens of the trials still running, the sum of the
        # ended ones, and the best record so far (a 1,000-trial search kept every record
        # and scanned them all 4 times a second).
        self.tokens: dict[int, int] = {}
        self.tokens_ended = 0
        self.best: TrialRecord | None = None
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

    def note(self, lines: list[str]) -> None:
        """Lines to show before the trials start (e.g. what a warm start did)."""
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True, markup=False)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def trial_started(self) -> None:
        with self.lock:
            self.running += 1

    def trial_result(self, number: int, tokens: int) -> None:
        with self.lock:
            self.tokens[number] = tokens

    def trial_ended(self, record: TrialRecord) -> None:
        with self.lock:
            self.running = max(0, self.running - 1)
            self.counts[record.status] += 1
            self.tokens.pop(record.number, None)
            self.tokens_ended += record.tokens
            # ties go to the trial that ended first, as best_trial over all of them did
            self.best = best_trial([r for r in (self.best, record) if r], self.mode)
        value = record.value
        shown = f"{value:.4g}" if isinstance(value, float) else "-"
        self.console.print(  # printed above the live panel on a terminal
            f"trial {record.number:>3} {record.status:<9} {self.metric} {shown:>8}  "
            f"plan {record.plan}{_branch_of(record)}  {record.reason}".rstrip(),
            highlight=False, soft_wrap=True, markup=False)

    def _finished(self) -> int:
        return self.done_before + sum(n for s, n in self.counts.items() if s.finished)

    def _panel(self) -> Table:
        with self.lock:
            finished, best = self._finished(), self.best
            spent = self.tokens_before + self.tokens_ended + sum(self.tokens.values())
            counts, running = dict(self.counts), self.running
        elapsed = time.time() - self.began
        fresh = finished - self.done_before
        eta = elapsed / fresh * (self.requested - finished) if fresh else math.nan
        table = Table.grid(padding=(0, 2))
        table.add_row("trials", f"{finished}/{self.requested} done  "
                      f"{running} running  {counts[TrialStatus.COMPLETED]} completed  "
                      f"{counts[TrialStatus.PRUNED]} pruned  {counts[TrialStatus.FAILED]} failed")
        table.add_row("best", escape(f"{self.metric} {best.value:.4g} (trial {best.number}, "
                                     f"plan {best.plan}{_branch_of(best, ', ')})")
                      if best else "-")
        table.add_row("tokens", f"{spent:,}")
        table.add_row("time", f"{elapsed:.0f} s elapsed" +
                      (f", ~{eta:.0f} s left" if math.isfinite(eta) else ""))
        return table


def print_summary(console: Console, outcome: Any, study: Any) -> None:
    """The end of a search: the best trial, its config, plan and decisions (several metrics:
    the Pareto front), the models kept, and where to look. `study`: the [study] section."""
    from autostage.models import keeping_order, kept_summary
    from autostage.rundir import RunDir

    records: list[TrialRecord] = outcome.records
    ended = "interrupted" if outcome.interrupted else "finished"
    console.print(f"\nstudy {ended}: {trial_counts(records)}, "
                  f"{sum(r.tokens for r in records):,} training tokens", highlight=False,
                  soft_wrap=True, markup=False)
    if outcome.interrupted:
        console.print("[yellow]interrupted[/]: continue with --resume")
    run = RunDir(outcome.run_dir)
    best = best_trial(records, study.modes[0])
    if best is None:
        console.print("no trial finished with a finite value")
    elif len(study.metrics) > 1:  # no one best: the trials no other beats in every metric
        print_front(console, keeping_order(records, study.modes), study.metrics)
    else:
        print_trial(console, best.with_evals(run.evals(best.number)), study.metrics)
    if (kept := kept_summary(run, study.keep_models, records)) is not None:
        console.print(kept, highlight=False, markup=False, soft_wrap=True)
    console.print(f"run directory: {outcome.run_dir}   (autostage best {outcome.run_dir})",
                  highlight=False, markup=False)


def trial_counts(records: list[TrialRecord]) -> str:
    """The trials by status, in words. An interrupted record is not a trial of the study's:
    its parameters were queued again (a resumed search, a trial the checkpoint store cut),
    so it is said apart, not counted — 16 trials, not "18" with 2 interrupted among them."""
    counts = {s: n for s in TrialStatus if (n := sum(r.status is s for r in records))}
    interrupted = counts.pop(TrialStatus.INTERRUPTED, 0)
    trials = sum(counts.values())
    parts = ", ".join(f"{n} {s.value}" for s, n in counts.items())
    if interrupted:
        parts += ("; " if parts else "") + (
            f"{interrupted} more {'was' if interrupted == 1 else 'were'} interrupted and "
            "re-queued")
    return f"{trials} {'trial' if trials == 1 else 'trials'}" + (f" ({parts})" if parts else "")


def print_trial(console: Console, record: TrialRecord, metrics: list[str],
                title: str = "best: ") -> None:
    """A trial's values, stage plan, parameters and stage-policy decisions (`record` with its
    evals, for the decisions)."""
    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False, soft_wrap=True)

    values = "  ".join(f"{m} = {_value(v)}"
                       for m, v in zip(metrics, record.values or (None,) * len(metrics),
                                         strict=False))
    prefix = f"; {record.lineage_tokens:,} with its prefix" if record.branch else ""
    say(f"{title}trial {record.number}  {values}  ({record.tokens:,} tokens{prefix})")
    if (branch := record.branch) is not None:
        changed = ", ".join(sorted(record.continuation)) or "nothing"
        say(f"  branched from trial {branch.parent} at {branch.tokens:,} tokens "
            f"(stage {branch.stage}); changed: {changed}")
    last = record.evals[-1].eval if record.evals else None
    if last is not None and last.restored is not None and last.restored_from is not None:
        say(f"  kept weights: its eval at {last.restored_from:,} tokens, restored by the stage "
            f"policy (its last eval, at {last.tokens:,}, measured worse)")
    say(f"  stage plan: {record.plan}")
    for key, value in sorted(record.config.items()):
        if key != PLAN_KEY:
            shown = f"{value:.4g}" if isinstance(value, float) else value
            say(f"  {key} = {shown}")
    for d in record.decisions:
        say(f"  decision at {d.eval.tokens:,} tokens in {d.eval.stage}: {d.decision_label}")


def print_front(console: Console, front: list[TrialRecord], metrics: list[str]) -> None:
    """The Pareto front of a multi-objective study: the trials no other trial beats in every
    metric, one row each."""
    console.print(f"Pareto front: {len(front)} trials no other trial beats in every metric",
                  highlight=False, markup=False, soft_wrap=True)
    table = Table(box=None)
    table.add_column("trial", justify="right")
    for metric in metrics:
        table.add_column(escape(metric), justify="right")
    table.add_column("plan")
    lineage = any(r.branch is not None for r in front)
    if lineage:
        table.add_column("branch of", justify="right")
    for record in front:  # every cell is markup to rich: user text is escaped
        parent = ([str(record.branch.parent) if record.branch else ""] if lineage else [])
        table.add_row(str(record.number), *map(_value, record.values), escape(record.plan),
                      *parent)
    console.print(table)


def _branch_of(record: TrialRecord, sep: str = "  ") -> str:
    """`branch of 3` for a trial that branched from trial 3 ("" for one that did not)."""
    return f"{sep}branch of {record.branch.parent}" if record.branch is not None else ""


def _value(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"  # tokens
    return f"{value:.4g}" if isinstance(value, float) else "no value"
