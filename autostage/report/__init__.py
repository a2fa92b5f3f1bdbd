"""The study report: `autostage report RUN_DIR` writes one HTML file of Plotly figures.

Every figure is a pure function of the run's records — `autostage.records.TrialRecord`s, as
`RunDir.trials()` reads them — (`_best_so_far_info(records, mode)` and the like, in the modules
here) and a thin plotting function of that data (`plot_best_so_far`); the tests assert on the
data. Plugins add figures through the `report_figures(records)` hook, given the same records.
A report can be written while the study runs: trials without a result are shown as running.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

__all__ = ["build_report", "write_report"]


def write_report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 *, cdn: bool = False, host: Any = None) -> Path:
    """Write the report of `run_dir` to `out` (default `run_dir/report.html`); return where.

    `host` is the plugin host whose `report_figures` hooks are called (default: the
    installed plugins)."""
    from autostage.errors import AutostageError
    from autostage.rundir import write_shared_text

    target = Path(out) if out is not None else Path(run_dir) / "report.html"
    page = build_report(run_dir, cdn=cdn, host=host)
    try:
        write_shared_text(target, page)  # a browser may be re-loading it: never torn
    except OSError as e:  # a full disk, a folder made read-only since the command's checks
        raise AutostageError(f"cannot write the report {target}: {e.strerror or e}; give "
                             "-o FILE in a folder you can write, with room for it") from None
    return target


def build_report(run_dir: str | os.PathLike[str], *, cdn: bool = False, host: Any = None,
                 now: float | None = None) -> str:
    """The report page of `run_dir`, as HTML."""
    from autostage.report.page import render
    from autostage.report.sections import sections
    from autostage.report.study_run import load_run
    from autostage.report.summary import _summary_info, summary_html

    run = load_run(run_dir)
    now = time.time() if now is None else now
    if host is None:
        from autostage.host import plugin_manager

        host = plugin_manager()
    top = summary_html(_summary_info(run, now))
    return render(f"autostage report: {run.name}", top, sections(run, host, now), cdn=cdn)


