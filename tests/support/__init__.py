"""Helpers the tests share: importable as `support` from any test folder (pyproject's
`[tool.pytest.ini_options] pythonpath` puts tests/ on sys.path; test modules themselves are
imported with `--import-mode=importlib`, so one never imports another).

- `support.studies`: the study files the tests write (a toy two-stage study and tiny
  transformers ones), built from one text each with `--set`-style overrides.
- `support.report_runs`: hand-made trial records and run directories for the report tests.
"""

from pathlib import Path

#: the repository's root, and the folders tests read from it
REPO = Path(__file__).resolve().parents[2]
STUDIES = REPO / "studies"
DOCS = REPO / "docs"
#: run directories of earlier versions, checked in (see tests/fixtures/README.md)
FIXTURES = REPO / "tests" / "fixtures"
