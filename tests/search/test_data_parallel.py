"""Data-parallel trials (`study.resources.workers = 2`: Ray Train, gloo on CPU) inside a real
search: the losses of one process at the same global batch, records of the same shape, and a
worker killed mid-stage retried from the trial's last stage boundary."""

import json
import math
import signal
import threading
import time

import pytest
from support.studies import tiny_lm_study

from autostage.cli import main
from autostage.records import TrialStatus
from autostage.rundir import RunDir

pytestmark = pytest.mark.slow

# two trials, one at a time (two workers fill the test's 2 CPUs), asha hearing every eval of
# the final stage; one torch thread everywhere: another count sums floats in another order
STUDY = tiny_lm_study("study.trials=2", "study.parallel=1", "study.trial_scheduler=asha",
                      "study.resources.threads=1")
LOSSES = ("train.loss", "eval.general.loss", "eval.target.loss")


def searched(tmp_path, name, *sets):
    (tmp_path / "study.toml").write_text(STUDY)
    out = tmp_path / name
    args = [a for s in sets for a in ("--set", s)]
    assert main(["search", str(tmp_path / "study.toml"), "--out", str(out), *args]) == 0
    return RunDir(out)


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    """The same search with one process per trial and with two workers per trial."""
    tmp_path = tmp_path_factory.mktemp("data-parallel")
    began = time.monotonic()
    one = searched(tmp_path, "one")
    middle = time.monotonic()
    two = searched(tmp_path, "two", "study.resources.workers=2")
    print(f"1 worker: {middle - began:.1f} s; 2 workers: {time.monotonic() - middle:.1f} s")
    return one, two


def losses(run, number):
    return [{k: e.eval.metrics[k] for k in LOSSES if k in e.eval.metrics}
            for e in run.events(number)]


def test_two_workers_train_as_one_process_at_the_same_global_batch(runs):
    one, two = runs
    assert [r.number for r in one.results()] == [r.number for r in two.results()] == [0, 1]
    for number in (0, 1):
        a, b = losses(one, number), losses(two, number)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b, strict=True):
            assert x.keys() == y.keys()
            for key in x:
                assert math.isclose(x[key], y[key], rel_tol=1e-4), (number, key, x, y)
    print("eval.target.loss, 1 vs 2 workers:",
          [(r.value, s.value) for r, s in zip(one.results(), two.results(), strict=True)])


def test_a_two_worker_trial_writes_the_records_of_a_one_process_trial(runs):
    one, two = runs
    for a, b in zip(one.results(), two.results(), strict=True):
        assert (a.status, a.tokens, a.seed, a.threads) == (b.status, b.tokens, b.seed, b.threads)
        assert math.isclose(a.value, b.value, rel_tol=1e-4)
        first, second = (json.loads((run.trial_dir(a.number) / "result.json").read_text())
                         for run in (one, two))
        assert first.keys() == second.keys()
        lines = [[json.loads(line) for line in
                  (run.trial_dir(a.number) / "events.jsonl").read_text().splitlines()]
                 for run in (one, two)]
        assert [sorted(e) for e in lines[0]] == [sorted(e) for e in lines[1]]
        # checkpoints at the same evals (the stage boundary), where a branch could start
        assert [bool(e.checkpoint) for e in one.events(a.number)] == \
            [bool(e.checkpoint) for e in two.events(a.number)]
    assert one.kept_models() and list(one.kept_models()) == list(two.kept_models())


def kill_a_worker_in_the_final_stage(run, number, killed):
    """Once trial `number` has reported an eval of its final stage (past its stage boundary),
    SIGKILL one of the Ray Train workers of this process's own Ray."""
    import psutil

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if any(e.eval.stage == "target" for e in run.events(number)):
            for process in psutil.Process().children(recursive=True):
                try:
                    if "RayTrainWorker" in " ".join(process.cmdline()):
                        process.send_signal(signal.SIGKILL)
                        killed.append(process.pid)
                        return
                except psutil.Error:  # ended meanwhile
                    continue
        time.sleep(0.1)


def test_a_worker_killed_mid_stage_resumes_from_the_last_stage_boundary(runs, tmp_path):
    _, two = runs
    run, killed = RunDir(tmp_path / "killed"), []
    killer = threading.Thread(target=kill_a_worker_in_the_final_stage,
                              args=(run, 0, killed), daemon=True)
    killer.start()
    searched(tmp_path, "killed", "study.resources.workers=2", "study.trials=1",
             "study.retries=1")
    killer.join()
    assert killed, "no worker was killed"
    [record] = run.results()
    [uninterrupted] = [r for r in two.results() if r.number == 0]
    assert record.status == TrialStatus.COMPLETED
    assert record.tokens == uninterrupted.tokens  # charged once, not for the lost evals
    assert math.isclose(record.value, uninterrupted.value, rel_tol=1e-4)
    events = run.events(0)
    assert [(e.eval.stage, e.eval.stage_tokens) for e in events] == \
        [(e.eval.stage, e.eval.stage_tokens) for e in two.events(0)]  # each eval once
    # the first stage's evals are the first attempt's, kept; the final stage was trained
    # again, from its start, by the retry's workers
    general = {e.worker for e in events if e.eval.stage == "general"}
    target = {e.worker for e in events if e.eval.stage == "target"}
    assert len(general) == len(target) == 1 and general != target
