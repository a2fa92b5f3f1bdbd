"""`study.target` in a real search (Ray Tune, Optuna, the toy trainer): the search stops at
the first trial that reaches it, says where, and a resume runs nothing more."""

import optuna
import pytest
from support.studies import toy_study

from autostage.cli import main
from autostage.records import TrialStatus
from autostage.rundir import RunDir
from autostage.target import REACHED

STUDY = toy_study(
    "study.name=target-test", "study.trials=8", "study.seed=1", "study.sampler=tpe",
    "study.trial_scheduler=asha", "data.target.difficulty=3.0", "stage.prereq.tokens=40_000",
    "stage.target.tokens=80_000", 'search.plan.skip=["prereq"]',
    "search.optimizer.adamw.lr={ low = 3e-4, high = 2e-2, log = true }",
    # the toy's target loss falls from ~5 to 2.3-2.5 by the end of a good plan: 3.0 is
    # reached inside the final stage, before the plan's end
    "study.target=3.0")


@pytest.mark.slow
def test_the_search_stops_at_the_first_trial_that_reaches_the_target(ray_session, tmp_path,
                                                                      capsys):
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    out = tmp_path / "run"
    assert main(["search", str(study), "--out", str(out)]) == 0
    records = RunDir(out).trials()
    winners = [r for r in records if r.reason.startswith(REACHED)]
    assert len(winners) == 1, [r.reason for r in records]
    winner = winners[0]
    assert winner.status == TrialStatus.COMPLETED and winner.value <= 3.0
    # it ended at the eval that reached the target, before its plan's end
    assert winner.evals[-1].eval.metrics["eval.target.loss"] <= 3.0
    assert all(e.eval.metrics["eval.target.loss"] > 3.0 for e in winner.evals[:-1])
    assert winner.evals[-1].eval.stage_tokens < winner.evals[-1].eval.stage_budget
    assert len(records) < 8  # the search stopped: the study asked for 8 trials
    stopped = f"stopped: trial {winner.number} reached the study's target"
    for other in records:
        if other is not winner and other.status != TrialStatus.COMPLETED:
            # ASHA may have stopped one before; any still running was stopped by the target
            assert other.status == TrialStatus.PRUNED
            assert other.reason in (stopped, "stopped early by the asha trial scheduler")
    said = capsys.readouterr().out
    assert "study finished" in said
    assert f"target eval.target.loss ≤ 3: reached by trial {winner.number}" in said
    # the report is not a partial one (the search ended as planned) and says the same
    html = (out / "report.html").read_text()
    assert f"reached by trial {winner.number}" in html and "Partial results" not in html
    # Optuna knows every trial's end: the winner's value, the stopped ones pruned
    trials = optuna.load_study(study_name="target-test",
                               storage=RunDir(out).storage_url).get_trials()
    by_number = {t.number: t for t in trials}
    assert by_number[winner.number].value == winner.value
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    # a resume has nothing left to do: the search reached what it was for
    assert main(["search", str(study), "--out", str(out), "--resume"]) == 0
    assert len(RunDir(out).trials()) == len(records)
    assert main(["best", str(out)]) == 0
    assert "the search stopped there" in capsys.readouterr().out


@pytest.mark.slow
def test_a_target_with_several_metrics_is_one_line_naming_the_field(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text(toy_study('study.metric=["eval.target.loss", "tokens"]',
                               'study.mode=["min", "min"]', "study.trial_scheduler=fifo",
                               "study.sampler=nsga2", "study.target=3.0"))
    assert main(["validate", str(study)]) == 2
    err = capsys.readouterr().err
    assert "study.target" in err and "Traceback" not in err


@pytest.mark.slow
def test_first_trials_run_before_the_sampler_proposes_any(ray_session, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text(toy_study(
        "study.name=first-test", "study.trials=3", "study.parallel=1", "study.seed=1",
        "study.trial_scheduler=fifo", "stage.prereq.tokens=20_000", "stage.target.tokens=20_000",
        'search.plan.skip=["prereq"]',
        "search.optimizer.adamw.lr={ low = 3e-4, high = 2e-2, log = true }",
        'study.first_trials=[{"optimizer.adamw.lr" = 1.25e-3, "plan.order" = "target"}, '
        '{"plan.order" = "prereq>target"}]'))
    out = tmp_path / "run"
    assert main(["search", str(study), "--out", str(out)]) == 0
    records = {r.number: r for r in RunDir(out).results()}
    assert records[0].config["optimizer.adamw.lr"] == 1.25e-3
    assert records[0].config["plan.order"] == "target"
    assert records[1].config["plan.order"] == "prereq>target"  # its LR sampled
    assert records[1].config["optimizer.adamw.lr"] != 1.25e-3
    assert len(records) == 3 and all(r.status.finished for r in records.values())
