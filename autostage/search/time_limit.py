"""A trial's time limit, kept in its Ray worker: a trial that hangs (a stuck data loader, a
plugin in an endless loop) would otherwise hold the search forever, since Ray hears nothing
from a trial until it reports.

The limit is `study.trial_time_limit` seconds, or by default one derived from the trial's own
pace: once it has trained some tokens, SLACK times its projected duration (elapsed time over
tokens trained, times the tokens its stage plan holds), at least FLOOR seconds; before its
first eval, FIRST seconds (a model download, a tokenizer to train). Past it, the worker leaves
the reason in the trial's directory and exits; the driver records the trial as failed with
that reason (`REASON_FILE`), and the search goes on.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

REASON_FILE = "time-limit.txt"
FIRST = 3600.0
FLOOR = 600.0
SLACK = 4.0


class TimeLimit(threading.Thread):
    """Watches one trial; `progress(tokens)` after every eval moves an automatic limit."""

    def __init__(self, workdir: Path, limit: float | None, planned_tokens: int) -> None:
        super().__init__(daemon=True, name="autostage-time-limit")
        self.workdir, self.fixed = workdir, limit
        self.planned = planned_tokens  # set once the trial's stage plan is known
        self.began = time.monotonic()
        self.deadline = self.began + (limit if limit is not None else FIRST)
        self.done = threading.Event()

    def progress(self, tokens: int) -> None:
        if self.fixed is None and tokens > 0:
            elapsed = time.monotonic() - self.began
            projected = elapsed * max(self.planned, tokens) / tokens  # this attempt's
            self.deadline = self.began + max(FLOOR, SLACK * projected)

    def stop(self) -> None:
        self.done.set()

    def run(self) -> None:
        while not self.done.wait(timeout=min(5.0, max(0.05, self.deadline - time.monotonic()))):
            if time.monotonic() >= self.deadline:
                self._expire()

    def _expire(self) -> None:
        limit = self.deadline - self.began
        how = ("study.trial_time_limit" if self.fixed is not None else
               f"the automatic limit: {SLACK:g}x its projected duration, at least "
               f"{FLOOR:,.0f} s; set study.trial_time_limit to change it, 0 for none")
        reason = f"the trial ran past its time limit of {limit:,.0f} s ({how})"
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / REASON_FILE).write_text(reason)
        print(f"autostage: {reason}", file=sys.stderr, flush=True)
        os._exit(3)  # a hung trial cannot be interrupted from here; Ray sees its worker end


def watch(workdir: Path, limit: float | None) -> TimeLimit | None:
    """Start watching a trial's attempt (None: `limit` is 0, no limit)."""
    (workdir / REASON_FILE).unlink(missing_ok=True)  # an earlier attempt's
    if limit == 0:
        return None
    watcher = TimeLimit(workdir, limit, planned_tokens=0)
    watcher.start()
    return watcher


def reason(workdir: Path) -> str | None:
    """Why the trial's worker exited, when it was its time limit."""
    try:
        return (workdir / REASON_FILE).read_text() or None
    except OSError:
        return None
