"""Every built-in trial scheduler, in real searches (Ray Tune + Optuna, the toy FAKE trainer):
it stops what it says it stops, and no trial trains a token its record does not charge."""

import sys

import optuna
import pytest
from support import STUDIES

from autostage import load_registry, load_study
from autostage.cli import main
from autostage.components import TrialScheduler
from autostage.errors import AutostageError
from autostage.hookspecs import hookimpl
from autostage.records import TrialStatus
from autostage.rundir import RunDir
from autostage.search_start import start_search


def search(tmp_path, study, *overrides):
    out = tmp_path / "run"
    sets = [arg for o in overrides for arg in ("--set", o)]
    code = main(["search", str(study), "--out", str(out), *sets])
    return code, RunDir(out)


def trained(run, number):
    """The tokens the toy trainer really trained for trial `number` (its ledger), retries and
    restarts included."""
    ledger = run.trial_dir(number) / "trained-tokens.log"
    return sum(int(line) for line in ledger.read_text().split()) if ledger.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("trial_scheduler", ["fifo", "asha", "hyperband", "median"])
def test_no_trial_scheduler_trains_tokens_the_records_do_not_charge(ray_session, tmp_path,
                                                                    trial_scheduler):
    code, run = search(tmp_path, STUDIES / "quickstart-toy.toml",
                       f"study.trial_scheduler={trial_scheduler}", "model.ledger=true",
                       "study.trials=12")
    records = run.results()
    assert code == 0 and len(records) == 12
    assert [(r.number, trained(run, r.number)) for r in records] == \
        [(r.number, r.tokens) for r in records]


@pytest.mark.slow
def test_hyperband_stops_weak_trials_of_the_quickstart_study(ray_session, tmp_path):
    code, run = search(tmp_path, STUDIES / "quickstart-toy.toml",
                       "study.trial_scheduler=hyperband")
    stopped = [r for r in run.results() if r.status == TrialStatus.PRUNED]
    assert code == 0 and stopped
    assert all("hyperband" in r.reason for r in stopped)


class Pauser(TrialScheduler):
    """A third-party trial scheduler that pauses every trial at its first final-stage eval."""

    def build(self, metric, mode, time_attr, max_t):
        from ray.tune.schedulers import FIFOScheduler

        class Pausing(FIFOScheduler):
            def on_trial_result(self, controller, trial, result):
                return self.PAUSE

        return Pausing()


@hookimpl
def register_trial_schedulers(register):
    register("pauser", Pauser)


@pytest.mark.slow
def test_a_trial_scheduler_that_pauses_is_refused_in_one_line(ray_session, tmp_path, capsys):
    registry = load_registry(plugins=[sys.modules[__name__]])
    path = STUDIES / "quickstart-toy.toml"
    overrides = ["study.trial_scheduler=pauser", "study.trials=3", "model.ledger=true"]
    study = load_study(path, registry, overrides)
    run = RunDir(tmp_path / "run")
    with pytest.raises(AutostageError, match=r"trial scheduler 'pauser' paused trial \d+: "
                       "autostage trial schedulers may only CONTINUE or STOP"):
        start_search(str(path), study, registry, overrides, run, resume=False, address=None,
                     verbose=False)
    for record in run.results():  # whatever ran is charged for what it trained
        assert trained(run, record.number) == record.tokens


@pytest.mark.slow
@pytest.mark.parametrize("stopper", ["asha", "token_budget"])
def test_pruned_and_failed_records_agree_with_optuna(ray_session, tmp_path, stopper):
    """A pruned trial's record gives the value Optuna stores for it (its metric at its last
    eval), and every record its seed, whoever stopped the trial."""
    settings = (["study.trial_scheduler=asha"] if stopper == "asha" else
                ["study.trial_scheduler=fifo", "study.token_budget=900000", "study.parallel=1"])
    code, run = search(tmp_path, STUDIES / "quickstart-toy.toml", *settings)
    records = run.results()
    stored = {t.number: t for t in optuna.load_study(
        study_name="quickstart-toy", storage=run.storage_url).get_trials()}
    pruned = [r for r in records if r.status == TrialStatus.PRUNED]
    assert code == 0 and pruned and TrialStatus.FAILED in {r.status for r in records}
    for r in records:
        assert r.seed == r.number  # study.seed = 0
        assert stored[r.number].value == (r.value if r.status.finished else None)
    for r in pruned:
        assert r.value == run.events(r.number)[-1].eval.current["eval.target.loss"]
        steps = stored[r.number].intermediate_values
        assert steps and steps[max(steps)] == r.value  # Optuna's own pruned-trial rule
        assert r.ranked_value is None  # a value, but never ranked


@pytest.mark.slow
def test_a_trial_whose_outcome_spends_the_token_budget_is_recorded_as_finished(ray_session,
                                                                              tmp_path):
    code, run = search(tmp_path, STUDIES / "quickstart-toy.toml", "study.trials=20",
                       "study.token_budget=600000", "study.trial_scheduler=fifo")
    records = [r.with_evals(run.evals(r.number)) for r in run.results()]
    assert code == 0 and sum(r.tokens for r in records) >= 600_000
    for r in records:
        last = r.evals[-1].eval if r.evals else None
        trained_out = last is not None and last.stage == "target" and \
            last.stage_tokens >= last.stage_budget
        if trained_out:  # it trained its whole plan: it completed, whatever came after
            assert r.status == TrialStatus.COMPLETED, r
    assert len(list((run.path / "models").iterdir())) <= 1  # keep_models = 1
