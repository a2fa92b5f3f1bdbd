"""A real search (Ray Tune + Optuna, the toy FAKE trainer, a branching population) logs every
trial to MLflow and TensorBoard from its driver; their own readers (MLflow's client API,
TensorBoard's event reader) read back the parameters, every eval at its step, the stage
starts and decisions, the parent run of each branch and the kept model."""

from __future__ import annotations

import pytest
from support.studies import toy_study
from support.trackers import read_mlflow, read_tensorboard

from autostage.cli import main
from autostage.rundir import RunDir

POPULATION = ["study.trial_scheduler=population",
              "study.trial_scheduler_settings={quantile = 0.25, fresh = 0.2}"]


@pytest.fixture(scope="module")
def tracked(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("tracked") / "run"
    path = out.parent / "study.toml"
    path.write_text(toy_study())
    sets = [*POPULATION, "study.trials=10", "study.keep_models=2",
            'study.trackers=["mlflow", "tensorboard"]',
            "search.stage_policy.plateau={patience = [1]}"]
    assert main(["search", str(path), "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    run = RunDir(out)
    return run, read_mlflow(out, experiment="toy"), read_tensorboard(out)


@pytest.mark.slow
def test_every_trial_is_a_run_with_its_parameters_and_evals(tracked):
    run, mlflow, tensorboard = tracked
    records = {r.number: r for r in run.trials()}
    for logged in (mlflow, tensorboard):
        assert sorted(logged) == sorted(records)
        for number, record in records.items():
            assert logged[number].params == {k: str(v) for k, v in record.config.items()}
            steps = [e.eval.tokens for e in record.evals]
            for key in ("eval.target.loss", "lr"):
                got = logged[number].metrics[key]
                assert [step for step, _ in got] == steps, (number, key)
                assert [v for _, v in got] == pytest.approx(
                    [e.metric(key) for e in record.evals]), (number, key)


@pytest.mark.slow
def test_branches_name_their_parent_runs(tracked):
    run, mlflow, tensorboard = tracked
    branched = {r.number: r.branch.parent for r in run.trials() if r.branch is not None}
    assert branched, "the population search branched no trial"
    for logged in (mlflow, tensorboard):
        assert {n: t.parent for n, t in logged.items() if t.parent is not None} == branched


@pytest.mark.slow
def test_stage_starts_outcomes_and_decisions_are_noted(tracked):
    run, mlflow, tensorboard = tracked
    for record in run.results():
        for logged in (mlflow[record.number], tensorboard[record.number]):
            assert record.status.value in logged.notes
            for ev in record.evals:
                if ev.decision_label not in ("", "continue"):
                    assert ev.decision_label in logged.notes, record.number
            stages = {ev.eval.stage for ev in record.evals}
            assert all(stage in logged.notes for stage in stages)


@pytest.mark.slow
def test_the_kept_models_are_mlflow_artifacts(tracked):
    run, mlflow, _ = tracked
    kept = run.kept_models()
    assert kept
    for number in kept:  # the best at the end were among the best as they ended
        assert mlflow[number].model_files == ["model/toy-model.json"]
