"""`autostage search` with real Ray Tune and real Optuna, on the (fake) toy trainer."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from support.studies import toy_study

from autostage.cli import main
from autostage.records import TrialRecord, TrialStatus, best_trial
from autostage.rundir import RunDir

SEARCH = ("study.name=search-test", "study.trials=8", "study.seed=1", "study.sampler=tpe",
          "study.trial_scheduler=asha",
          "data.target.difficulty=3.0",
          "stage.prereq.tokens=40_000", "stage.target.tokens=80_000",
          'search.plan.skip=["prereq"]',
          "search.optimizer.adamw.lr={ low = 3e-4, high = 2e-2, log = true }")
STUDY = toy_study(*SEARCH)


def write_study(tmp_path, text=STUDY, name="study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def search(tmp_path, *args, study=None):
    out = tmp_path / "run"
    code = main(["search", study or write_study(tmp_path), "--out", str(out), *args])
    return code, RunDir(out)


def storage_trials(run, name="search-test"):
    return optuna.load_study(study_name=name, storage=run.storage_url).get_trials()


@pytest.mark.slow
def test_a_toy_search_records_every_trial_in_the_run_dir_and_optuna(ray_session, tmp_path):
    code, run = search(tmp_path)
    assert code == 0
    records = run.results()
    assert [r.number for r in records] == list(range(8))
    assert all(r.status.finished for r in records)
    assert all(run.events(r.number) for r in records if r.status != TrialStatus.FAILED)
    assert TrialStatus.COMPLETED in {r.status for r in records}
    trials = storage_trials(run)
    assert [t.number for t in trials] == list(range(8))
    state = {TrialStatus.COMPLETED: "COMPLETE", TrialStatus.STOPPED: "COMPLETE",
             TrialStatus.FAILED: "FAIL", TrialStatus.PRUNED: "PRUNED"}
    for t, r in zip(trials, records, strict=True):
        assert t.state.name == state[r.status]
        if r.status == TrialStatus.COMPLETED:
            assert t.value == r.value
            assert t.params["optimizer.adamw.lr"] == r.config["optimizer.adamw.lr"]
    assert (run.path / "study.toml").read_text() == STUDY
    # Ray's pickle of the searcher (the Optuna study with every trial) is never written: it
    # grew with every trial at every experiment checkpoint, and nothing reads it
    assert not list(run.path.rglob("searcher-state-*.pkl"))


@pytest.mark.slow
def test_asha_rungs_fall_at_final_stage_evals_and_stop_weak_trials(ray_session, tmp_path):
    code, run = search(tmp_path, "--trials", "12", "--set", "search.optimizer.adamw.lr="
                       "{low = 1e-5, high = 2e-2, log = true}")
    pruned = [r for r in run.results() if r.status == TrialStatus.PRUNED]
    assert code == 0 and pruned
    for r in pruned:
        events = run.events(r.number)
        assert events[-1].eval.stage == "target"  # never stopped inside the prerequisite stage
        assert "asha" in r.reason


@pytest.mark.slow
def test_failed_trials_are_recorded_with_reasons_and_never_best(ray_session, tmp_path):
    study = STUDY.replace('lr = { low = 3e-4, high = 2e-2, log = true }', 'lr = [3e-3, 0.5]')
    study += "\n[search.trainer.toy]\ncrash_at_tokens = [0, 30000]\n"
    study = study.replace('sampler = "tpe"', 'sampler = "random"').replace(
        'trial_scheduler = "asha"', 'trial_scheduler = "fifo"')
    code, run = search(tmp_path, "--trials", "10", study=write_study(tmp_path, study))
    assert code == 0
    records = run.results()
    assert len(records) == 10
    reasons = [r.reason for r in records if r.status == TrialStatus.FAILED]
    assert any(r.startswith("non-finite loss at stage") for r in reasons)
    assert any("RuntimeError: injected crash after" in r for r in reasons)
    best = best_trial(records, "min")
    assert best is not None and best.status == TrialStatus.COMPLETED
    assert best.config["optimizer.adamw.lr"] == 3e-3
    failed = {r.number for r in records if r.status == TrialStatus.FAILED}
    assert {t.number for t in storage_trials(run) if t.state.name == "FAIL"} == failed


def test_best_never_picks_a_non_finite_or_unfinished_value():
    records = [
        TrialRecord(0, TrialStatus.FAILED, values=(float("-inf"),)),
        TrialRecord(1, TrialStatus.COMPLETED, values=(float("nan"),)),
        TrialRecord(2, TrialStatus.PRUNED, values=(0.1,)),
        TrialRecord(3, TrialStatus.COMPLETED, values=(2.0,)),
        TrialRecord(4, TrialStatus.STOPPED, values=(1.5,)),
        TrialRecord(5, TrialStatus.RUNNING),
    ]
    assert best_trial(records, "min").number == 4
    assert best_trial(records, "max").number == 3
    assert best_trial(records[:3], "min") is None


@pytest.mark.slow
def test_a_failed_trial_is_retried_from_its_stage_checkpoint(ray_session, tmp_path):
    study = STUDY.replace('skip = ["prereq"]', "") + textwrap.dedent("""
        [search.trainer.toy]
        crash_at_tokens = 90_000
        crash_once = true
    """)
    study = study.replace("trials = 8", "trials = 2\nretries = 1").replace(
        'trial_scheduler = "asha"', 'trial_scheduler = "fifo"')
    code, run = search(tmp_path, study=write_study(tmp_path, study))
    records = run.results()
    assert code == 0
    assert [r.status for r in records] == [TrialStatus.COMPLETED] * 2
    for r in records:
        # 4 x 10,240 + 4 x 20,480 (whole 2048-token steps), as without the crash: no token
        # was trained twice or lost in the accounting
        assert r.tokens == 122_880
        events = run.events(r.number)
        stages = [e.eval.stage for e in events]
        assert stages.count("prereq") == 4  # the prerequisite was not retrained
        tokens = [e.eval.tokens for e in events]
        assert tokens == sorted(set(tokens)) and len(events) == 8  # no eval recorded twice
        assert (run.trial_dir(r.number) / "crashed-once").exists()


@pytest.mark.slow
def test_set_overrides_reach_the_trials_and_export_reruns_the_best(ray_session, tmp_path, capsys):
    code, run = search(tmp_path, "--trials", "4", "--set", "stage.target.tokens=20000",
                       "--set", "study.trial_scheduler=fifo")
    assert code == 0
    for r in run.results():
        budgets = {e.eval.stage: e.eval.stage_tokens for e in run.events(r.number)}
        assert budgets["target"] == 20480  # 20,000 in whole 2048-token steps
    exported = tmp_path / "best.toml"
    assert main(["best", str(run.path), "--export", str(exported)]) == 0
    assert main(["validate", str(exported)]) == 0
    best = best_trial(run.results(), "min")
    capsys.readouterr()
    assert main(["trial", str(exported)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"eval.target.loss = {best.value:.4g}" in last


@pytest.mark.slow
def test_a_search_longer_than_one_tuner_runs_every_trial_once_in_tuners_of_bounded_size(
        ray_session, tmp_path, monkeypatch):
    import autostage.search.lifecycle

    monkeypatch.setattr(autostage.search.lifecycle, "TRIALS_PER_TUNER", 3)  # (500 in use)
    code, run = search(tmp_path, "--trials", "7")
    assert code == 0
    records = run.results()
    assert [r.number for r in records] == list(range(7))
    assert all(r.status.finished for r in records)
    assert [t.number for t in storage_trials(run)] == list(range(7))
    # one Ray experiment per Tuner: 3 + 3 + 1 trials
    experiments = sorted(run.path.glob("ray-*"))
    assert [len(list(e.glob("trial-*"))) for e in experiments] == [3, 3, 1]
    # Ray's experiment state (for Tuner.restore, which autostage never uses) is not kept
    assert not list(run.path.glob("ray-*/experiment_state-*"))


@pytest.mark.slow
def test_a_token_budget_spent_in_an_early_tuner_starts_no_other(ray_session, tmp_path,
                                                                monkeypatch):
    import autostage.search.lifecycle

    monkeypatch.setattr(autostage.search.lifecycle, "TRIALS_PER_TUNER", 4)
    code, run = search(tmp_path, "--trials", "40", "--parallel", "1", "--set",
                       "study.token_budget=200000", "--set", "study.trial_scheduler=fifo")
    assert code == 0
    assert len(list(run.path.glob("ray-*"))) == 1
    assert len(run.results()) <= 4


@pytest.mark.slow
def test_token_budget_stops_the_search(ray_session, tmp_path):
    code, run = search(tmp_path, "--trials", "40", "--parallel", "1", "--set",
                       "study.token_budget=400000", "--set", "study.trial_scheduler=fifo")
    records = run.results()
    assert code == 0
    assert 3 <= len(records) < 40
    assert sum(r.tokens for r in records) >= 400_000
    assert "RUNNING" not in {t.state.name for t in storage_trials(run)}


@pytest.mark.slow
def test_resume_refuses_an_edited_study(ray_session, tmp_path):
    path = write_study(tmp_path)
    assert search(tmp_path, "--trials", "2", study=path)[0] == 0
    Path(path).write_text(STUDY.replace("tokens = 80_000", "tokens = 60_000"))
    code = main(["search", path, "--out", str(tmp_path / "run"), "--resume"])
    assert code == 2
    code = main(["search", path, "--out", str(tmp_path / "run")])
    assert code == 2  # and never silently overwrites a run directory


@pytest.mark.slow
def test_driver_killed_mid_study_then_resume_finishes_exactly(ray_session, tmp_path):
    slow = toy_study(*SEARCH, "model.step_seconds=0.01", "study.trials=12")
    path = write_study(tmp_path, slow)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "autostage.cli", "search", path, "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    run = RunDir(out)
    deadline = time.time() + 120
    while len(run.results()) < 3 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and everything it started
    driver.wait()
    killed_with = len(run.results())
    assert 3 <= killed_with < 12

    assert main(["search", path, "--out", str(out), "--resume"]) == 0
    records = run.results()
    finished = [r for r in records if r.status.finished]
    assert len(finished) == 12
    numbers = [r.number for r in records]
    assert len(numbers) == len(set(numbers))
    told = [t for t in storage_trials(run) if t.state.name in ("COMPLETE", "PRUNED")
            or (t.state.name == "FAIL" and t.number in {r.number for r in finished})]
    assert sorted(t.number for t in told) == sorted(r.number for r in finished)
    interrupted = [r for r in records if r.status == TrialStatus.INTERRUPTED]
    requeued = {json.dumps(r.config, sort_keys=True) for r in interrupted}
    later = {json.dumps({k: v for k, v in r.config.items() if k in json.loads(c)},
                        sort_keys=True) for r in finished for c in requeued}
    assert requeued <= later  # every interrupted config ran again


@pytest.mark.slow
def test_trials_sharing_a_reused_actor_do_not_leak_state(ray_session, tmp_path):
    # Noise off and nothing searched: every trial must give the same value, whichever
    # worker process ran it and whatever it ran before.
    code, run = search(tmp_path, "--trials", "6", "--set", "model.noise=0.0",
                       "--set", "search.optimizer={adamw = {lr = 3e-3}}",
                       "--set", "search.plan={order = 'prereq>target'}",
                       "--set", "study.trial_scheduler=fifo")
    records = run.results()
    assert code == 0 and len({r.value for r in records}) == 1
    pids = [run.events(r.number)[0].worker for r in records]
    assert None not in pids
    assert len(set(pids)) < len(pids)  # actors were reused


@pytest.mark.slow
def test_two_metrics_make_a_multi_objective_study_in_any_rdb_url(ray_session, tmp_path,
                                                                  capsys):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    code, run = search(tmp_path, "--trials", "6", "--set", "study.sampler=nsga2",
                       "--set", "study.trial_scheduler=fifo", "--set",
                       'study.metric=["eval.target.loss", "tokens"]', "--set",
                       f'study.storage="{url}"')
    assert code == 0
    stored = optuna.load_study(study_name="search-test", storage=url)
    assert len(stored.directions) == 2
    done = [t for t in stored.trials if t.state.name == "COMPLETE"]
    assert done and all(len(t.values) == 2 for t in done)
    assert {t.values[1] for t in done} <= {r.tokens for r in run.results()}
    assert not (run.path / "optuna.db").exists()
    # the summary shows the front, not one "best" by the first metric
    out = capsys.readouterr().out
    front = {t.number for t in stored.best_trials}
    assert f"Pareto front: {len(front)} trials" in out and "\nbest: trial" not in out


def test_an_unreachable_cluster_is_one_clear_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", write_study(tmp_path), "--out", str(out), "--address", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot join the Ray cluster at 127.0.0.1:1" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_then_resume_finishes_the_study(ray_session, tmp_path):
    slow = toy_study(*SEARCH, "model.step_seconds=0.01", "study.trials=6",
                     "study.trial_scheduler=fifo")
    path = write_study(tmp_path, slow)
    out = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "autostage.cli", "search", path, "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run = RunDir(out)
    deadline = time.time() + 120
    while len(run.results()) < 1 and time.time() < deadline and driver.poll() is None:
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)  # what Ctrl-C sends
    assert driver.wait(timeout=120) == 130
    assert len(run.results()) < 6
    assert main(["search", path, "--out", str(out), "--resume"]) == 0
    records = run.results()
    assert sum(r.status.finished for r in records) == 6
    # fifo stops nothing: the trials Ctrl-C cut were re-queued, none is recorded as pruned
    assert not [r for r in records if r.status == TrialStatus.PRUNED]
    assert [r for r in records if r.status == TrialStatus.INTERRUPTED]


def test_address_auto_naming_a_dead_cluster_is_one_clear_error_and_writes_nothing(
        tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # a stale address, as after a crash
    out = tmp_path / "run"
    code = main(["search", write_study(tmp_path), "--out", str(out), "--address", "auto"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    # (Ray writes a loopback address as this machine's own IP)
    assert re.search(r"cannot join the Ray cluster at [0-9.]+:1 \(--address auto\): nothing "
                     "answers there", err), err
    assert not out.exists()


def test_a_failed_start_never_deletes_the_users_study_file(tmp_path, capsys):
    # --out is the folder the study file lives in, and the search fails before any trial
    path = write_study(tmp_path, name="study.toml")
    code = main(["search", path, "--out", str(tmp_path), "--address", "127.0.0.1:1"])
    assert code == 2
    assert Path(path).read_text() == STUDY
    assert not (tmp_path / "study.json").exists()


@pytest.mark.slow
def test_trial_scheduler_settings_reach_the_scheduler(ray_session, tmp_path):
    code, run = search(tmp_path, "--trials", "10", "--set",
                       "search.optimizer.adamw.lr={low = 1e-5, high = 2e-2, log = true}",
                       "--set", "study.trial_scheduler_settings={grace_period = 3}")
    assert code == 0
    for r in run.results():
        if r.status == TrialStatus.PRUNED:  # ASHA's first rung is now at the 3rd target eval
            targets = [e for e in run.events(r.number) if e.eval.stage == "target"]
            assert len(targets) >= 3


@pytest.mark.slow
def test_a_search_whose_every_trial_failed_exits_1_saying_why(ray_session, tmp_path, capsys):
    code, run = search(tmp_path, "--trials", "2", "--set", "search.optimizer={adamw = {lr = 1.0}}",
                       "--set", "study.trial_scheduler=fifo")
    err = capsys.readouterr().err
    assert [r.status for r in run.results()] == [TrialStatus.FAILED] * 2
    assert code == 1
    assert "error: no trial produced a value; most common reason (2 of 2 trials): " \
        "non-finite loss" in err, err
