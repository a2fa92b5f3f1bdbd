"""`autostage.search(study, ...)`, the Python API of a search (autostage/api.py): the CLI's
own code path, returning a SearchResult (records, best, a DataFrame, the report); errors are
exceptions with the CLI's lines, never an exit; it runs twice in one process, from a fresh
process (the notebook example: Ray started and stopped by each search) and inside a Ray the
process already runs (left running)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.studies import toy_study

import autostage
from autostage.api import NoTrialValue, SearchResult, search_overrides
from autostage.cli import main
from autostage.decisions import Eval
from autostage.errors import AutostageError, StudyError
from autostage.records import EvalRecord, TrialRecord, TrialStatus
from autostage.rundir import RunDir

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "run-b659e5d"


def write_study(tmp_path: Path, *sets: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(toy_study("study.name=api", *sets))
    return path


def record(number: int, status=TrialStatus.COMPLETED, values=(1.0,), **config) -> TrialRecord:
    return TrialRecord(number, status, "" if status.ranked else "crashed", values, tokens=100,
                       seed=number, config={"optimizer": "adamw", **config})


@pytest.fixture
def fake_search(monkeypatch):
    """The search itself replaced (no Ray): it writes `records` into the run directory as the
    driver would, and records how it was called."""
    import autostage.search

    calls = []
    state = SimpleNamespace(records=[record(0, values=(2.0,)), record(1, values=(1.5,)),
                                     record(2, TrialStatus.FAILED, None)], calls=calls)

    def run_search(study, registry, run, *, resume, address, view, **_):
        calls.append(SimpleNamespace(study=study, run=run, resume=resume, address=address))
        for r in state.records:
            ev = Eval("target", 0, 100, 100, 100, 1e-3, {"eval.target.loss": 1.0},
                      "eval.target.loss")
            run.append_event(r.number, EvalRecord(ev, time=1.0))
            run.write_result(r)
        return SimpleNamespace(records=run.results(), interrupted=False, run_dir=run.path)

    monkeypatch.setattr(autostage.search, "run_search", run_search)
    monkeypatch.setattr(autostage.search, "local_resources", lambda: (2.0, lambda: 0.0))
    return state


def test_a_search_returns_its_records_best_trial_and_a_dataframe(tmp_path, fake_search):
    study = write_study(tmp_path)
    result = autostage.search(study, trials=3, parallel=1, out=tmp_path / "run",
                              sets=["study.seed=4"], quiet=True)
    assert isinstance(result, SearchResult) and result.path == tmp_path / "run"
    assert [r.number for r in result.records] == [0, 1, 2]
    assert all(len(r.evals) == 1 for r in result.records)  # with their evals
    assert result.best.number == 1 and result.metrics == ("eval.target.loss",)
    ran = fake_search.calls[0].study.study
    assert (ran.trials, ran.parallel, ran.seed) == (3, 1, 4)
    assert RunDir(result.path).settings()["overrides"] == \
        ["study.seed=4", "study.trials=3", "study.parallel=1"]
    trials = result.trials
    assert list(trials.columns[:11]) == ["number", "status", "value", "tokens", "plan",
                                         "parent", "seed", "reason", "started", "ended",
                                         "optimizer"]
    assert trials["status"].tolist() == ["completed", "completed", "failed"]
    assert trials["value"].tolist()[:2] == [2.0, 1.5] and trials["value"].isna().tolist()[2]
    assert (result.path / "report.html").exists()
    assert result.report(tmp_path / "elsewhere.html") == tmp_path / "elsewhere.html"


def test_it_runs_twice_in_one_process_and_after_the_search_package_is_imported(
        tmp_path, fake_search):
    import autostage.search.messages  # Python sets autostage.search to the package: still callable

    study = write_study(tmp_path)
    first = autostage.search(study, out=tmp_path / "a", quiet=True)
    from autostage import search

    second = search(study, out=tmp_path / "b", quiet=True)
    again = autostage.search(study, trials=4, out=tmp_path / "a", resume=True, quiet=True)
    assert first.path != second.path and again.path == first.path
    assert [c.resume for c in fake_search.calls] == [False, False, True]


def test_the_cli_search_is_the_same_function(tmp_path, monkeypatch, capsys):
    import autostage.api

    seen = {}

    def fake(study, **options):
        seen.update(options, study=study)
        return SimpleNamespace(interrupted=options["trials"] == 9)

    monkeypatch.setattr(autostage.api, "search", fake)
    args = ["search", "s.toml", "--trials", "3", "--parallel", "2", "--out", "o", "--resume",
            "--address", "auto", "--checkpoints", "s3://b/p", "--set", "study.seed=1", "-v"]
    assert main(args) == 0
    assert seen == {"study": "s.toml", "trials": 3, "parallel": 2, "out": "o", "resume": True,
                    "address": "auto", "checkpoints": "s3://b/p", "sets": ["study.seed=1"],
                    "verbose": True}
    assert main(["search", "s.toml", "--trials", "9"]) == 130  # interrupted

    def found_nothing(study, **options):
        raise NoTrialValue("no trial produced a value; most common reason (2 of 2 trials): x",
                           result=None)

    monkeypatch.setattr(autostage.api, "search", found_nothing)
    capsys.readouterr()
    assert main(["search", "s.toml"]) == 1
    assert capsys.readouterr().err == \
        "error: no trial produced a value; most common reason (2 of 2 trials): x\n"


def test_no_trial_with_a_value_raises_with_the_records_attached(tmp_path, fake_search):
    fake_search.records = [record(0, TrialStatus.FAILED, None), record(1, TrialStatus.FAILED,
                                                                       None)]
    with pytest.raises(NoTrialValue) as failed:
        autostage.search(write_study(tmp_path), out=tmp_path / "run", quiet=True)
    assert str(failed.value) == "no trial produced a value; most common reason (2 of 2 " \
        "trials): crashed"
    assert [r.number for r in failed.value.result.records] == [0, 1]


def test_a_bad_study_raises_the_lines_the_cli_prints_and_writes_nothing(tmp_path, capsys):
    study = write_study(tmp_path, "study.trails=4", "study.sampler=tpee")
    with pytest.raises(StudyError) as bad:
        autostage.search(study, out=tmp_path / "run")
    assert len(bad.value.problems) == 2
    assert main(["search", str(study), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == str(bad.value) + "\n"
    assert not (tmp_path / "run").exists()


def test_a_refused_run_directory_is_one_line_as_in_the_cli(tmp_path, capsys):
    study = write_study(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(AutostageError) as refused:
        autostage.search(study, out=tmp_path / "file")
    assert "\n" not in str(refused.value) and "is a file" in str(refused.value)
    assert main(["search", str(study), "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"error: {refused.value}\n"
    with pytest.raises(AutostageError, match="holds no search to resume"):
        autostage.search(study, out=tmp_path / "new", resume=True)


def test_overrides_mirror_the_cli_and_one_set_may_be_given_bare():
    assert search_overrides("study.seed=3", trials=2) == ["study.seed=3", "study.trials=2"]
    assert search_overrides(["a=1"], parallel=2, checkpoints="s3://b/p") == \
        ["a=1", "study.parallel=2", 'study.checkpoints="s3://b/p"']


def test_an_earlier_run_of_version_1_opens_as_a_result():
    result = SearchResult.open(str(FIXTURE))
    assert [r.number for r in result.records] == list(range(6))
    trials = result.trials
    assert len(trials) == 6 and "optimizer.sgd.lr" in trials.columns
    assert result.best.number == trials.loc[trials["value"].idxmin(), "number"]


def test_a_multi_metric_study_gives_its_pareto_front(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_settings({"study": {"metric": ["eval.target.loss", "tokens"],
                                  "mode": ["min", "min"]}}, [], "study.toml")
    for r in (record(0, values=(1.0, 300)), record(1, values=(2.0, 100)),
              record(2, values=(2.5, 200))):
        run.write_result(r)
    result = SearchResult.open(run)
    assert [r.number for r in result.best] == [0, 1]
    trials = result.trials
    assert trials["value.tokens"].tolist() == [300, 100, 200]
    assert trials["value"].tolist() == trials["value.eval.target.loss"].tolist()


def test_trials_without_pandas_says_how_to_install_it(monkeypatch):
    result = SearchResult.open(FIXTURE)
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(ImportError, match=r"pip install pandas"):
        _ = result.trials
    assert len(result.records) == 6  # the records need no pandas


def test_a_folder_that_is_no_run_is_one_line(tmp_path):
    with pytest.raises(AutostageError, match="is not a run directory"):
        SearchResult.open(tmp_path)


# --- with Ray --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_notebook_example_searches_twice_in_a_fresh_process(tmp_path):
    """Each search starts Ray and stops it; the second, in the same process, starts it anew."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, str(REPO / "examples" / "notebook_search.py"),
                           str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert f"6 trials in {out}" in lines and "now 8 trials" in done.stdout
    assert any(line.startswith("best: trial ") and "eval.target.loss = " in line
               for line in lines)
    assert any(line.split()[:2] == ["number", "status"] for line in lines)
    assert "study.trails: unknown key 'trails'; did you mean 'trials'?" in done.stdout
    assert f"report: {out / 'report.html'}" in lines
    assert len(RunDir(out).results()) == 8 and not (tmp_path / "never").exists()


@pytest.mark.slow
def test_a_search_uses_the_ray_this_process_runs_and_leaves_it_running(ray_session, tmp_path):
    import ray

    study = write_study(tmp_path)
    first = autostage.search(study, out=tmp_path / "a", quiet=True)
    second = autostage.search(study, trials=3, out=tmp_path / "b", quiet=True)
    assert ray.is_initialized()
    assert [len(first.records), len(second.records)] == [2, 3]
    assert all(r.status == TrialStatus.COMPLETED and r.evals for r in second.records)
    assert second.best is not None and second.trials["value"].notna().all()
