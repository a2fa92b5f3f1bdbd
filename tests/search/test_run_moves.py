"""A run directory is self-contained: its records name checkpoints relative to it, so a copy
and its original, or a moved run, each resume from their own files — and a copy's retention
never deletes its original's checkpoints (real Ray, a killed population search)."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import STUDIES

from autostage.cli import main
from autostage.records import TrialStatus
from autostage.rundir import RunDir

STUDY = STUDIES / "quickstart-toy.toml"
SETS = ["study.trial_scheduler=population",
        "study.trial_scheduler_settings={quantile = 0.25, fresh = 0.2}",
        "study.trials=12", "model.step_seconds=0.003"]
ARGS = [arg for s in SETS for arg in ("--set", s)]


def killed_while_a_branch_runs(out):
    """Start the search in a driver of its own; SIGKILL it (and its Ray) once four trials
    have records and a branched trial is running, which --resume re-queues as a branch."""
    # every checkpoint is kept until the resume, which keeps only those needed: its
    # retention has old checkpoints to delete at once
    cmd = [sys.executable, "-m", "autostage.cli", "search", str(STUDY), "--out", str(out), *ARGS,
           "--set", "study.keep_checkpoints=all"]
    driver = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    run, deadline = RunDir(out), time.time() + 120
    while not (running_branches(run) and len(run.results()) >= 4) \
            and time.time() < deadline and driver.poll() is None:
        time.sleep(0.02)
    kill_session(driver.pid)
    driver.wait(timeout=60)
    assert running_branches(run), "the search ended before a branch was cut"


def kill_session(sid):
    """SIGKILL every process of session `sid`: the driver, and Ray's workers too, which
    leave its process group (a worker outliving a killed driver may still write a checkpoint
    into its run); wait until none is left."""
    deadline = time.time() + 30
    while (pids := session(sid)) and time.time() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # it died meanwhile
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    assert not session(sid), session(sid)


def session(sid):
    """The live processes of session `sid` (zombies are dead: only their entry is left)."""
    ps = subprocess.run(["ps", "-eo", "pid=,sid=,stat="], capture_output=True, text=True)
    rows = [line.split() for line in ps.stdout.splitlines()]
    return [int(r[0]) for r in rows if len(r) == 3 and r[1] == str(sid) and "Z" not in r[2]]


def running_branches(run):
    return [n for n in run.numbers() if run.branch(n) and run.result(n) is None]


def checkpoint_files(out):
    """Every file of the run's checkpoints, with its size and modification time."""
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in out.glob("ray-*/trial-*/checkpoint_*/**/*") if p.is_file()}


def resumed_from_its_own_files(out):
    assert main(["search", str(STUDY), "--out", str(out), *ARGS, "--resume", "--set",
                 "study.keep_checkpoints=needed"]) == 0
    run = RunDir(out)
    records = run.trials()
    assert sum(r.status.finished for r in records) == 12
    # no branch failed to load its parent (a moved run read "cut short" at every one; a
    # trial whose loss turned non-finite fails as in any search)
    assert not [r.reason for r in records if "cannot branch" in r.reason
                or "cut short" in r.reason]
    # a branch the kill cut ran again as the same branch
    for r in records:
        if r.status == TrialStatus.INTERRUPTED and r.branch and r.config:
            assert any(f.branch == r.branch and f.status.finished for f in records), r.number


def named_relative(out):
    """Whether every checkpoint the run's records name is named relative to it."""
    records = RunDir(out).trials()
    named = [e.checkpoint for r in records for e in r.evals if e.checkpoint] + \
        [r.branch.checkpoint for r in records if r.branch]
    return named and not [n for n in named if Path(n).is_absolute()]


@pytest.mark.slow
def test_a_copied_run_and_its_moved_original_each_resume_from_their_own_checkpoints(
        ray_session, tmp_path):
    original = tmp_path / "original"
    killed_while_a_branch_runs(original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    before = checkpoint_files(original)
    resumed_from_its_own_files(copy)
    assert checkpoint_files(original) == before  # side by side: the copy left them alone
    assert set(before) - set(checkpoint_files(copy))  # and deleted its own copies instead
    moved = tmp_path / "moved"
    original.rename(moved)  # the original's recorded location is gone
    resumed_from_its_own_files(moved)
    assert named_relative(copy) and named_relative(moved)
