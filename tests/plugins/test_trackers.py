"""The built-in trackers pass the tracker contract, read back with MLflow's client and
TensorBoard's event reader; a study lists trackers and validation names what is wrong with
them; a tracker that raises is one line, and the others go on."""

from __future__ import annotations

import pytest
from support.trackers import read_mlflow, read_tensorboard

from autostage.components import Tracker, TrackerRun
from autostage.host import load_registry
from autostage.testing import TrackerContract
from autostage.testing.tracker_contract import SESSION, contract_study, run_session
from autostage.trackers import Trackers
from autostage_plugins import trackers as builtin


class TestMLflow(TrackerContract):
    @pytest.fixture
    def component(self):
        return builtin.MLflow()

    @pytest.fixture
    def read_back(self):
        return read_mlflow


class TestTensorBoard(TrackerContract):
    @pytest.fixture
    def component(self):
        return builtin.TensorBoard()

    @pytest.fixture
    def read_back(self):
        return read_tensorboard


def test_mlflow_runs_carry_status_lineage_and_decisions(tmp_path, model_dir):
    run_session(builtin.MLflow(experiment="mine"), tmp_path, model_dir)
    from mlflow.tracking import MlflowClient
    from support.trackers import mlflow_uri

    client = MlflowClient(mlflow_uri(tmp_path))
    (experiment,) = [e for e in client.search_experiments() if e.name == "mine"]
    assert experiment.artifact_location == (tmp_path / "mlruns").resolve().as_uri()
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert sorted(runs) == ["trial 0", "trial 1", "trial 2"]
    tags = runs["trial 2"].data.tags
    assert (runs["trial 2"].info.status, tags["autostage.status"]) == ("FAILED", "failed")
    assert tags["autostage.reason"] == "the loss went non-finite"
    assert runs["trial 1"].data.tags["mlflow.parentRunId"] == runs["trial 0"].info.run_id
    first = runs["trial 0"].data.tags
    assert first["autostage.decision.2000"] == "advance"
    assert first["autostage.decision.4000"] == "scale_lr x0.5"
    assert first["autostage.stage.1"] == "target from 2000 tokens"
    assert runs["trial 0"].data.metrics["result.eval.target.loss"] == 1.2


def test_tensorboard_writes_one_event_folder_per_trial(tmp_path, model_dir):
    run_session(builtin.TensorBoard(), tmp_path, model_dir)
    assert sorted(p.name for p in (tmp_path / "tensorboard").iterdir()) == \
        [f"trial-{n}" for n in sorted(SESSION)]
    notes = read_tensorboard(tmp_path)[2].notes
    assert "outcome: failed (the loss went non-finite)" in notes


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "models" / "trial-0"
    folder.mkdir(parents=True)
    (folder / "toy-model.json").write_text("{}")
    return folder


# --- the study names them ---------------------------------------------------------------------


def _problems(monkeypatch, tmp_path, *sets):
    from support.studies import toy_study

    from autostage.check import load_study
    from autostage.errors import StudyError

    monkeypatch.setenv("AUTOSTAGE_LOAD_PLUGINS", "")
    path = tmp_path / "study.toml"
    path.write_text(toy_study())
    try:
        load_study(path, load_registry(), list(sets))
    except StudyError as e:
        return str(e)
    return ""


def test_a_study_lists_trackers_with_their_settings(monkeypatch, tmp_path):
    assert _problems(monkeypatch, tmp_path, 'study.trackers=["mlflow", "tensorboard"]',
                     'study.tracker_settings={mlflow = {experiment = "x"}}') == ""


def test_unknown_and_misconfigured_trackers_are_named(monkeypatch, tmp_path):
    text = _problems(monkeypatch, tmp_path, 'study.trackers=["mlflw", "tensorboard"]',
                     'study.tracker_settings={tensorboard = {logdir = 3}, wandb = {}}')
    assert "no tracker named 'mlflw'; did you mean 'mlflow'?" in text
    assert "study.tracker_settings.tensorboard.logdir" in text
    assert "settings for tracker 'wandb', which study.trackers does not list" in text


def test_a_tracker_whose_package_is_missing_names_the_pip_line(monkeypatch, tmp_path):
    monkeypatch.setattr("importlib.util.find_spec",
                        lambda name, *a: None if name == "mlflow" else object())
    text = _problems(monkeypatch, tmp_path, 'study.trackers=["mlflow"]')
    assert "tracker 'mlflow' needs the 'mlflow' package, which is not installed: " \
        "pip install mlflow-skinny" in text


# --- a tracker that raises ----------------------------------------------------------------------


class Broken(Tracker):
    def start(self, run_dir, study) -> TrackerRun:
        return BrokenRun()


class BrokenRun:
    def trial_started(self, number, params, branch):
        raise ConnectionError("tracking server away\nsecond line")

    eval = trial_ended = trial_started

    def close(self):
        pass


def test_a_tracker_that_raises_is_one_line_and_the_others_go_on(tmp_path):
    said = []
    good = builtin.TensorBoard().start(tmp_path, contract_study())
    trackers = Trackers({"broken": BrokenRun(), "tensorboard": good},
                        {"broken": "my_plugin", "tensorboard": "trackers"}, said.extend)
    params, branch, evals, *_ = SESSION[0]
    trackers.trial_started(0, params, branch)
    for record in evals:
        trackers.eval(0, record)
    trackers.close()
    assert said == [
        "tracker 'broken' (plugin 'my_plugin') raised in trial_started: ConnectionError: "
        "tracking server away; the search goes on (its further failures are counted)",
        f"tracker 'broken' failed {1 + len(evals)} times in this search (the first is shown "
        "above); what it logged is incomplete"]
    assert len(read_tensorboard(tmp_path)[0].metrics["lr"]) == len(evals)


def test_a_tracker_that_fails_to_start_is_left_out(tmp_path):
    class NoStart(Tracker):
        def start(self, run_dir, study):
            raise RuntimeError("no")

    class Registry:
        entries = {"tracker": {"nostart": type("E", (), {"plugin": "p"})}}

        def create(self, kind, name, settings):
            return NoStart()

    said = []
    study = contract_study().model_copy(update={"study": contract_study().study.model_copy(
        update={"trackers": ["nostart"]})})
    trackers = Trackers.open(Registry(), study, tmp_path, said.extend)
    assert trackers.runs == {}
    assert said == ["tracker 'nostart' (plugin 'p') failed to start: RuntimeError: no; "
                    "left out of this search"]


def test_trackers_may_be_listed_or_changed_on_resume(tmp_path):
    from autostage.rundir import RunDir, write_json
    from autostage.search_start import check_resume

    study = contract_study()
    run = RunDir(tmp_path / "run")
    dump = study.model_dump(mode="json")
    del dump["study"]["trackers"], dump["study"]["tracker_settings"]  # from before trackers
    write_json(run.study_json, {"study": dump, "overrides": []})
    with_trackers = study.model_copy(update={"study": study.study.model_copy(update={
        "trackers": ["mlflow"], "tracker_settings": {"mlflow": {"experiment": "x"}}})})
    check_resume(with_trackers, run)  # was: "the study changed ... in: study.trackers"
