"""The `pasha` and `curve` trial schedulers in a real search (Ray Tune + Optuna, the toy FAKE
trainer): each stops trials before their last eval, says so in their records, leaves the
study a completed winner, and charges every trial what it trained."""

import pytest
from support import STUDIES

from autostage.cli import main
from autostage.records import TrialStatus
from autostage.rundir import RunDir


@pytest.mark.slow
@pytest.mark.parametrize("trial_scheduler", ["pasha", "curve"])
def test_a_stopping_rule_stops_trials_of_the_quickstart_study(ray_session, tmp_path,
                                                              trial_scheduler):
    out = tmp_path / "run"
    overrides = [f"study.trial_scheduler={trial_scheduler}", "study.trials=12",
                 "stage.target.eval_every=16384", "model.ledger=true"]  # 13 final-stage evals
    code = main(["search", str(STUDIES / "quickstart-toy.toml"), "--out", str(out),
                 *(arg for o in overrides for arg in ("--set", o))])
    run = RunDir(out)
    records = run.results()
    stopped = [r for r in records if r.status == TrialStatus.PRUNED]
    assert code == 0 and len(records) == 12 and stopped
    assert {r.reason for r in stopped} == \
        {f"stopped early by the {trial_scheduler} trial scheduler"}
    for r in stopped:  # before its last eval
        assert 0 < sum(e.eval.stage == "target" for e in run.events(r.number)) < 13
    assert TrialStatus.COMPLETED in {r.status for r in records}  # the study has a winner
    for r in records:  # the toy trainer's ledger: what it really trained, restarts included
        ledger = run.trial_dir(r.number) / "trained-tokens.log"
        trained = sum(int(n) for n in ledger.read_text().split()) if ledger.exists() else 0
        assert trained == r.tokens, r.number


@pytest.mark.slow
def test_population_with_auto_grace_places_its_rungs_and_stops_trials(ray_session, tmp_path):
    out = tmp_path / "run"
    overrides = ["study.trial_scheduler=population", "study.trials=12",
                 "study.trial_scheduler_settings={auto_grace = true, fresh = 1.0}",
                 "stage.target.eval_every=16384", "model.ledger=true"]  # 13 final-stage evals
    code = main(["search", str(STUDIES / "quickstart-toy.toml"), "--out", str(out),
                 *(arg for o in overrides for arg in ("--set", o))])
    records = RunDir(out).results()
    stopped = [r for r in records if r.status == TrialStatus.PRUNED]
    assert code == 0 and len(records) == 12 and stopped
    assert {r.reason for r in stopped} == {"stopped early by the population trial scheduler"}
    assert TrialStatus.COMPLETED in {r.status for r in records}
