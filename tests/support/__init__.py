"""Helpers the tests share: importable as `support` from any test folder (pyproject's
`[tool.pytest.ini_options] pythonpath` puts tests/ on sys.path; test modules themselves are
imported with `--import-mode=importlib`, so one never imports another).

- `support.studies`: the study files the tests write (a toy two-stage study and tiny
  transformers ones), built from one text each with `--set`-style overrides.
- `support.report_runs`: hand-made trial records and run directories for the report tests.
"""

import time
from pathlib import Path

#: the repository's root, and the folders tests read from it
REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "studies"
DOCS = REPO / "docs"
#: run directories of earlier versions, checked in (see tests/fixtures/README.md)
FIXTURES = REPO / "tests" / "fixtures"


def wait_for(ready, seconds: float, what: str, every: float = 0.2) -> None:
    """Poll `ready()` until it is true (an exception counts as not yet), or fail naming
    `what` after `seconds`: a server or cluster coming up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except Exception:
            pass
        time.sleep(every)
    raise AssertionError(f"{what} did not come up in {seconds:.0f} s")
