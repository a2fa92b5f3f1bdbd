"""Ray's processes go with the `autostage search` that started them, however it ends.

A local Ray's helpers (the dashboard and runtime-env agents) outlive a SIGKILLed driver by a
minute: once their raylet is gone they try to tell the dead GCS why, with a 60 s timeout.
A watchdog process, started before Ray, reads a pipe from the driver; the driver's end closes
when the driver ends, for whatever reason (a kill too), and the watchdog then kills every
process it saw below the driver. It imports neither Ray nor autostage's search.

Run as `python -m autostage.watchdog DRIVER_PID` with the pipe on its stdin (`guard`).
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
from typing import Any

#: seconds between looks at the driver's processes (Ray starts its helpers in the first few)
LOOK_EVERY = 0.5


def guard() -> subprocess.Popen:
    """Start the watchdog of this process; keep the returned handle for as long as Ray runs
    (closing its stdin, or this process ending, sets the watchdog off)."""
    return subprocess.Popen([sys.executable, "-m", "autostage.watchdog", str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            # its own session: a Ctrl-C to the terminal's group must not end
                            # it before the driver has shut Ray down
                            start_new_session=True)


def release(watchdog: subprocess.Popen | None) -> None:
    """The driver is done with Ray: the watchdog kills what is left, then exits."""
    if watchdog is not None and watchdog.stdin is not None:
        watchdog.stdin.close()
        watchdog.wait(timeout=30)


def watch(driver_pid: int) -> None:
    import psutil

    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return
    seen: dict[int, Any] = {}
    while not _closed(sys.stdin.fileno()):
        try:
            seen.update((p.pid, p) for p in driver.children(recursive=True)
                        if p.pid != os.getpid())
        except psutil.NoSuchProcess:
            break
    for process in seen.values():
        with contextlib.suppress(psutil.Error):  # gone already
            process.kill()  # (psutil refuses a pid reused by a process started since)


def _closed(fd: int) -> bool:
    """Whether the driver's end of the pipe closed (waits up to LOOK_EVERY)."""
    ready, _, _ = select.select([fd], [], [], LOOK_EVERY)
    return bool(ready) and not os.read(fd, 1024)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
