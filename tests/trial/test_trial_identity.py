"""A trial's identity: the seed rule, the charged-tokens rule, and the Ray config it travels
as — one place for each (no Ray)."""

import optuna

from autostage.keys import BRANCH_ATTR
from autostage.records import Branch
from autostage.trial_identity import TrialIdentity

PARAMS = {"optimizer": "adamw", "optimizer.adamw.lr": 3e-3}
POINT = Branch(parent=2, stage="target", tokens=150_000, evals=5,
               checkpoint="ray-0/trial-2/checkpoint_000004", prefix=dict(PARAMS), seed=7)


def test_a_fresh_trial_trains_with_the_study_seed_plus_its_number_and_is_charged_it_all():
    who = TrialIdentity.of(4, PARAMS, study_seed=100)
    assert who.seed == 104 and who.branch is None
    assert who.charged(300_000) == 300_000 and who.prefix_evals == 0


def test_a_branch_trains_with_its_lineage_roots_seed_and_is_charged_only_its_own_tokens():
    who = TrialIdentity.of(9, PARAMS, study_seed=100, branch=POINT)
    assert who.seed == 7  # its parent's data goes on; a replay draws the same batches
    assert who.charged(300_000) == 150_000 and who.prefix_evals == 5


def test_the_ray_config_round_trips_and_holds_only_number_parameters_and_branch():
    for who in (TrialIdentity.of(3, PARAMS, 0), TrialIdentity.of(9, PARAMS, 0, POINT)):
        config = who.to_config()
        assert set(config) <= {"trial_number", "params", "branch"}
        assert TrialIdentity.from_config(config, study_seed=0) == who


def test_an_optuna_trial_names_its_branch_point_in_a_user_attribute():
    study = optuna.create_study()
    study.enqueue_trial(PARAMS, user_attrs={BRANCH_ATTR: POINT.to_json()})
    trial = study.ask()
    trial.suggest_categorical("optimizer", ["adamw", "sgd"])
    frozen = study.trials[0]
    who = TrialIdentity.from_optuna(frozen, study_seed=0)
    assert who.number == 0 and who.branch == POINT and who.params == {"optimizer": "adamw"}
