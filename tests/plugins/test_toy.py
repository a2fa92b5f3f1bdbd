"""The toy trainer (a fake): its curves must respond to strategy the way real training does,
or the policies and searches tested on it would prove nothing."""

import pytest

from autostage import load_study, prepare_trial, sample_config
from autostage.keys import PLAN_KEY
from autostage.records import TrialStatus

QUICKSTART = "studies/quickstart-toy.toml"
FIXED = ["search.stage_policy={}", "search.lr_schedule={}", "study.name=fixed",
         "search.optimizer={adamw = {lr = 3e-3}}", "stage.target.data=target"]


def run(registry, *overrides, seed=0, plan=None):
    study = load_study(QUICKSTART, registry, [*FIXED, *overrides])
    params = sample_config(study, registry, seed)
    if plan is not None:
        params[PLAN_KEY] = plan
    return prepare_trial(study, registry, params, seed).run()


def test_a_prerequisite_stage_helps_the_target(registry):
    alone = run(registry, plan="target").value
    after = run(registry, plan="prereq>target").value
    assert after < alone - 0.3


def test_the_last_stage_dominates(registry):
    # ending on the wrong stage: the target is forgotten while the prerequisite trains
    study = ["stage.target.final=false", "search.plan={reorder = ['prereq', 'target']}"]
    good = run(registry, *study, plan="prereq>target>general").evals
    bad = run(registry, *study, plan="target>prereq>general").evals
    assert good[-1].metrics["eval.target.loss"] < bad[-1].metrics["eval.target.loss"] - 0.3


def test_too_high_an_lr_diverges_and_fails_the_trial(registry):
    result = run(registry, "search.optimizer.adamw.lr=0.5")
    assert result.status == TrialStatus.FAILED
    assert result.reason.startswith("non-finite loss at stage")


@pytest.mark.parametrize("lr", [3e-5, 0.04])
def test_lr_far_from_the_optimum_learns_less(registry, lr):
    best = run(registry, "search.optimizer.adamw.lr=3e-3").value
    assert run(registry, f"search.optimizer.adamw.lr={lr}").value > best + 0.2


def test_decaying_the_lr_at_the_stage_end_pays_off(registry):
    flat = run(registry, "search.lr_schedule={constant = {}}").value
    decayed = run(registry, "search.lr_schedule={wsd = {decay = 0.3}}").value
    assert decayed < flat


def test_same_seed_same_curve_other_seed_other_noise(registry):
    a = [e.metrics for e in run(registry, seed=1).evals]
    b = [e.metrics for e in run(registry, seed=1).evals]
    c = [e.metrics for e in run(registry, seed=2).evals]
    assert a == b
    assert a != c


def test_resuming_at_a_stage_boundary_continues_exactly(registry, tmp_path):
    from autostage.trial import LoopState

    study = load_study(QUICKSTART, registry,
                       [*FIXED, "search.stage_policy={plateau = {}}", "search.plan={}"])
    params = sample_config(study, registry, 0)

    def fresh():
        trial = prepare_trial(study, registry, params, 4)
        return trial, trial.trainer

    trial, run = fresh()
    whole = trial.run()

    saved = []

    def checkpoint(state):
        if not saved:  # keep the first boundary only
            run.save(str(tmp_path))
            saved.append(state.to_json())

    trial, run = fresh()
    trial.run(checkpoint=checkpoint)
    trial, run = fresh()
    run.load(str(tmp_path))
    resumed = trial.run(resume=LoopState.from_json(saved[0]))
    assert [e.metrics for e in resumed.evals] == [e.metrics for e in whole.evals]
    assert resumed.value == whole.value and resumed.tokens == whole.tokens
