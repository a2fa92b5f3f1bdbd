"""benchmarks/hpo.py stays runnable and honest as the code moves on: every task's study
validates at both sizes with its seeds split, autostage's methods search what their names
claim, every peer imports and is configured as its settings say (the plan a categorical, ASHA's
grace past the plateau, PBT's small bounded population, the pruner's explicit max_resource,
TPE's constant liar), the one ledger charges made-up reports as documented, and the results
JSON has the shape the issue asks for. (The benchmark itself takes minutes to hours; CI does
not run it.)"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from autostage.space import compile_space

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))  # the harness's modules import each other by name

import hpo  # noqa: E402
import hpo_ledger  # noqa: E402
import hpo_methods  # noqa: E402
import hpo_peers  # noqa: E402
import hpo_task  # noqa: E402

TASKS = hpo_task.task_names()


def test_arith_is_a_task():
    assert "arith" in TASKS


@pytest.mark.parametrize("name", TASKS)
def test_every_task_validates_at_both_sizes_with_its_seeds_split(name, registry):
    task = hpo_task.load_task(name)
    assert not set(task.tuning_seeds) & set(task.heldout_seeds)
    assert not set(task.smoke["seeds"]) & set(task.tuning_seeds)
    assert 0 < task.plateau < 1 and task.eval_cost > 0 and task.budget > 0
    for mode in ("full", "smoke"):
        sized = task.sized(mode)
        study = sized.load(registry)
        final = [s for s in study.stage if s.final]
        assert len(final) == 1 and final[0].tokens == sized.final["tokens"]
        assert sized.plateau_tokens % sized.final["eval_every"] == 0
        assert sized.plateau_tokens < sized.final["tokens"]
        for method in hpo_methods.AUTOSTAGE:
            compile_space(sized.load(registry, hpo_methods.autostage_overrides(method, sized)),
                          registry)


def test_smoke_scales_every_stage():
    task = hpo_task.load_task("arith")
    smoke = task.sized("smoke")
    assert smoke.final == {"name": "target", "tokens": 300_000, "eval_every": 37_500}
    assert "stage.general.tokens=25000" in smoke.overrides()
    assert task.overrides() == [] and (task.plateau_tokens, task.plateau_evals) == (300_000, 4)
    assert smoke.heldout_seeds == tuple(task.smoke["seeds"]) and smoke.budget == 900_000


def test_autostage_methods_search_what_their_names_claim(registry):
    task = hpo_task.load_task("arith")
    m4, m5, early, pasha, curve = (task.load(registry, hpo_methods.autostage_overrides(m, task))
                                   for m in hpo_methods.AUTOSTAGE)
    base = compile_space(task.load(registry), registry)
    assert len(base.plans) == 5  # each prefix stage may move or be skipped: every method's
    assert compile_space(m4, registry).plans == base.plans
    assert set(compile_space(m4, registry).kind("stage_policy").names) == \
        {"fixed", "plateau", "bandit"}
    assert (m4.study.sampler, m4.study.trial_scheduler) == ("tpe", "asha")
    assert m4.study.trial_scheduler_settings == {"grace_period": 4, "reduction_factor": 2}
    assert m5.study.trial_scheduler == "population"
    assert m5.study.trial_scheduler_settings["grace_period"] == task.plateau_evals
    # issue 27's strategies: M4's space and sampler, M4's (or M5's) rung rule past the plateau
    assert early.study.trial_scheduler_settings == {**m5.study.trial_scheduler_settings,
                                                    "min_points": 1, "rank_by": "improvement"}
    assert (pasha.study.trial_scheduler, pasha.study.trial_scheduler_settings) == \
        ("pasha", m4.study.trial_scheduler_settings)
    assert (curve.study.trial_scheduler, curve.study.trial_scheduler_settings) == \
        ("curve", {"min_evals": task.plateau_evals})
    for study in (early, pasha, curve):
        assert compile_space(study, registry) == compile_space(m4, registry)
    assert base.kind("stage_policy").names == ("fixed",)  # the peers search no policy


def test_peer_settings_follow_the_issue():
    task = hpo_task.load_task("arith")
    s = hpo_peers.settings(task)
    assert s["asha"]["grace_period"] >= task.plateau_tokens
    assert 2 <= s["asha"]["reduction_factor"] <= 3
    assert s["asha"]["max_t"] == task.final["tokens"]
    for pbt in (s["pbt"], s["pb2"]):
        assert 2 <= pbt["population"] <= 4
        assert pbt["burn_in_period"] >= task.plateau_tokens
        assert pbt["perturbation_interval"] % task.final["eval_every"] == 0
    assert s["pbt"]["mutated"] == ["optimizer.adamw.lr", "mix.target.prereq"]
    assert s["pb2"]["bounds"] == {"optimizer.adamw.lr": [1e-3, 2e-2],
                                  "mix.target.prereq": [0.0, 1.0]}
    assert s["optuna_hyperband"]["max_resource"] == task.final["tokens"]
    assert s["optuna_hyperband"]["min_resource"] >= task.plateau_tokens
    assert s["tpe"] == {"n_startup_trials": 3, "constant_liar": True}
    config = hpo_peers.clip(task, {"optimizer.adamw.lr": 0.05, "mix.target.prereq": -0.1})
    assert config == {"optimizer.adamw.lr": 2e-2, "mix.target.prereq": 0.0}


@pytest.mark.slow  # imports ray
def test_the_ray_peers_are_configured_as_their_settings_say():
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
    from ray.tune.schedulers.pb2 import PB2
    from ray.tune.search.optuna import OptunaSearch
    from ray.tune.search.sample import Categorical

    task = hpo_task.load_task("arith")
    space = hpo_peers.ray_space(task)
    assert isinstance(space["plan.order"], Categorical)  # the plan, a categorical
    assert len(space["plan.order"].categories) == 5
    pbt = hpo_peers.ray_setup("ray-pbt", task, 100)
    assert type(pbt["scheduler"]) is PopulationBasedTraining
    assert pbt["scheduler"]._time_attr == "final_tokens"
    assert pbt["scheduler"]._burn_in_period == task.plateau_tokens
    assert set(pbt["scheduler"]._hyperparam_mutations) == set(hpo_peers.mutated(task))
    assert pbt["num_samples"] == hpo_peers.population(task) == 4
    assert hpo_peers.population(task.sized("smoke")) == 2  # 900k holds two 400k plans
    pb2 = hpo_peers.ray_setup("ray-pb2", task, 100)
    assert isinstance(pb2["scheduler"], PB2)
    assert pb2["scheduler"]._burn_in_period == task.plateau_tokens
    asha = hpo_peers.ray_setup("ray-optuna-asha", task, 100)
    assert isinstance(asha["scheduler"], ASHAScheduler)
    assert isinstance(asha["search_alg"], OptunaSearch)
    [bracket] = asha["scheduler"]._brackets
    assert [m for m, _ in bracket._rungs] == [task.final["tokens"], task.plateau_tokens]
    assert asha["scheduler"]._max_t == task.final["tokens"]
    with pytest.raises(ValueError, match="no Ray peer named"):
        hpo_peers.ray_setup("ray-bohb", task, 0)


# --- the ledger ----------------------------------------------------------------------------------

def test_a_clone_is_charged_only_the_tokens_it_trained():
    assert hpo_ledger.segment_charges(0, [50_000, 125_000]) == [50_000, 75_000]
    assert hpo_ledger.segment_charges(275_000, [350_000, 425_000]) == [75_000, 75_000]
    book = hpo_ledger.Ledger(budget=10**9, eval_compute=100.0)
    for trained in hpo_ledger.segment_charges(0, [50_000, 125_000, 200_000, 275_000]):
        book.charge("donor", trained, 1)
    for trained in hpo_ledger.segment_charges(275_000, [350_000]):
        book.charge("clone", trained, 1, cloned=True)
    assert book.trained == 350_000  # not 275k + 350k
    assert book.spent == 350_000 + 5 * 100.0
    assert book.clones == 1


def test_the_ledger_charges_concurrent_trials_and_ranks_within_the_budget():
    book = hpo_ledger.Ledger(budget=1000, eval_compute=10.0, target=0.5)
    book.charge(0, 400, 1)
    book.complete(0, 0.9, {"lr": 1})  # at 410
    book.charge(1, 100, 1)  # still running beside 2: its tokens count before 2 completes
    book.charge(2, 400, 1)
    book.complete(2, 0.4, {"lr": 2})  # at 930: reaches the target
    book.charge(3, 400, 1)
    assert book.spent_out
    book.complete(3, 0.1)  # at 1340: after the budget, not counted
    row = book.summary()
    assert row["best"] == 0.4 and row["best_overall"] == 0.1
    assert row["compute_to_target"] == row["tokens_to_target"] == 930
    assert row["curve"] == [(410, 0.9), (930, 0.4), (1340, 0.1)]
    assert (row["trials"], row["completed"], row["pruned"]) == (4, 3, 1)
    assert row["configs"] == [[0.4, {"lr": 2}], [0.9, {"lr": 1}]]  # static ones, best first


def test_the_ledger_follows_the_metrics_mode():
    book = hpo_ledger.Ledger(budget=100, eval_compute=1.0, mode="max", target=0.9)
    book.charge(0, 10, 1)
    book.complete(0, 0.5, {})
    book.charge(1, 10, 1)
    book.complete(1, 0.95, {})
    assert book.summary()["best"] == 0.95 and book.summary()["compute_to_target"] == 22


def test_autostage_replay_charges_branches_from_their_branch_point(registry):
    task = hpo_task.load_task("arith")
    per_eval = task.eval_compute(registry)
    ev = lambda t, tokens: SimpleNamespace(  # noqa: E731
        time=t, eval=SimpleNamespace(tokens=tokens, metrics={"eval.target.loss": 1.0,
                                                             "eval.prereq.loss": 1.0}))
    root = SimpleNamespace(number=0, started=0.0, ended=3.0, branch=None, ranked_value=0.4,
                           config={"stage_policy": "fixed", "lr": 1},
                           evals=[ev(1.0, 100), ev(None, 200), ev(3.0, 300)])
    branch = SimpleNamespace(number=1, started=2.5, ended=4.0, ranked_value=0.3,
                             branch=SimpleNamespace(tokens=200), config={"lr": 2},
                             evals=[ev(4.0, 300)])
    book = hpo_methods.replay([root, branch], task, registry)
    assert book.trained == 300 + 100  # the branch never pays for its 200-token prefix
    assert book.spent == pytest.approx(400 + 4 * 2 * per_eval)
    assert book.summary()["configs"] == [[0.4, {"stage_policy": "fixed", "lr": 1}]]
    assert book.clones == 1


def test_autostages_held_evals_are_placed_between_their_timed_neighbours():
    times = hpo_ledger.eval_times(10.0, 50.0, [(None, 100), (None, 200), (30.0, 300),
                                               (None, 350), (40.0, 400)])
    assert [round(t, 3) for t in times] == [16.667, 23.333, 30.0, 35.0, 40.0]


def test_paired_ci_brackets_the_mean_difference():
    mean, lo, hi = hpo_ledger.paired_ci([1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 3.5, 3.0])
    assert math.isclose(mean, 0.5) and lo < mean < hi
    assert hpo_ledger.paired_ci([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0, 0.0)


# --- the baselines and the results ---------------------------------------------------------------

def test_the_oracle_pools_static_configurations_of_every_method_but_its_own():
    rows = [{"method": "ray-pbt", "configs": [[0.3, {"a": 1}]]},
            {"method": "autostage-M4", "configs": [[0.2, {"a": 2}], [0.5, {"a": 3}]]},
            {"method": "oracle", "configs": [[0.1, {"a": 4}]]}]
    assert hpo_methods.pooled_best(rows, "min") == (0.2, {"a": 2})
    assert hpo_methods.pooled_best(rows, "max") == (0.5, {"a": 3})
    assert hpo_methods.pooled_best([], "min") is None


def test_top_k_reserves_its_continuations(registry):
    task = hpo_task.load_task("arith")
    n = hpo_methods.topk_draws(task, registry)
    per_eval = task.eval_compute(registry)
    rank_at = 200_000 + 300_000 + 4 * per_eval  # the longest plan, to the plateau
    rest = 300_000 + 4 * per_eval
    assert n * rank_at + hpo_methods.K * rest <= task.budget < (n + 1) * rank_at + \
        hpo_methods.K * rest


def _row(method, seed, best, reached):
    return {"method": method, "seed": seed, "best": best, "compute_to_target": reached,
            "tokens_to_target": reached, "trials": 3, "pruned": 1, "wall_s": 1.0,
            "curve": [(100, best)], "configs": [[best, {"lr": seed}]]}


def test_results_json_and_table_have_the_issues_shape(tmp_path):
    rows = [_row(m, s, b, c) for m, s, b, c in [
        ("autostage-M4", 100, 0.1, 300), ("autostage-M4", 101, 0.2, None),
        ("ray-pbt", 100, 0.3, 600), ("ray-pbt", 101, 0.4, 900),
        ("oracle", 100, 0.05, 150), ("oracle", 101, 0.06, 200)]]
    rows[-2]["config"] = rows[-1]["config"] = {"lr": 1}
    data = {"task": "arith", "mode": "smoke", "which": "heldout", "seeds": [100, 101],
            "budget": 1000.0, "commit": "f" * 40, "dirty": [], "target": 0.5,
            "metric": "eval.target.loss", "mode_of_metric": "min", "eval_cost": 1 / 3,
            "settings": {}, "rows": rows}
    hpo.write(data, tmp_path / "hpo-arith-smoke", show=False)
    saved = json.loads((tmp_path / "hpo-arith-smoke.json").read_text())
    assert {"budget", "commit", "seeds", "rows"} <= set(saved)
    for r in saved["rows"]:
        assert {"method", "seed", "best", "tokens_to_target", "oracle"} <= set(r)
    m4 = [r for r in saved["rows"] if r["method"] == "autostage-M4"]
    assert [r["oracle"]["ratio"] for r in m4] == [2.0, 5.0]  # never reached: the budget
    assert [r["oracle"]["censored"] for r in m4] == [False, True]
    text = (tmp_path / "hpo-arith-smoke.md").read_text()
    assert "| autostage-M4 | 1/2 | 650 | 300, — | ≥ 3.50 (2 seeds) |" in text
    assert "| ray-pbt | 2/2 | 750 | 600, 900 | 4.25 (2 seeds) |" in text
    assert "vs best peer (ray-pbt)" in text and "Commit `ffffffffffff`" in text
    assert (tmp_path / "hpo-arith-smoke.html").exists()
    assert [c["name"] for c in hpo.curves(rows)][:2] == ["autostage-M4 seed 100",
                                                         "autostage-M4 seed 101"]


def test_no_ratio_where_the_oracle_did_not_reach_the_target():
    rows = [_row("ray-pbt", 100, 0.9, None), _row("oracle", 100, 0.6, None)]
    hpo.add_oracle_ratios(rows, 1000.0)
    assert rows[0]["oracle"] == {"compute_to_target": None, "ratio": None, "censored": True}
    assert hpo.oracle_ratio(rows[:1]) == "n/a"


def test_a_method_that_is_not_known_is_named():
    with pytest.raises(ValueError, match="no autostage method named"):
        hpo_methods.autostage_overrides("M9", hpo_task.load_task("arith"))
