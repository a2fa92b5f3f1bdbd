"""What a search does when its checkpoint store (object storage: `study.checkpoints`) stops
answering for a while.

Each of the store's own operations — a checkpoint uploaded with a report, a retry's or a
branch's download, a kept model moved into the run directory, a Ray Tuner's start — is tried
again with back-off (1 s, 2 s, 4 s ... at most 30 s apart) for PATIENCE_S from its first
failure. An outage shorter than that costs the trials waiting time only: nothing fails.

Past it the operation raises StoreUnavailable. The trial it cut is not a failure of its own:
the driver records it as interrupted (not finished, so not counted), queues its parameters
again, and goes on if the store answers by then; if it does not, the search ends with one line
saying so, every record kept, and `--resume` re-runs what the outage cut.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from autostage.errors import AutostageError, causes, first_line

#: seconds a store operation is retried from its first failure (AUTOSTAGE_STORE_PATIENCE_S
#: overrides); the try in flight when it runs out may take up to a minute more against an
#: endpoint that never answers (the S3 client's timeouts: checkpoint_store.s3_filesystem)
PATIENCE_S = 300.0
PATIENCE_ENV = "AUTOSTAGE_STORE_PATIENCE_S"
FIRST_WAIT_S, LONGEST_WAIT_S = 1.0, 30.0

T = TypeVar("T")


class StoreUnavailable(AutostageError):
    """The checkpoint store did not answer for the whole patience: not the trial's fault."""

    def __init__(self, where: str, seconds: float, error: BaseException | str) -> None:
        self.where, self.seconds, self.error = where, seconds, first_line(error)
        super().__init__(f"the checkpoint store {where} did not answer for {seconds:.0f} s "
                         f"({self.error}){ADVICE}")

    def __reduce__(self) -> tuple:
        # Ray copies and pickles a trial's error to carry it to the driver
        return StoreUnavailable, (self.where, self.seconds, self.error)


ADVICE = ("; continue the search with --resume once it answers: every trial recorded so far "
          "is kept, and the trials the outage cut are run again")


@dataclass
class StoreWatch:
    """What the driver knows of the store during one Ray Tuner."""

    down: StoreUnavailable | None = None  # it stayed away: the search ends (SearchEnd)
    requeued: int = 0  # trials the store cut, queued again: still to run in this search


def patience() -> float:
    """PATIENCE_S, or the seconds AUTOSTAGE_STORE_PATIENCE_S gives."""
    raw = os.environ.get(PATIENCE_ENV)
    if raw is None:
        return PATIENCE_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise AutostageError(f"{PATIENCE_ENV}={raw!r} is not a number of seconds; e.g. "
                             f"{PATIENCE_ENV}=600 (unset: {PATIENCE_S:.0f})")
    return seconds


def is_store_error(error: BaseException) -> bool:
    """Whether `error` is the store failing rather than the data: pyarrow turns a failed
    request (refused, timed out, HTTP 5xx, ...) into a plain OSError without an errno. A local
    disk's errors carry one (ENOSPC: not something waiting mends), and a missing object is
    a FileNotFoundError (deleted: waiting will not bring it back)."""
    return isinstance(error, OSError) and error.errno is None and not isinstance(
        error, (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
                NotADirectoryError))


def patiently(operation: Callable[[], T], where: str, seconds: float, what: str = "",
              sleep: Callable[[float], Any] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> T:
    """`operation()`, tried again with back-off while the store at `where` fails, for
    `seconds` from the first failure; then StoreUnavailable. Any other error is raised as it
    is. `what` (e.g. "trial 3: uploading a checkpoint") goes into the lines it prints."""
    deadline, wait = None, FIRST_WAIT_S
    while True:
        try:
            return operation()
        except Exception as e:
            if not is_store_error(e):
                raise
            now = clock()
            deadline = now + seconds if deadline is None else deadline
            if now >= deadline:
                raise StoreUnavailable(where, seconds, e) from None
            wait = min(wait, deadline - now)
            print(f"autostage: {what + ': ' if what else ''}the checkpoint store {where} "
                  f"failed ({first_line(e)}); trying again in {wait:.0f} s (gives up "
                  f"{deadline - now:.0f} s from now)", file=sys.stderr, flush=True)
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT_S)


def on_store(store: Any, seconds: float, what: str, operation: Callable[[], T]) -> T:
    """`operation()` on the checkpoint store `store`: retried for `seconds` while object
    storage fails (`patiently`); on a folder (or no store) run once, its errors the disk's."""
    if store is None or not store.remote:
        return operation()
    return patiently(operation, store.uri(store.path), seconds, what)


def wait_for(store: Any, seconds: float, what: str = "") -> None:
    """Return once the store answers a (quick) request, trying for `seconds`; else raise
    StoreUnavailable."""
    from autostage.checkpoint_store import quick

    filesystem = quick(store.filesystem)
    patiently(lambda: filesystem.get_file_info(store.path), store.uri(store.path), seconds,
              what)


def cut_by_store(error_text: str) -> str | None:
    """The store's failure in a trial's error (the text Ray keeps): StoreUnavailable's
    message, or the line of a store error a worker's operation raised without retries
    (an OSError of pyarrow's S3 client); None when the trial failed for its own reasons."""
    lines = [line.strip() for line in error_text.splitlines() if line.strip()]
    for line in reversed(lines):
        head, _, message = line.partition(": ")
        if head.endswith("StoreUnavailable"):
            return message.partition(ADVICE)[0].strip()  # (what to do is the driver's to say)
    last = next((line for line in reversed(lines)
                 if line.partition(":")[0].endswith(("Error", "Exception"))), "")
    if last.startswith("OSError:") and any(mark in last for mark in _S3_CLIENT_MARKS):
        return last.removeprefix("OSError:").strip()
    return None


# what pyarrow's S3 client writes into the OSError of a request that got no (good) answer
_S3_CLIENT_MARKS = ("AWS Error NETWORK_CONNECTION", "curlCode", "AWS Error SERVICE_UNAVAILABLE",
                    "AWS Error SLOW_DOWN", "AWS Error INTERNAL_FAILURE", "AWS Error UNKNOWN")


def store_error_in(error: BaseException) -> BaseException | str | None:
    """The store's failure `error` is or came from (its cause, or the text of the traceback
    Ray wraps errors in), or None."""
    for each in causes(error):
        if isinstance(each, StoreUnavailable) or is_store_error(each):
            return each
        if (cut := cut_by_store(str(each))) is not None:
            return cut
    return None
