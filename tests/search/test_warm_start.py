"""Warm start: finished trials of earlier run directories seed a new search's sampler (real
Optuna; the end-to-end test runs real Ray on the toy FAKE trainer)."""


import optuna
import pytest
from support import STUDIES

from autostage import load_study
from autostage.cli import main
from autostage.records import TrialRecord, TrialStatus
from autostage.rundir import RunDir, write_json
from autostage.search.warm import WARM_START, seed_sampler
from autostage.space import compile_space, sample

STUDY = STUDIES / "quickstart-toy.toml"


def earlier_run(tmp_path, registry, overrides=(), statuses=None):
    """A run directory as an earlier search leaves it: study.json and finished records whose
    configs that study's space sampled."""
    study = load_study(STUDY, registry, list(overrides))
    space = compile_space(study, registry)
    run = RunDir(tmp_path / "earlier")
    write_json(run.study_json, {"study": study.model_dump(mode="json"), "overrides": []})
    for n, status in enumerate(statuses or [TrialStatus.COMPLETED] * 6):
        run.write_result(TrialRecord(n, status, "", values=(2.0 + n / 10,), tokens=1000,
                                     seed=n, config=sample(space, seed=n)))
    return run


def new_study(registry, run, *overrides):
    study = load_study(STUDY, registry, [f'study.warm_start=["{run.path}"]', *overrides])
    return study, compile_space(study, registry)


def fresh_optuna(study):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["minimize"] * len(study.study.metrics))


def test_finished_trials_of_an_earlier_run_seed_the_sampler(registry, tmp_path):
    run = earlier_run(tmp_path, registry, statuses=[
        TrialStatus.COMPLETED, TrialStatus.PRUNED, TrialStatus.FAILED, TrialStatus.STOPPED,
        TrialStatus.COMPLETED, TrialStatus.INTERRUPTED])
    study, space = new_study(registry, run)
    ot = fresh_optuna(study)
    seeded = seed_sampler(study, space, ot, registry)
    assert seeded.added == 3 and seeded.skipped == []  # pruned, failed, interrupted: not
    trials = ot.get_trials()
    assert [t.value for t in trials] == [2.0, 2.3, 2.4]
    assert [t.user_attrs[WARM_START] for t in trials] == [f"{run.path}#{n}" for n in (0, 3, 4)]
    assert trials[0].params == {k: v for k, v in run.result(0).config.items()
                                if k in trials[0].distributions}
    ot.ask()  # the sampler takes them as its history


def test_trials_outside_the_new_space_are_skipped_saying_which_and_why(registry, tmp_path):
    run = earlier_run(tmp_path, registry)
    study, space = new_study(registry, run,
                             "search.optimizer.adamw.lr={low = 1e-3, high = 3e-3, log = true}")
    seeded = seed_sampler(study, space, fresh_optuna(study), registry)
    outside = [n for n in range(6) if run.result(n).config.get("optimizer") == "adamw"
               and not 1e-3 <= run.result(n).config["optimizer.adamw.lr"] <= 3e-3]
    assert outside and seeded.added == 6 - len(outside)
    assert [line.split(":")[0] for line in seeded.skipped] == \
        [f"{run.path} trial {n}" for n in outside]
    assert all("optimizer.adamw.lr = " in why and "outside the new space" in why
               for why in seeded.skipped)
    assert seeded.lines()[0] == (f"warm start: {6 - len(outside)} earlier trials seed the "
                                 f"sampler; {len(outside)} skipped")


def test_an_earlier_study_of_another_metric_seeds_nothing(registry, tmp_path):
    run = earlier_run(tmp_path, registry)
    study, space = new_study(registry, run, 'study.metric="eval.prereq.loss"')
    seeded = seed_sampler(study, space, fresh_optuna(study), registry)
    assert seeded.added == 0
    assert seeded.skipped[0] == (f"{run.path} trial 0: it optimised eval.target.loss (min), "
                                 "this study eval.prereq.loss (min)")


def test_a_warm_start_that_is_no_run_directory_fails_validation_in_one_line(tmp_path, capsys):
    code = main(["validate", str(STUDY), "--set", f'study.warm_start=["{tmp_path}"]'])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"study.warm_start: {tmp_path} is not a run directory" in err


@pytest.mark.slow
def test_a_warm_started_search_counts_only_its_own_trials_and_resumes(ray_session, tmp_path,
                                                                     capsys):
    first = tmp_path / "first"
    assert main(["search", str(STUDY), "--out", str(first), "--set", "study.trials=6"]) == 0
    ranked = [r for r in RunDir(first).results() if r.ranked_value is not None]
    second = tmp_path / "second"
    args = ["search", str(STUDY), "--out", str(second), "--set", "study.trials=4", "--set",
            f'study.warm_start=["{first}"]']
    assert main(args) == 0
    assert f"warm start: {len(ranked)} earlier trials seed the sampler; 0 skipped" in \
        capsys.readouterr().out
    run = RunDir(second)
    stored = optuna.load_study(study_name="quickstart-toy", storage=run.storage_url).trials
    warm = [t for t in stored if WARM_START in t.user_attrs]
    assert sorted(t.value for t in warm) == sorted(r.value for r in ranked)
    own = run.results()
    assert len(own) == 4 and {r.number for r in own}.isdisjoint(t.number for t in warm)
    # more trials on --resume: the earlier run's trials are neither re-run nor re-added
    assert main([*args, "--resume", "--set", "study.trials=5"]) == 0
    stored = optuna.load_study(study_name="quickstart-toy", storage=run.storage_url).trials
    assert len([t for t in stored if WARM_START in t.user_attrs]) == len(warm)
    assert len(run.results()) == 5
    assert not [r for r in run.results() if r.status == TrialStatus.INTERRUPTED]


def test_a_trial_without_a_parameter_the_new_study_searches_is_skipped(registry, tmp_path):
    run = earlier_run(tmp_path, registry)
    study, space = new_study(  # cosine's warmup is searched now, and was not before
        registry, run, "search.lr_schedule.cosine={min_ratio = 0.1, warmup = {low = 0.0, "
        "high = 0.1}}")
    seeded = seed_sampler(study, space, fresh_optuna(study), registry)
    cosine = [n for n in range(6) if run.result(n).config["lr_schedule"] == "cosine"]
    assert cosine and seeded.added == 6 - len(cosine)
    assert seeded.skipped[0] == (f"{run.path} trial {cosine[0]}: it has no value for "
                                 "lr_schedule.cosine.warmup, which this study searches")


def test_a_trial_that_ran_a_setting_the_new_study_fixes_otherwise_is_skipped(registry, tmp_path):
    run = earlier_run(tmp_path, registry)
    study, space = new_study(registry, run, "search.optimizer={adamw = {lr = 0.003}}")
    seeded = seed_sampler(study, space, fresh_optuna(study), registry)
    assert seeded.added == 0
    assert any(why.endswith("which this study fixes at 0.003") for why in seeded.skipped)


def test_a_setting_left_at_its_default_is_compared_with_one_fixed_elsewhere(registry,
                                                                            tmp_path):
    # the earlier study fixed adamw's weight_decay at 0.3; this one leaves it at its default
    run = earlier_run(tmp_path, registry,
                      ["search.optimizer.adamw.weight_decay=0.3"])
    study, space = new_study(registry, run)
    seeded = seed_sampler(study, space, fresh_optuna(study), registry)
    adamw = [n for n in range(6) if run.result(n).config["optimizer"] == "adamw"]
    assert adamw and seeded.added == 6 - len(adamw)
    assert all(why.endswith("optimizer.adamw.weight_decay was 0.3, which this study fixes at "
                            "0.01") for why in seeded.skipped)


def test_every_trial_of_an_incomparable_run_is_counted_as_skipped(registry, tmp_path):
    run = earlier_run(tmp_path, registry)
    study, space = new_study(registry, run, 'study.metric="eval.prereq.loss"')
    seeded = seed_sampler(study, space, fresh_optuna(study), registry)
    assert len(seeded.skipped) == 6
    assert seeded.lines()[0] == "warm start: 0 earlier trials seed the sampler; 6 skipped"
