"""Branching trials without Ray: which checkpoint a new trial branches from, what it inherits
there, and how its record reads (the searches themselves: tests/search/test_branching.py)."""

import collections
from pathlib import Path

import pytest
from support import STUDIES

from autostage.branching import BranchPoint, BranchPoints
from autostage.decisions import Continue, Eval
from autostage.records import Branch, EvalRecord, TrialRecord, TrialStatus, lineage_evals
from autostage.testing import BrancherContract
from autostage_plugins.trial_schedulers import Population, TopQuantile

PARAMS = {"plan.order": "general>prereq>target", "init": "default", "optimizer": "adamw",
          "optimizer.adamw.lr": 3e-3, "lr_schedule": "cosine",
          "lr_schedule.cosine.min_ratio": 0.1, "stage_policy": "plateau",
          "stage_policy.plateau.patience": 2, "mix.prereq.prereq": 1.0,
          "mix.target.target": 1.0, "mix.target.prereq": 0.3, "trainer": "toy"}


def ev(stage, tokens, stage_tokens, budget, loss):
    return Eval(stage=stage, visit=0, tokens=tokens, stage_tokens=stage_tokens,
                stage_budget=budget, lr=1e-3, metrics={"eval.target.loss": loss},
                watch="eval.target.loss", watch_mode="min", decision=Continue())


def branch_points(quantile, fresh, mode, seed, plans=()):
    """The search's bookkeeping around the population trial scheduler's brancher."""
    brancher = TopQuantile(quantile, fresh, "eval.target.loss", mode)
    return BranchPoints(brancher, "eval.target.loss", seed, plans)


def point(trial, e, final_evals=0, evals=1, params=PARAMS):
    return BranchPoint(trial, dict(params), trial, e, evals, final_evals, f"/ck/{trial}/{evals}",
                       f"/ck/{trial}/{evals}")


def lineage_points(*evals):
    """The points of one trial that reported `evals`, each with a checkpoint."""
    population = branch_points(0.25, 0.0, "min", 0)
    population.started(0, None)
    for i, e in enumerate(evals, start=1):
        population.saw(0, e, index=i, params=PARAMS, checkpoint=f"/ck/{i}", path=f"/ck/{i}")
    return population.points


def test_a_branch_at_a_stage_boundary_keeps_the_prefix_and_lets_the_rest_change():
    *_, at_prereq_end = lineage_points(ev("general", 50, 50, 50, 3.0),
                                       ev("prereq", 150, 100, 100, 2.0))
    assert at_prereq_end.visited == ("general", "prereq")
    assert at_prereq_end.inherited() == {
        "plan.order": "general>prereq>target", "init": "default", "trainer": "toy",
        "mix.prereq.prereq": 1.0}  # optimizer, schedule, policy, target's mixture: sampled


def test_a_branch_inside_the_final_stage_may_change_its_mixture_from_there_on():
    *_, inside = lineage_points(ev("prereq", 100, 100, 100, 2.0),
                                ev("target", 300, 200, 400, 1.0))
    assert inside.visited == ("prereq",)
    assert "mix.target.prereq" not in inside.inherited()
    assert inside.branch() == Branch(0, "target", 300, 2, "/ck/2", PARAMS, 0)


def test_what_a_branch_inherits_follows_the_stages_its_lineage_really_visited():
    """A policy that jumped past a stage (Advance(to=...)) left its mixture unused: a branch
    may still choose it; a stage already trained keeps its mixture."""
    jumped = lineage_points(ev("target", 100, 100, 400, 1.0))[0]  # plan says prereq first
    assert jumped.visited == ()
    assert {"mix.prereq.prereq", "mix.target.prereq"}.isdisjoint(jumped.inherited())


def test_a_retry_drops_the_points_after_where_it_resumed():
    population = branch_points(0.5, 0.0, "min", 0)
    population.started(0, None)
    for i in range(1, 4):
        population.saw(0, ev("target", 100 * i, 100 * i, 400, 1.0), index=i, params=PARAMS,
                       final_evals=i, checkpoint=f"/ck/{i}", path=f"/ck/{i}")
    population.forget_after(0, 1)
    assert [p.evals for p in population.points] == [1]
    population.saw(0, ev("target", 200, 200, 400, 0.9), index=2, params=PARAMS,
                   final_evals=2, checkpoint="/ck/2b", path="/ck/2b")
    assert [(p.evals, p.path) for p in population.points] == [(1, "/ck/1"), (2, "/ck/2b")]


def test_a_branch_trail_starts_with_its_parents_evals_up_to_the_branch_point():
    population = branch_points(0.5, 0.0, "min", 0)
    population.started(0, None)
    population.saw(0, ev("prereq", 100, 100, 100, 2.0), index=1, params=PARAMS,
                   checkpoint="/ck/a", path="/ck/a")
    population.saw(0, ev("target", 200, 100, 400, 1.0), index=2)
    branch = population.points[0].branch()
    population.started(5, branch)
    population.saw(5, ev("target", 200, 100, 400, 1.1), index=2, params=PARAMS,
                   final_evals=1, checkpoint="/ck/b", path="/ck/b")
    assert population.trails[5] == [("prereq", 0), ("target", 0)]
    assert population.points[-1].evals == 2 and population.points[-1].visited == ("prereq",)


def test_branches_come_from_the_top_quantile_of_their_place_and_never_from_a_lone_point():
    population = branch_points(0.25, 0.0, "min", 0)
    for trial, loss in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]):  # rung 1
        population.note(point(trial, ev("target", 100, 100, 800, loss), final_evals=1))
    population.note(point(9, ev("target", 200, 200, 800, 0.1), final_evals=2))  # alone there
    drawn = collections.Counter(population.propose().trial for _ in range(400))
    assert set(drawn) == {0, 1}  # the best quarter of rung 1: 2 of 8
    assert min(drawn.values()) > 100  # uniformly among them


@pytest.mark.parametrize("mode, best", [("min", 0), ("max", 3)])
def test_the_top_quantile_follows_the_study_mode(mode, best):
    population = branch_points(0.25, 0.0, mode, 1)
    for trial, loss in enumerate([1.0, 2.0, 3.0, 4.0]):
        population.note(point(trial, ev("target", 100, 100, 800, loss), final_evals=1))
    assert {population.propose().trial for _ in range(50)} == {best}


def test_the_fresh_share_of_new_trials_never_branches():
    population = branch_points(0.5, 0.3, "min", 2)
    for trial in range(4):
        population.note(point(trial, ev("target", 100, 100, 800, float(trial)), final_evals=1))
    fresh = sum(population.propose() is None for _ in range(2000))
    assert 0.25 < fresh / 2000 < 0.35
    assert branch_points(0.5, 1.0, "min", 0).propose() is None


def test_a_point_without_a_finite_metric_is_never_branched_from():
    population = branch_points(0.5, 0.0, "min", 0)
    for trial, loss in enumerate([float("nan"), float("nan"), 1.0]):
        population.note(point(trial, ev("target", 100, 100, 800, loss), final_evals=1))
    assert population.propose() is None  # one finite point: nothing to compare it with


class TestEarlyBranching(BrancherContract):
    """The population's brancher with the settings that act before a breakthrough."""

    @pytest.fixture(params=[{"min_points": 1}, {"rank_by": "improvement"},
                            {"min_points": 1, "rank_by": "improvement", "slope_evals": 2}])
    def component(self, request):
        return Population(**request.param)


def test_the_defaults_rank_by_value_at_places_of_two_or_more():
    brancher = Population().branching("eval.target.loss", "min")
    assert (brancher.min_points, brancher.rank_by) == (2, "value")


@pytest.mark.parametrize("settings", [{"min_points": 0}, {"min_points": 3},
                                      {"rank_by": "slope"}, {"slope_evals": 1}])
def test_the_early_settings_are_checked(settings):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Population(**settings)


def early(mode="min", **settings):
    """The search's bookkeeping around a population brancher with `settings`."""
    brancher = Population(quantile=0.25, fresh=0.0, **settings).branching("eval.target.loss",
                                                                          mode)
    return BranchPoints(brancher, "eval.target.loss", 0)


def curve(population, trial, values, first=1):
    """Trial `trial`'s points at final-stage evals `first`, `first` + 1, ... (100 tokens
    apart)."""
    for i, value in enumerate(values, start=first):
        population.note(point(trial, ev("target", 100 * i, 100 * i, 800, value), final_evals=i,
                              evals=i))


@pytest.mark.parametrize("min_points, proposed", [(1, {9}), (2, {None})])
def test_a_point_alone_at_its_place_is_branched_from_only_with_min_points_1(min_points,
                                                                            proposed):
    population = early(min_points=min_points)
    curve(population, 9, [0.5])  # the first to reach its place: nothing beside it
    assert {p and p.trial for p in (population.propose() for _ in range(20))} == proposed
    assert population.wanted() == {"/ck/9/1"}  # kept either way


@pytest.mark.parametrize("mode, plateau, climb", [("min", [2.0, 2.0, 2.0], [3.0, 2.6, 2.2]),
                                                  ("max", [0.8, 0.8, 0.8], [0.5, 0.6, 0.7])])
def test_improvement_branches_from_a_young_trial_breaking_away_not_an_old_plateaued_one(
        mode, plateau, climb):
    by = {}
    for rank_by in ("value", "improvement"):
        population = early(mode, rank_by=rank_by)
        curve(population, 0, plateau)  # old: the better value at every place, but flat
        curve(population, 1, climb)  # young: worse so far, improving fast
        drawn = {(p.trial, p.final_evals) for p in (population.propose() for _ in range(50))}
        by[rank_by] = drawn
        assert population.wanted() >= {f"/ck/{t}/{e}" for t, e in drawn}
    assert by["value"] == {(0, 1), (0, 2), (0, 3)}
    # at eval 1 no trial has a slope: the value decides there
    assert by["improvement"] == {(0, 1), (1, 2), (1, 3)}


def test_a_point_without_a_slope_of_its_own_ranks_after_those_with_one():
    """A branch's slope counts its own evals only: its parent's measured other settings."""
    for rank_by, best in (("value", 1), ("improvement", 0)):
        population = early(rank_by=rank_by)
        curve(population, 0, [2.0, 1.9])
        curve(population, 1, [1.0], first=2)  # branched from trial 0 at eval 1: no slope yet
        assert {population.propose().trial for _ in range(50)} == {best}


def test_the_slope_is_fitted_to_the_last_slope_evals_only():
    """A descent that has since flattened no longer counts."""
    for slope_evals, best in ((3, 1), (5, 0)):
        population = early(rank_by="improvement", slope_evals=slope_evals)
        curve(population, 0, [5.0, 3.0, 2.0, 2.0, 2.0])
        curve(population, 1, [2.6, 2.5, 2.4, 2.3, 2.2])
        assert population.brancher.top()[-1].trial == best  # the last place: eval 5


def test_a_retrys_forgotten_evals_leave_its_slope():
    population = early(rank_by="improvement", slope_evals=3)
    population.started(0, None)
    for i, loss in enumerate([3.0, 2.0, 1.0], start=1):
        population.saw(0, ev("target", 100 * i, 100 * i, 800, loss), index=i, params=PARAMS,
                       final_evals=i, checkpoint=f"/ck/{i}", path=f"/ck/{i}")
    population.forget_after(0, 1)  # a retry goes on from eval 1, and finds a plateau
    for i in (2, 3):
        population.saw(0, ev("target", 100 * i, 100 * i, 800, 3.0), index=i, params=PARAMS,
                       final_evals=i, checkpoint=f"/ck/{i}b", path=f"/ck/{i}b")
    brancher = population.brancher
    assert [p.path for p in brancher.finals[0]] == ["/ck/1", "/ck/2b", "/ck/3b"]
    assert brancher.slope(population.points[-1]) == 0.0


def record(number, evals, branch=None, tokens=0):
    return TrialRecord(number, TrialStatus.COMPLETED, tokens=tokens, config=PARAMS,
                       evals=tuple(EvalRecord(e) for e in evals), branch=branch)


def test_lineage_evals_follow_parents_up_to_each_branch_point():
    root = record(0, [ev("target", t, t, 400, 4 - t / 100) for t in (100, 200, 300, 400)])
    child = record(1, [ev("target", t, t, 400, 0.5) for t in (300, 400)],
                   Branch(0, "target", 200, 2, "/ck/0/2", PARAMS, 0))
    grandchild = record(2, [ev("target", 400, 400, 400, 0.1)],
                        Branch(1, "target", 300, 3, "/ck/1/3", PARAMS, 1))
    by_number = {r.number: r for r in (root, child, grandchild)}
    assert [e.eval.tokens for e in lineage_evals(grandchild, by_number)] == [100, 200, 300, 400]
    assert [e.eval.metrics["eval.target.loss"] for e in lineage_evals(grandchild, by_number)] \
        == [3.0, 2.0, 0.5, 0.1]
    assert lineage_evals(child, {1: child}) == list(child.evals)  # parent unknown: its own


def test_a_branched_record_round_trips_and_names_its_continuation():
    changed = {**PARAMS, "optimizer.adamw.lr": 1e-2}
    r = TrialRecord(5, TrialStatus.COMPLETED, tokens=300, config=changed,
                    branch=Branch(2, "prereq", 200, 4, "/ck/2/4", PARAMS, 2))
    assert r.continuation == {"optimizer.adamw.lr": 1e-2}
    assert r.lineage_tokens == 500
    data = r.to_json()
    assert data["branch"]["parent"] == 2 and data["continuation"] == {"optimizer.adamw.lr": 1e-2}
    assert TrialRecord.from_json(data) == r
    plain = TrialRecord.from_json({**data, "branch": None})
    assert plain.branch is None and plain.continuation == {} and plain.lineage_tokens == 300


def test_resume_requeues_an_interrupted_branched_trial_as_the_same_branch(registry, tmp_path):
    import optuna

    from autostage import load_study
    from autostage.keys import BRANCH_ATTR
    from autostage.rundir import RunDir
    from autostage.search.storage import open_storage, reconcile
    from autostage.space import compile_space

    study = load_study(STUDIES / "quickstart-toy.toml", registry, [])
    space = compile_space(study, registry)
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    storage = open_storage(run.storage_url)
    ot = optuna.create_study(study_name="quickstart-toy", storage=storage)
    branch = Branch(0, "target", 200, 2, "/ck/0/2", {"optimizer": "adamw"}, 0)
    inherited = {"plan.order": "target", "init": "default"}
    ot.enqueue_trial(inherited, user_attrs={BRANCH_ATTR: branch.to_json()})
    trial = ot.ask()  # RUNNING when the driver was killed, while Optuna sampled it:
    trial.suggest_categorical("optimizer", ["adamw", "sgd"])  # one parameter of its own only
    reconcile(study, space, run, storage)
    trials = ot.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL,
                                         optuna.trial.TrialState.WAITING]
    assert trials[1].user_attrs[BRANCH_ATTR] == branch.to_json()
    # re-queued with what it inherited, not only what it had sampled
    assert trials[1].system_attrs["fixed_params"] == {**inherited,
                                                      "optimizer": trial.params["optimizer"]}
    assert run.result(0).branch == branch


def stored_points(tmp_path, population, trial, losses):
    """Checkpoint folders of `trial` at rung 1..n, noted as points; their paths."""
    paths = []
    for rung, loss in enumerate(losses, start=1):
        path = tmp_path / f"t{trial}" / f"checkpoint_{rung:06d}"
        path.mkdir(parents=True)
        paths.append(str(path))
        population.note(BranchPoint(trial, dict(PARAMS), trial, ev("target", rung, rung, 9, loss),
                                    rung, rung, str(path), str(path)))
    return paths


def test_checkpoints_of_an_ended_trial_go_unless_a_branch_may_start_there(tmp_path):
    from pyarrow import fs

    from autostage.checkpoint_store import CheckpointStore
    from autostage.search.retention import Retention

    population = branch_points(0.5, 0.0, "min", 0)
    retention = Retention(CheckpointStore(fs.LocalFileSystem(), str(tmp_path)), "needed",
                          population)
    good = stored_points(tmp_path, population, 0, [1.0, 0.5])
    bad = stored_points(tmp_path, population, 1, [2.0, 1.5])
    for trial, paths in ((0, good), (1, bad)):
        for path in paths:
            retention.saw(trial, path)
    # trial 7 was handed out as a branch from trial 1's first checkpoint: queued, not started
    retention.pin(7, population.points[2].branch())
    retention.ended(1)
    retention.ended(0)
    assert [Path(p).exists() for p in good + bad] == [True, True, True, False]
    assert population.gone == {bad[1]}
    retention.ended(7)  # the branch ended: nothing needs trial 1's checkpoints any more
    assert [Path(p).exists() for p in good + bad] == [True, True, False, False]
    assert {p.trial for p in (population.propose() for _ in range(50))} == {0}


def test_keep_checkpoints_all_deletes_nothing(tmp_path):
    from pyarrow import fs

    from autostage.checkpoint_store import CheckpointStore
    from autostage.search.retention import Retention

    retention = Retention(CheckpointStore(fs.LocalFileSystem(), str(tmp_path)), "all")
    (tmp_path / "checkpoint_000000").mkdir()
    retention.saw(0, str(tmp_path / "checkpoint_000000"))
    retention.ended(0)
    assert (tmp_path / "checkpoint_000000").exists() and retention.deleted == 0
    retention.rule = "needed"  # without a population nothing may branch: it goes
    retention.sweep()
    assert not (tmp_path / "checkpoint_000000").exists()


def test_a_resumed_search_never_branches_from_a_checkpoint_deleted_before(tmp_path):
    from pyarrow import fs

    from autostage.checkpoint_store import CheckpointStore

    store = CheckpointStore(fs.LocalFileSystem(), str(tmp_path))
    records = []
    for trial, loss in enumerate([1.0, 2.0, 3.0, 4.0]):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        records.append(TrialRecord(trial, TrialStatus.PRUNED, config=PARAMS, seed=trial,
                                   evals=(EvalRecord(ev("target", 100, 100, 800, loss),
                                                     checkpoint=str(folder)),)))
    (tmp_path / "t0").rmdir()  # the best: deleted by an earlier session's retention
    population = branch_points(0.5, 0.0, "min", 0)
    population.note_records(records, "target", store.path_of, store.missing)
    assert population.gone == {str(tmp_path / "t0")}
    assert {population.propose().trial for _ in range(50)} == {1}
    assert [p.final_evals for p in population.points] == [1, 1, 1, 1]


def test_a_branch_at_a_stage_boundary_may_choose_the_rest_of_the_plan():
    plans = ("general>prereq>target", "general>target", "prereq>general>target", "target")
    population = branch_points(0.25, 0.0, "min", 0,
                            plans)
    population.started(0, None)
    population.saw(0, ev("general", 50, 50, 50, 3.0), index=1, params=PARAMS,
                   checkpoint="/ck/1", path="/ck/1")
    population.saw(0, ev("prereq", 150, 50, 100, 2.5), index=2, params=PARAMS,
                   checkpoint="/ck/2", path="/ck/2")
    after_general, inside_prereq = population.points
    assert after_general.done == ("general",) and after_general.free_plan
    assert "plan.order" not in after_general.inherited()  # prereq>target or target next
    assert after_general.branch().done == ("general",)
    assert inside_prereq.done == () and "plan.order" in inside_prereq.inherited()


def test_the_sampler_proposes_the_rest_of_the_plan_after_the_stages_a_branch_ran():
    import optuna

    from autostage import load_study
    from autostage.keys import BRANCH_ATTR
    from autostage.space import compile_space, suggest

    study = load_study(STUDIES / "quickstart-toy.toml", load_registry_once(), [])
    space = compile_space(study, load_registry_once())
    ot = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    branch = Branch(0, "general", 100, 4, "/ck", {}, 0, ("general",))
    seen = set()
    for _ in range(20):
        ot.enqueue_trial({}, user_attrs={BRANCH_ATTR: branch.to_json()})
        trial = ot.ask()
        constants = suggest(space, trial)
        assert "plan.order" not in trial.params
        assert constants["plan.order"] == "general>" + trial.params["plan.after.general"]
        seen.add(constants["plan.order"])
        ot.tell(trial, 1.0)
    assert seen == {"general>prereq>target", "general>target"}


def load_registry_once():
    from autostage import load_registry

    return load_registry()


def test_a_branch_that_chose_another_rest_goes_on_with_it_from_the_parents_state():
    from autostage.search.worker import _go_on
    from autostage.trial import LoopState

    parent = LoopState((), 100, 1.0, ("prereq", "target"), {"general": 1})
    branch = Branch(0, "general", 100, 4, "/ck", {"plan.order": "general>prereq>target"}, 0,
                    ("general",))
    chose = _go_on(parent, branch, {"plan.order": "general>target"})
    assert chose.queue == ("target",) and chose.tokens == 100
    assert _go_on(parent, branch, {"plan.order": "general>prereq>target"}) == parent
    inside = Branch(0, "target", 300, 6, "/ck", {"plan.order": "target"}, 0, ())
    assert _go_on(parent, inside, {"plan.order": "target"}) == parent


def test_records_name_checkpoints_relative_to_the_store_and_old_whole_names_are_re_rooted():
    """A copied or moved run directory (or store prefix) names its own files: new records
    hold names relative to the store; an old record's whole path inside the store is taken
    as it is, one of the run's original location is re-rooted from Ray's experiment folder."""
    from pyarrow import fs

    from autostage.checkpoint_store import CheckpointStore

    store = CheckpointStore(fs.LocalFileSystem(), "/runs/copy")
    path = "/runs/copy/ray-1/trial-3/checkpoint_000002"
    assert store.name(path) == "ray-1/trial-3/checkpoint_000002"
    assert store.resolve(store.name(path)) == path
    assert store.resolve(path) == path
    assert store.resolve("/runs/original/ray-1/trial-3/checkpoint_000002") == path
    s3 = CheckpointStore(None, "bucket/runs/copy", "s3")
    assert s3.name("bucket/runs/copy/ray-1/trial-3/checkpoint_000002") == \
        "ray-1/trial-3/checkpoint_000002"
    assert s3.resolve("s3://bucket/runs/old/ray-1/trial-3/checkpoint_000002") == \
        "bucket/runs/copy/ray-1/trial-3/checkpoint_000002"
    assert [store.holds(p) for p in ("/runs/copy/x", "/runs/copy", "/runs/copy/../original/x",
                                     "/runs/copyx/y")] == [True, False, False, False]


def test_retention_never_deletes_outside_its_own_store(tmp_path):
    from pyarrow import fs

    from autostage.checkpoint_store import CheckpointStore
    from autostage.search.retention import Retention

    other = tmp_path / "original" / "ray-1" / "trial-0" / "checkpoint_000000"
    other.mkdir(parents=True)
    retention = Retention(CheckpointStore(fs.LocalFileSystem(), str(tmp_path / "copy")),
                          "needed")
    retention.saw(0, str(other))  # an old copied record names the original's checkpoint
    retention.ended(0)
    assert other.exists() and retention.deleted == 0


def test_a_branch_point_that_failed_to_load_is_never_handed_out_again(tmp_path):
    from autostage.branching import BRANCH_POINT_FAILED

    population = branch_points(0.5, 0.0, "min", 0)
    for trial, loss in enumerate([1.0, 2.0, 3.0, 4.0]):
        population.note(point(trial, ev("target", 100, 100, 800, loss), final_evals=1))
    population.refuse("/ck/0/1")
    assert {population.propose().trial for _ in range(50)} == {1}
    # a resumed search: the failed branch's record marks its point again
    failed = TrialRecord(4, TrialStatus.FAILED, f"{BRANCH_POINT_FAILED}1: checkpoint /ck/1/1: "
                         "loop.json does not match its manifest",
                         branch=Branch(1, "target", 100, 1, "/ck/1/1", PARAMS, 1))
    resumed = branch_points(0.5, 0.0, "min", 0)
    resumed.note_records([failed], "target", str, lambda paths: set())
    assert resumed.refused == {"/ck/1/1"}
