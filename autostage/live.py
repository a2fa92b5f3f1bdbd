"""What a person watching `autostage search` sees: a live panel on a terminal (rich), one line
per finished trial otherwise (CI logs, pipes), and the final summary."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from autostage.decisions import Eval, describe
from autostage.keys import PLAN_KEY, split_plan
from autostage.records import TrialRecord, TrialStatus, best_trial, prefix_tokens


class QuietView:
    """A search view that draws nothing: for `run_search` from Python (benchmarks, notebooks)."""

    def start(self, study: Any, done: int, tokens: int) -> None: ...
    def note(self, lines: list[str]) -> None: ...
    def stop(self) -> None: ...
    def trial_started(self, who: Any = None) -> None: ...
    def trial_result(self, number: int, tokens: int, ev: Eval | None = None,
                     who: Any = None) -> None: ...
    def trial_ended(self, record: TrialRecord) -> None: ...


@dataclass
class _Running:
    """What the panel shows of one running trial."""

    number: int
    plan: tuple[str, ...] = ()  # its stage plan (empty: not known yet)
    prefix: int = 0  # a branch: the tokens its lineage trained before its branch point
    charged: int = 0  # tokens it trained itself (a branch: after its branch point)
    ev: Eval | None = None  # its last eval
    started: float = 0.0  # when it started
    reported: float | None = None  # when its last eval came
    first: tuple[float, int] | None = None  # when its first eval came, and its tokens then

    def tokens(self) -> int:
        """Its lineage's tokens so far (a branch counts its prefix, as its plan does)."""
        return self.ev.tokens if self.ev is not None else self.prefix

    def left(self, stage_tokens: dict[str, int]) -> int:
        """Tokens still planned: the rest of its stage visit and the stages after it."""
        if self.ev is None:
            return max(0, sum(stage_tokens.get(s, 0) for s in self.plan) - self.prefix)
        ev, seen, after = self.ev, 0, ()
        for i, name in enumerate(self.plan):  # this visit's place in the plan
            if name == ev.stage:
                if seen == ev.visit:
                    after = self.plan[i + 1:]
                    break
                seen += 1
        # (a visit the plan does not name, after Advance(to=...): its own rest only)
        return max(0, ev.stage_budget - ev.stage_tokens) + \
            sum(stage_tokens.get(s, 0) for s in after)


class SearchView:
    """Counts trials and tokens from the driver's callbacks; draws them: a line per running
    trial (the `rows` furthest along; the rest folded into one line) and an estimate of the
    time left from the tokens trained per second so far and the tokens still planned.
    `clock`: time.time, or a scripted one in tests."""

    def __init__(self, console: Console | None = None, rows: int = 10,
                 clock: Callable[[], float] = time.time) -> None:
        self.console = console or Console()
        self.rows, self.clock = rows, clock
        self.lock = threading.Lock()
        self.live: Live | None = None
        self.running = self.peak = 0  # trials running now, and the most that ran at once
        self.counts: dict[TrialStatus, int] = dict.fromkeys(TrialStatus, 0)
        # Only what the panel draws: the trials still running, the tokens of the ended ones,
        # and the best record so far (a 1,000-trial search kept every record and scanned
        # them all 4 times a second).
        self.trials: dict[int, _Running] = {}
        self.tokens_ended = 0
        self.best: TrialRecord | None = None
        self.requested = self.done_before = self.tokens_before = 0
        self.budget: int | None = None
        self.stage_tokens: dict[str, int] = {}
        self.mode, self.metric = "min", ""
        self.began = clock()
        # the pace: tokens the trials trained, over the seconds they ran to their last eval
        # (a running trial's tokens are known at its evals only)
        self.trained_ended, self.seconds_ended = 0, 0.0
        self.planned_ended = 0  # what the ended trials' plans held (for `trained_ended`)
        # the training pace: tokens and seconds between each ended trial's first and last
        # eval; and each one's setup: seconds from its start to its first eval, tokens then
        self.paced: list[float] = [0, 0.0]
        self.setups: list[tuple[float, int]] = []

    def start(self, study: Any, done: int, tokens: int) -> None:
        self.requested, self.done_before, self.tokens_before = study.study.trials, done, tokens
        self.mode, self.metric = study.study.modes[0], study.study.metrics[0]
        self.budget = getattr(study.study, "token_budget", None)
        self.stage_tokens = {s.name: s.tokens for s in getattr(study, "stage", [])}
        self.began = self.clock()
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

    def trial_started(self, who: Any = None) -> None:
        """`who`: the trial's TrialIdentity (None: counted, not shown until it reports)."""
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            if who is not None:
                self._trial(who.number, who).started = self.clock()

    def trial_result(self, number: int, tokens: int, ev: Eval | None = None,
                     who: Any = None) -> None:
        """An eval of trial `number`: `tokens` it was charged so far, the eval itself."""
        with self.lock:
            trial, now = self._trial(number, who), self.clock()
            if trial.first is None or tokens < trial.charged:  # (a retry starts over)
                trial.first = (now, tokens)
            trial.charged, trial.reported = tokens, now
            if ev is not None:
                trial.ev = ev

    def _trial(self, number: int, who: Any) -> _Running:
        if (trial := self.trials.get(number)) is None:
            trial = self.trials[number] = _Running(number, started=self.began)
        if who is not None and not trial.plan:
            trial.plan = split_plan(str(who.params.get(PLAN_KEY, "")))
            trial.prefix = prefix_tokens(who.branch)
        return trial

    def trial_ended(self, record: TrialRecord) -> None:
        with self.lock:
            self.running = max(0, self.running - 1)
            self.counts[record.status] += 1
            trial = self.trials.pop(record.number, None)
            self.tokens_ended += record.tokens
            if trial is not None and record.status.finished:
                self.seconds_ended += self.clock() - trial.started
                self.trained_ended += record.tokens
                if trial.first is not None and trial.reported is not None:
                    self.paced[0] += trial.charged - trial.first[1]
                    self.paced[1] += trial.reported - trial.first[0]
                    self.setups.append((trial.first[0] - trial.started, trial.first[1]))
                self.planned_ended += self._planned(trial.plan) - prefix_tokens(record.branch) \
                    if trial.plan else record.tokens
            # ties go to the trial that ended first, as best_trial over all of them did
            self.best = best_trial([r for r in (self.best, record) if r], self.mode)
        value = record.value
        shown = f"{value:.4g}" if isinstance(value, float) else "-"
        self.console.print(  # printed above the live panel on a terminal
            f"trial {record.number:>3} {record.status:<9} {self.metric} {shown:>8}  "
            f"plan {record.plan}{_branch_of(record)}  {record.reason}".rstrip(),
            highlight=False, soft_wrap=True, markup=False)

    def _planned(self, plan: tuple[str, ...]) -> int:
        return sum(self.stage_tokens.get(s, 0) for s in plan)

    def _finished(self) -> int:
        return self.done_before + sum(n for s, n in self.counts.items() if s.finished)

    def seconds_left(self) -> float:
        """The time the search still needs, from what the trials so far measured: their
        pace (tokens per second between a trial's first and last eval) and their setup (the
        seconds before a trial's first eval that its tokens do not explain: building the
        model, reading the data). The work left is the running trials' planned rests, and for
        each trial not started yet a setup and the tokens of a plan — scaled by the share of
        their plans the ended trials trained (ASHA stops many early) — shared among the
        trials that run at once. NaN until a trial has reported twice (or ended)."""
        with self.lock:
            trials = list(self.trials.values())
            running = max(self.running, len(trials))
            waiting = max(0, self.requested - self._finished() - running)
            # as many at once as ran at most so far (between one trial's end and the next
            # one's start fewer run), fewer once fewer trials are left
            lanes = max(1, running, min(self.peak, running + waiting))
            reported = [t for t in trials if t.first is not None and t.reported is not None]
            tokens = self.paced[0] + sum(t.charged - t.first[1] for t in reported)
            seconds = self.paced[1] + sum(t.reported - t.first[0] for t in reported)
            setups = self.setups + [(t.first[0] - t.started, t.first[1]) for t in reported]
            trained_ended, seconds_ended = self.trained_ended, self.seconds_ended
            planned_ended = self.planned_ended
            spent = self.tokens_before + self.tokens_ended + sum(t.charged for t in trials)
        if tokens > 0 and seconds > 0:
            pace = tokens / seconds
            setup = sum(max(0.0, s - n / pace) for s, n in setups) / len(setups)
        elif trained_ended > 0 and seconds_ended > 0:  # trials of one eval: setup and all
            pace, setup = trained_ended / seconds_ended, 0.0
        else:
            return math.nan
        now = self.clock()
        work, left = 0.0, 0.0  # seconds of one trial's time, tokens (for the budget)
        for t in trials:
            rest = t.left(self.stage_tokens)
            if t.reported is not None:  # it trained on since its last eval, at the pace
                rest = max(0.0, rest - pace * (now - t.reported))
            else:
                work += max(0.0, setup - (now - t.started))
            work, left = work + rest / pace, left + rest
        plans = [self._planned(t.plan) for t in trials if t.plan]
        if waiting and plans:
            share = trained_ended / planned_ended if planned_ended > 0 else 1.0
            rest = waiting * sum(plans) / len(plans) * min(1.0, share)
            work, left = work + waiting * setup + rest / pace, left + rest
        if self.budget is not None and left > (cap := max(0, self.budget - spent)):
            work = cap / pace  # the budget ends the search first
        return work / lanes

    def _panel(self) -> RenderableType:
        now = self.clock()
        eta = self.seconds_left()
        with self.lock:
            finished, best = self._finished(), self.best
            trials = list(self.trials.values())
            spent = self.tokens_before + self.tokens_ended + sum(t.charged for t in trials)
            counts, running = dict(self.counts), max(self.running, len(trials))
        elapsed = now - self.began
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
        if not trials:
            return table
        return Group(table, self._running_table(trials, running))

    def _running_table(self, trials: list[_Running], running: int) -> Table:
        """A line per running trial, furthest along first; past `rows`, one line for the
        rest. Every cell that holds user text (stage names, a Stop's reason) is escaped."""
        def progress(t: _Running) -> float:
            planned = t.tokens() + t.left(self.stage_tokens)
            return t.tokens() / planned if planned else 0.0

        trials = sorted(trials, key=lambda t: (-progress(t), t.number))
        table = Table.grid(padding=(0, 2))
        for _ in range(5):
            table.add_column(no_wrap=True)
        for t in trials[:self.rows]:
            table.add_row(*self._line(t))
        if (more := running - min(len(trials), self.rows)) > 0:
            table.add_row(f"+ {more} more running")
        return table

    def _line(self, t: _Running) -> list[str]:
        planned = t.tokens() + t.left(self.stage_tokens)
        tokens = f"{t.tokens():,}/{planned:,} tokens" if planned else f"{t.tokens():,} tokens"
        if t.ev is None:
            return [f"trial {t.number}", "starting", tokens, "", ""]
        stage = t.ev.stage + (f" (visit {t.ev.visit + 1})" if t.ev.visit else "")
        value = _value(t.ev.current.get(self.metric, math.nan)) if \
            self.metric in t.ev.current else "-"
        decision = describe(t.ev.decision) if t.ev.decision is not None else ""
        return [f"trial {t.number}", escape(stage), tokens,
                escape(f"{self.metric} {value}"), escape(decision)]


def print_summary(console: Console, outcome: Any, study: Any) -> None:
    """The end of a search: the best trial, its config, plan and decisions (several metrics:
    the Pareto front), the models kept, and where to look. `study`: the [study] section."""
    from autostage.models import keeping_order, kept_summary
    from autostage.rundir import RunDir
    from autostage.target import study_target_text

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
    if (line := study_target_text(run, study)) is not None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
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
