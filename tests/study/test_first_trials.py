"""`study.first_trials`: checked against the study's search space when it loads, each mistake
one problem naming the table and the key."""

import pytest
from support.studies import toy_study

from autostage.check import load_study
from autostage.errors import StudyError
from autostage.host import load_registry

BASE = ("study.name=first", "study.sampler=tpe", "stage.prereq.tokens=10_000",
        "stage.target.tokens=20_000", 'search.plan.skip=["prereq"]',
        "search.optimizer.adamw.lr={ low = 1e-4, high = 1e-2, log = true }")


def load(tmp_path, first_trials: str):
    path = tmp_path / "study.toml"
    path.write_text(toy_study(*BASE, f"study.first_trials={first_trials}"))
    return load_study(path, load_registry())


def problems(tmp_path, first_trials: str) -> list[str]:
    with pytest.raises(StudyError) as e:
        load(tmp_path, first_trials)
    return [str(p) for p in e.value.problems]


def test_a_known_good_configuration_loads(tmp_path):
    # a searched LR and plan, and what the study fixes at its fixed value (pasted from `best`)
    study = load(tmp_path, '[{"optimizer.adamw.lr" = 3e-3, "plan.order" = "prereq>target", '
                           'optimizer = "adamw", init = "default"}, {"plan.order" = "target"}]')
    assert study.study.first_trials[0]["optimizer.adamw.lr"] == 3e-3


def test_each_mistake_is_one_problem_naming_the_table_and_key(tmp_path):
    found = problems(tmp_path, '[{"optimizer.adamw.lr" = 0.5}, {"optimizer.adamw.lrr" = 1e-3}, '
                               '{"plan.order" = "general>target"}, {optimizer = "sgd"}]')
    assert len(found) == 4, found
    assert found[0].startswith("study.first_trials[0].optimizer.adamw.lr: 0.5 is outside")
    assert found[1].startswith("study.first_trials[1].optimizer.adamw.lrr: not a parameter")
    assert "optimizer.adamw.lr" in found[1] and "plan.order" in found[1]
    assert found[2].startswith("study.first_trials[2].plan.order: 'general>target' is not one")
    assert found[3] == "study.first_trials[3].optimizer: this study fixes it at 'adamw'"


def test_a_setting_of_a_component_the_table_does_not_choose_is_refused(tmp_path):
    path = tmp_path / "study.toml"
    # two optimizers in [search]: the optimizer is a choice
    path.write_text(toy_study(*BASE,
                              "search.optimizer.sgd.lr={ low = 1e-3, high = 1e-1, log = true }",
                              'study.first_trials=[{optimizer = "sgd", '
                              '"optimizer.adamw.lr" = 1e-3}]'))
    with pytest.raises(StudyError) as e:
        load_study(path, load_registry())
    assert [p.path for p in e.value.problems] == ["study.first_trials[0].optimizer.adamw.lr"]
    assert "which this trial does not choose" in e.value.problems[0].message
