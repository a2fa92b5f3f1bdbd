"""A trial's time limit, kept in its Ray worker: a trial that hangs (a stuck data loader, a
plugin in an endless loop) would otherwise hold the search forever, since Ray hears nothing
from a trial until it reports.

The limit is `study.trial_time_limit` seconds, or by default one derived from the trial's own
pace: once it has trained some tokens, SLACK times its projected duration (elapsed time over
tokens trained, times the tokens its stage plan holds), at least FLOOR seconds; before its
first eval, FIRST seconds (a model download, a tokenizer to train). Past it, the worker leaves
the reason in Ray's key-value store (every node of a cluster reaches it; the driver's run
directory may be on another machine) and exits; the driver records the trial as failed with
that reason, and the search goes on.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from autostage.search import ray_internals

FIRST = 3600.0
FLOOR = 600.0
SLACK = 4.0


class TimeLimit(threading.Thread):
    """Watches one trial; `progress(tokens)` after every eval moves an automatic limit."""

    def __init__(self, key: str, limit: float | None, planned_tokens: int) -> None:
        super().__init__(daemon=True, name="autostage-time-limit")
        self.key, self.fixed = key, limit
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
        ray_internals.kv_put(self.key, reason.encode())
        print(f"autostage: {reason}", file=sys.stderr, flush=True)
        os._exit(3)  # a hung trial cannot be interrupted from here; Ray sees its worker end


def watch(search_id: str, number: int, limit: float | None) -> TimeLimit | None:
    """Start watching an attempt of trial `number` (None: `limit` is 0, no limit)."""
    key = _key(search_id, number)
    ray_internals.kv_del(key)  # an earlier attempt's
    if limit == 0:
        return None
    watcher = TimeLimit(key, limit, planned_tokens=0)
    watcher.start()
    return watcher


def reason(search_id: str, number: int) -> str | None:
    """Why trial `number`'s worker exited, when it was its time limit (in the driver)."""
    try:
        text = ray_internals.kv_get(_key(search_id, number))
    except Exception:  # a Ray whose key-value store moved: the error Ray recorded says more
        return None
    return text.decode() if text else None


def _key(search_id: str, number: int) -> str:
    return f"autostage/{search_id}/time-limit/{number}"
