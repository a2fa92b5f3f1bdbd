"""The search-efficiency benchmark stays runnable as the study format moves on: every method's
study and every arm of its prerequisite check passes `validate`, and the methods search what
their names claim. (The benchmark itself takes minutes to an hour; CI does not run it.)"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from autostage.check import load_study
from autostage.space import compile_space

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_efficiency.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_efficiency", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(bench, registry, tmp_path, overrides):
    path = tmp_path / "study.toml"
    path.write_text(bench.STUDY)
    return load_study(path, registry, overrides)


def test_every_method_and_check_arm_is_a_valid_study(bench, registry, tmp_path):
    for mode in ("full", "smoke"):
        for overrides in [*bench.METHODS.values(), *bench.check_arms(mode).values()]:
            study = _study(bench, registry, tmp_path, [*bench.sized(mode), *overrides])
            compile_space(study, registry)


def test_check_arms_train_equal_tokens(bench, registry, tmp_path):
    for mode in ("full", "smoke"):
        for overrides in bench.check_arms(mode).values():
            study = _study(bench, registry, tmp_path, [*bench.sized(mode), *overrides])
            plan = compile_space(study, registry).plans[0].split(">")
            stages = {s.name: s.tokens for s in study.stage}
            assert sum(stages[s] for s in plan) == sum(bench.SIZES[mode][s]
                                                       for s in ("prereq", "target"))


def test_methods_search_what_their_names_claim(bench, registry, tmp_path):
    spaces = {m: compile_space(_study(bench, registry, tmp_path, o), registry)
              for m, o in bench.METHODS.items()}
    assert spaces["M1"].plans == ("general>prereq>target",)  # M1: the order is fixed
    assert {p.key: p.value for p in spaces["M1"].mixes} == {"mix.target.target": 1.0,
                                                             "mix.target.prereq": 0.0}
    for m in ("M2", "M3", "M4", "null"):
        assert len(spaces[m].plans) == 5  # each of general/prereq may move or be skipped
        assert [p.key for p in spaces[m].mixes if p.type != "fixed"] == ["mix.target.prereq"]
    assert spaces["M2"] == spaces["M3"]  # same space: only the sampler differs
    policies = spaces["M4"].kind("stage_policy").names
    assert set(policies) == {"fixed", "plateau", "bandit"}
    null = _study(bench, registry, tmp_path, bench.METHODS["null"])
    assert null.data["prereq"].settings == null.data["target"].settings
    prereq = _study(bench, registry, tmp_path, bench.METHODS["M1"]).data["prereq"].settings
    assert prereq["operand_digits"] < prereq["digits"] == null.data["target"].settings["digits"]


def test_paired_ci_brackets_the_mean_difference(bench):
    mean, lo, hi = bench.paired_ci([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 3.5, 3.0])
    assert math.isclose(mean, 0.5)
    assert lo < mean < hi
    assert bench.paired_ci([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0, 0.0)
