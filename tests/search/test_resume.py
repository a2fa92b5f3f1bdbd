"""Interrupted searches (real signals, real Ray, the toy FAKE trainer), resumed: exactly N
finished trials, no configuration run twice, and Optuna's storage agreeing with the records."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from support import STUDIES

from autostage import load_study
from autostage.records import TrialStatus
from autostage.rundir import RunDir
from autostage.search.storage import open_storage, reconcile
from autostage.space import compile_space, sample, suggest

STUDY = STUDIES / "quickstart-toy.toml"
TRIALS = 8
#: how Optuna holds each of our statuses (an interrupted trial was failed, then re-queued)
IN_OPTUNA = {TrialStatus.COMPLETED: "COMPLETE", TrialStatus.STOPPED: "COMPLETE",
             TrialStatus.PRUNED: "PRUNED", TrialStatus.FAILED: "FAIL",
             TrialStatus.INTERRUPTED: "FAIL"}


def command(out, *extra):
    return [sys.executable, "-m", "autostage.cli", "search", str(STUDY), "--out", str(out),
            "--set", "model.step_seconds=0.003", "--set", f"study.trials={TRIALS}", *extra]


def interrupt(out, how, after, *extra):
    """Start a search and send it `how` once `after` trials have results."""
    driver = subprocess.Popen(command(out, *extra), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    run, deadline = RunDir(out), time.time() + 120
    while len(run.results()) < after and time.time() < deadline and driver.poll() is None:
        time.sleep(0.05)
    if how == signal.SIGKILL:  # the driver and its Ray workers, as an OOM killer or a crash
        os.killpg(driver.pid, signal.SIGKILL)
    elif how == "twice":  # an impatient Ctrl-C, Ctrl-C
        driver.send_signal(signal.SIGINT)
        time.sleep(0.3)
        driver.send_signal(signal.SIGINT)
    else:
        driver.send_signal(how)
    driver.wait(timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, "twice", signal.SIGKILL],
                         ids=["ctrl-c", "ctrl-c-twice", "kill"])
def test_interrupted_twice_then_resumed_runs_each_configuration_once(tmp_path, how):
    out = tmp_path / "run"
    interrupt(out, how, 2)
    interrupt(out, how, len(RunDir(out).results()) + 2, "--resume")
    done = subprocess.run(command(out, "--resume"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    records = RunDir(out).results()
    finished = [r for r in records if r.status.finished]
    assert len(finished) == TRIALS
    configs = [json.dumps(r.config, sort_keys=True) for r in finished]
    assert len(set(configs)) == TRIALS, "a resumed search ran a configuration twice"
    stored = optuna.load_study(study_name="quickstart-toy",
                               storage=RunDir(out).storage_url).get_trials()
    assert [(t.number, t.state.name) for t in stored] == \
        [(r.number, IN_OPTUNA[r.status]) for r in records]
    for r in records:
        if r.status == TrialStatus.INTERRUPTED and r.config:  # re-queued: it ran later
            # (a driver killed while Optuna was still sampling a trial left some parameters
            # only: the re-run keeps those and samples the rest)
            assert any(r.config.items() <= f.config.items() for f in finished), r.config


@pytest.mark.slow
def test_extending_a_finished_study_samples_new_configurations(tmp_path):
    out = tmp_path / "run"
    assert subprocess.run(command(out, "--set", "study.trials=4")).returncode == 0
    assert subprocess.run(command(out, "--resume")).returncode == 0
    configs = [json.dumps(r.config, sort_keys=True) for r in RunDir(out).results()]
    assert len(configs) == TRIALS and len(set(configs)) == TRIALS


def killed_driver_left(registry, tmp_path):
    """What a killed driver leaves for --resume, before any trial is recorded: the study, its
    space, the run directory, and its Optuna storage with the study in it."""
    study = load_study(STUDY, registry, [])
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    storage = open_storage(run.storage_url)
    ot = optuna.create_study(study_name="quickstart-toy", storage=storage)
    return study, compile_space(study, registry), run, storage, ot


def test_a_trial_optuna_finished_but_the_driver_never_recorded_is_recovered_not_rerun(
        registry, tmp_path):
    study, space, run, storage, ot = killed_driver_left(registry, tmp_path)
    ot.enqueue_trial(sample(space, seed=0))
    trial = ot.ask()
    constants = suggest(space, trial)
    ot.tell(trial, 1.25)  # ...and the driver died before writing result.json
    remaining, _ = reconcile(study, space, run, storage)
    record = run.result(0)
    assert record.status == TrialStatus.COMPLETED and record.value == 1.25
    assert record.config == {**trial.params, **constants} and record.seed == 0
    assert remaining == study.study.trials - 1
    assert [t.state.name for t in ot.get_trials()] == ["COMPLETE"]  # nothing re-queued


@pytest.mark.slow
def test_a_second_search_into_a_run_directory_in_use_is_refused_in_one_line(tmp_path):
    out = tmp_path / "run"
    longer = ("--set", "study.trials=40")  # still running while the second one tries
    first = subprocess.Popen(command(out, *longer), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        run, deadline = RunDir(out), time.time() + 120
        while not run.results() and time.time() < deadline:
            time.sleep(0.1)
        for extra in ((), ("--resume",)):
            second = subprocess.run(command(out, *extra), capture_output=True, text=True)
            assert second.returncode == 2 and "Traceback" not in second.stderr
            assert second.stderr.strip().splitlines()[-1].startswith(
                f"error: {out} is in use by another autostage search (process {first.pid})")
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
    # the lock went with the first search: its run resumes to the end
    assert subprocess.run(command(out, *longer, "--resume")).returncode == 0
    assert sum(r.status.finished for r in RunDir(out).results()) == 40


def test_a_queued_trial_cut_before_it_started_is_queued_again_with_its_parameters(
        registry, tmp_path):
    """A second interruption: the trial re-queued by the first resume had not started."""
    study, space, run, storage, ot = killed_driver_left(registry, tmp_path)
    params = {k: v for k, v in sample(space, seed=3).items()
              if k in ("optimizer", "optimizer.adamw.lr", "optimizer.sgd.lr")}
    ot.enqueue_trial(params)  # WAITING: its values are Optuna's fixed_params, not its params
    reconcile(study, space, run, storage)
    trials = ot.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]
    assert trials[1].system_attrs["fixed_params"] == params
    assert run.result(0).status == TrialStatus.INTERRUPTED
    assert {k: run.result(0).config[k] for k in params} == params


class Killed(BaseException):
    """The driver dying at this point (nothing after it runs)."""


def die_at(monkeypatch, target, name):
    """Make `target.name` kill the process (raise Killed) the first time it is called."""
    real = getattr(target, name)

    def once(*args, **kwargs):
        monkeypatch.setattr(target, name, real)
        raise Killed

    monkeypatch.setattr(target, name, once)


@pytest.mark.parametrize("step", ["write_result", "set_trial_state_values"])
def test_a_resume_killed_while_re_queueing_never_queues_a_trial_twice(registry, tmp_path,
                                                                      monkeypatch, step):
    """Killed between the re-queue and its record, or between the record and failing the
    interrupted trial in Optuna: the next resume finishes the job, one copy queued."""
    study, space, run, storage, ot = killed_driver_left(registry, tmp_path)
    ot.enqueue_trial(sample(space, seed=0))
    running = ot.ask()  # the killed driver had started it: RUNNING, with its parameters
    suggest(space, running)
    die_at(monkeypatch, RunDir if step == "write_result" else type(storage), step)
    with pytest.raises(Killed):
        reconcile(study, space, run, storage)
    reconcile(study, space, run, storage)
    waiting = [t for t in ot.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == 1, [(t.number, t.state.name) for t in ot.get_trials()]
    assert running.params.items() <= waiting[0].system_attrs["fixed_params"].items()
    assert ot.get_trials()[0].state.name == "FAIL"
    assert run.result(0).status == TrialStatus.INTERRUPTED


@pytest.mark.slow
def test_a_killed_driver_takes_its_ray_processes_with_it(tmp_path):
    """SIGKILL reaches the driver alone (an OOM killer): Ray's agents used to outlive it by a
    minute, trying to tell the dead GCS why their raylet went."""
    import psutil

    out = tmp_path / "run"
    driver = subprocess.Popen(command(out, "--set", "study.trials=40"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        run, deadline = RunDir(out), time.time() + 120
        while not run.results() and time.time() < deadline:
            time.sleep(0.1)
        below = psutil.Process(driver.pid).children(recursive=True)
        assert any("raylet" in p.name() for p in below)
    finally:
        driver.kill()
    driver.wait(timeout=30)
    _, alive = psutil.wait_procs(below, timeout=15)
    assert not alive, [p.name() for p in alive]
