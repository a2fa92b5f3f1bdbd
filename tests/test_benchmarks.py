"""The search-efficiency benchmark stays runnable as the study format moves on: every method's
study and every arm of its prerequisite check passes `validate`, and the methods search what
their names claim. benchmarks/peers.py (the same task searched by Ray Tune's PBT, Ray Tune +
Optuna + ASHA and plain Optuna, as their users would write it) keeps importing, runs that task,
and charges its budget honestly. (The benchmarks themselves take minutes to hours; CI does not
run them.)"""

from __future__ import annotations

import importlib.util
import math
import sys
import tomllib
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
    for m in ("M2", "M3", "M4", "M5", "null", "null5"):
        assert len(spaces[m].plans) == 5  # each of general/prereq may move or be skipped
        assert [p.key for p in spaces[m].mixes if p.type != "fixed"] == ["mix.target.prereq"]
    assert spaces["M2"] == spaces["M3"]  # same space: only the sampler differs
    policies = spaces["M4"].kind("stage_policy").names
    assert set(policies) == {"fixed", "plateau", "bandit"}
    assert spaces["M5"] == spaces["M4"]  # M5: M4's space; only how trials start differs
    m5 = _study(bench, registry, tmp_path, bench.METHODS["M5"])
    assert m5.study.trial_scheduler == "population" and m5.study.sampler == "tpe"
    null = _study(bench, registry, tmp_path, bench.METHODS["null"])
    assert _study(bench, registry, tmp_path, bench.METHODS["null5"]).data == null.data
    assert null.data["prereq"].settings == null.data["target"].settings
    prereq = _study(bench, registry, tmp_path, bench.METHODS["M1"]).data["prereq"].settings
    assert prereq["operand_digits"] < prereq["digits"] == null.data["target"].settings["digits"]


def test_paired_ci_brackets_the_mean_difference(bench):
    mean, lo, hi = bench.paired_ci([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 3.5, 3.0])
    assert math.isclose(mean, 0.5)
    assert lo < mean < hi
    assert bench.paired_ci([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0, 0.0)


# --- benchmarks/peers.py: the same search, written as Ray Tune and Optuna users would --------

PEERS = SCRIPT.parent / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers", PEERS)
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("peers", None)


def test_peers_run_search_efficiencys_task(peers, bench):
    assert peers.METHODS == ("ray-pbt", "ray-pb2", "ray-optuna-asha", "optuna-pruner",
                             "autostage-M4")
    assert set(peers.BUDGETS) == set(bench.SIZES) == {"full", "smoke"}
    assert peers.BUDGETS["full"] == 6_400_000 and peers.BUDGETS["smoke"] == 900_000
    assert (peers.TARGET_LOSS, peers.EVAL_COST) == (bench.TARGET_LOSS, bench.EVAL_COST)
    study = tomllib.loads(bench.STUDY)
    assert {k: v for k, v in study["model"].items() if k != "trainer"} == peers.MODEL
    assert peers.LR == (1e-3, 2e-2) and peers.MIX == (0.0, 1.0)
    for mode, sizes in bench.SIZES.items():
        task = peers.task_for(mode)
        assert task.total == sum(sizes.values())
        assert task.every == sizes["target"] // 8  # search_efficiency's target eval interval
        assert [t for i, t in task.points if i == 2] == [task.every * k for k in range(1, 9)]
        assert task.points[-1] == (2, sizes["target"])  # the last eval ends the plan
        assert task.eval_compute == bench.EVAL_COST * 4 * 32 * 20


def test_pbt_population_is_as_many_whole_plans_as_the_budget_holds(peers):
    for mode, budget in peers.BUDGETS.items():
        task = peers.task_for(mode)
        n = peers.population(task, budget)
        assert n >= 2
        assert n * task.member_compute <= budget < (n + 1) * task.member_compute
        settings = peers.settings(mode, budget)
        assert settings["pbt_population"] == n
        assert settings["pbt_perturbation_interval_tokens"] == task.every


def test_a_pbt_clone_is_charged_only_the_tokens_it_trained(peers):
    # a fresh member pays for every segment from 0; a clone restored from a donor's
    # checkpoint at 275k pays from there: never for the 275k the donor trained
    assert peers.segment_charges(0, [50_000, 125_000]) == [50_000, 75_000]
    assert peers.segment_charges(275_000, [350_000, 425_000]) == [75_000, 75_000]
    book = peers.Ledger(budget=10**9, eval_compute=100.0)
    for trained in peers.segment_charges(0, [50_000, 125_000, 200_000, 275_000]):
        book.charge("donor", trained, 1)
    for trained in peers.segment_charges(275_000, [350_000]):
        book.charge("clone", trained, 1, cloned=True)
    assert book.trained == 350_000  # not 275k + 350k
    assert book.spent == 350_000 + 5 * 100.0
    assert book.clones == 1


def test_the_ledger_ranks_only_trials_that_ended_within_the_budget(peers):
    book = peers.Ledger(budget=1000, eval_compute=10.0)
    book.charge(0, 400, 1)
    book.complete(0, 0.9)  # at 410
    book.charge(1, 100, 1)  # pruned at 520
    book.charge(2, 400, 1)
    book.complete(2, 0.4)  # at 930: reaches the target loss (0.5)
    book.charge(3, 400, 1)
    assert book.spent_out
    book.complete(3, 0.1)  # at 1340: after the budget, not counted
    row = book.summary()
    assert row["best"] == 0.4 and row["best_overall"] == 0.1
    assert row["tokens_to_target"] == 930
    assert row["curve"] == [(410, 0.9), (930, 0.4), (1340, 0.1)]
    assert (row["trials"], row["completed"], row["pruned"]) == (4, 3, 1)
    book.complete(3, 0.1)  # a PBT member may end twice: one trial still
    assert book.summary()["completed"] == 3


def test_autostages_held_evals_are_placed_between_their_timed_neighbours(peers):
    # evals inside a prefix stage travel with the next report and carry no time: M4's
    # replay through the ledger places them by their tokens, not after every other trial
    times = peers.eval_times(10.0, 50.0, [(None, 100), (None, 200), (30.0, 300), (None, 350),
                                          (40.0, 400)])
    assert [round(t, 3) for t in times] == [16.667, 23.333, 30.0, 35.0, 40.0]
    assert peers.eval_times(10.0, 50.0, [(None, 100), (None, 200)]) == [30.0, 50.0]


@pytest.mark.slow
def test_the_ray_peers_are_configured_as_documented(peers):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
    from ray.tune.search.optuna import OptunaSearch

    task, budget = peers.task_for("full"), peers.BUDGETS["full"]
    pbt = peers.ray_setup("ray-pbt", task, 0, budget)
    assert isinstance(pbt["scheduler"], PopulationBasedTraining)
    assert pbt["scheduler"]._perturbation_interval == task.every
    assert pbt["scheduler"]._time_attr == "tokens"
    assert set(pbt["scheduler"]._hyperparam_mutations) == {"lr", "mix"}
    assert pbt["num_samples"] == peers.population(task, budget)
    asha = peers.ray_setup("ray-optuna-asha", task, 0, budget)
    assert isinstance(asha["scheduler"], ASHAScheduler)
    assert isinstance(asha["search_alg"], OptunaSearch)
    assert asha["scheduler"]._max_t == len(task.points)
    with pytest.raises(ValueError, match="no Ray peer named"):
        peers.ray_setup("ray-bohb", task, 0, budget)


TINY = {"general": 1280, "prereq": 2560, "target": 6400}


@pytest.mark.slow
def test_the_plain_loop_trains_as_autostages_trainer_does(peers, bench, registry, tmp_path):
    """Same seed, config and tokens: the peers' loop ends at autostage's loss (only the
    search differs between them)."""
    from autostage import prepare_trial, sample_config

    study = _study(bench, registry, tmp_path, [
        *(f"stage.{s}.tokens={t}" for s, t in TINY.items()), "stage.target.eval_every=1600",
        "search.plan={order = 'general>prereq>target'}",
        "stage.target.data={target = 1.0, prereq = 0.5}",
        "search.optimizer={adamw = {lr = 3e-3}}"])
    result = prepare_trial(study, registry, sample_config(study, registry, 0), 0,
                           threads=1).run()
    member = peers.Member(peers.shared_run(0), 0, peers.Task(TINY, 1600))
    while not member.finished:
        member.train_segment(3e-3, 0.5)
    assert member.position == result.tokens
    assert math.isclose(member.evaluate(), result.value, rel_tol=1e-4)


@pytest.mark.slow
def test_a_tiny_optuna_peer_search_stops_at_its_budget(peers):
    task = peers.Task(TINY, 1600)
    row = peers.run_optuna(task, seed=0, budget=40_000)
    assert row["trials"] >= 3 and row["completed"] >= 1
    assert math.isfinite(row["best"])
    assert row["compute"] >= 40_000  # it ran until the budget was spent ...
    # ... and no further than the two running trials' last segments
    assert row["compute"] < 40_000 + 2 * (task.every + 640 + task.eval_compute)
