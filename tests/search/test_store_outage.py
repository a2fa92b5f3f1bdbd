"""The checkpoint store goes away mid-search: a real S3 endpoint (moto's server on loopback)
killed and started again, `autostage search` run as a user runs it (real Ray, the toy FAKE
trainer); and the retry policy itself (autostage.search.outage), without Ray."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from support import wait_for
from support.studies import toy_study

from autostage.errors import AutostageError
from autostage.search import outage

AUTOSTAGE = str(Path(sys.executable).with_name("autostage"))
BUCKET = "autostage-outage"

STUDY = toy_study(
    "study.name=outage", "study.trials=4", "study.sampler=random", "study.keep_models=1",
    "model.step_seconds=0.05",  # ~5 s a trial: two always running when the store goes
    "stage.prereq.tokens=60_000", "stage.target.tokens=120_000")

# moto's server, whose objects outlive it as S3's outlive an outage: SIGTERM stops it (its
# port refuses connections from then on) and saves its buckets; started again with the same
# state file it serves them again. (Plain moto would come back empty: another fault.)
KEPT_MOTO = textwrap.dedent("""
    import os, pickle, signal, sys, threading
    from moto.backends import get_backend
    from moto.server import ThreadedMotoServer

    port, state = int(sys.argv[1]), sys.argv[2]
    backends = get_backend("s3")
    if os.path.exists(state):
        with open(state, "rb") as f:
            backends.update(pickle.load(f))
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    with open(state + ".tmp", "wb") as f:
        pickle.dump(dict(backends), f)
    os.replace(state + ".tmp", state)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Store:
    """A real S3 endpoint on loopback that can be killed and started again, data kept."""

    def __init__(self, folder: Path) -> None:
        self.port, self.state = free_port(), folder / "moto.state"
        self.script = folder / "kept_moto.py"
        self.script.write_text(KEPT_MOTO)
        self.process: subprocess.Popen | None = None
        self.env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"}

    def start(self) -> None:
        first = not self.state.exists()
        self.process = subprocess.Popen([sys.executable, str(self.script), str(self.port),
                                         str(self.state)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: urllib.request.urlopen(self.env["AWS_ENDPOINT_URL"], timeout=1),
                 60, "moto's S3 server")
        if first:
            import boto3

            boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"],
                         region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path)
    store.start()
    yield store
    if store.process.poll() is None:
        store.process.kill()
        store.process.wait(10)


def search(tmp_path: Path, env: dict, *args: str, wait: bool = True):
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    argv = [AUTOSTAGE, "search", str(study), "--out", str(tmp_path / "run"), "--checkpoints",
            f"s3://{BUCKET}/runs/outage", *args]
    if not wait:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300)


def records(run: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(run.glob("trials/*/result.json"))]


def cut_when_a_trial_ended(driver: subprocess.Popen, store: Store, run: Path) -> None:
    """Kill the store once a trial has finished (the next two are running then)."""
    wait_for(lambda: driver.poll() is not None or records(run), 240, "a first trial")
    assert driver.poll() is None, driver.communicate()
    store.kill()


@pytest.mark.slow
def test_an_outage_shorter_than_the_patience_costs_no_trial(tmp_path, store):
    driver = search(tmp_path, {**store.env, outage.PATIENCE_ENV: "120"}, wait=False)
    try:
        cut_when_a_trial_ended(driver, store, tmp_path / "run")
        time.sleep(20)  # longer than a trial: each running one meets it at its next upload
        store.start()
        out, err = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, err
    assert "Traceback" not in err
    assert [r["status"] for r in records(tmp_path / "run")] == ["completed"] * 4


@pytest.mark.slow
def test_a_store_away_past_the_patience_ends_the_search_in_one_line_and_resume_reruns_what_it_cut(  # noqa: E501
        tmp_path, store):
    run = tmp_path / "run"
    driver = search(tmp_path, {**store.env, outage.PATIENCE_ENV: "5"}, wait=False)
    try:
        cut_when_a_trial_ended(driver, store, run)
        cut = time.monotonic()
        out, err = driver.communicate(timeout=120)
    finally:
        driver.kill()
    ended = time.monotonic() - cut
    assert driver.returncode == 2, err
    *notes, last = err.strip().splitlines()  # (notes: the driver's own tries, if it made any)
    assert "Traceback" not in err and all(n.startswith("autostage: ") for n in notes), err
    assert last.startswith(f"error: the checkpoint store s3://{BUCKET}/runs/outage did not "
                           "answer for 5 s (")
    assert "continue the search with --resume once it answers" in last
    assert ended < 60  # the patience, a few back-off steps, Ray stopping its trials
    before = records(run)
    assert before and {r["status"] for r in before} <= {"completed", "interrupted"}
    assert all(r["reason"].startswith("cut short by the checkpoint store: ")
               for r in before if r["status"] == "interrupted")

    store.start()
    resumed = search(tmp_path, store.env, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    statuses = [r["status"] for r in records(run)]
    assert statuses.count("completed") == 4 and set(statuses) <= {"completed", "interrupted"}
    assert all(r in records(run) for r in before if r["status"] == "completed")  # kept


@pytest.mark.slow  # (no Ray: the probe refuses the store before; slow for its wait)
def test_a_store_that_accepts_connections_and_never_answers_is_refused_in_seconds(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel accepts connections; nothing ever answers them
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        started = time.monotonic()
        done = search(tmp_path, env)
    assert time.monotonic() - started < 30  # 2 requests x PROBE_TIMEOUT_S, and a start
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: study.checkpoints: cannot write to s3://{BUCKET}/")
    assert "Timeout was reached" in lines[0]
    assert not (tmp_path / "run").exists()


# --- the retry policy, without Ray ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now, self.waits = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def failing(times: int, error: BaseException):
    calls = []

    def operation():
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return operation, calls


STORE_DOWN = OSError("When getting information for key 'k' in bucket 'b': AWS Error "
                     "NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Could not "
                     "connect to server")


def test_a_store_failure_is_retried_with_growing_waits_until_it_answers(capsys):
    clock = Clock()
    operation, calls = failing(4, STORE_DOWN)
    assert outage.patiently(operation, "s3://b/p", 300, "trial 3: uploading a checkpoint",
                            clock.sleep, lambda: clock.now) == "done"
    assert len(calls) == 5 and clock.waits == [1, 2, 4, 8]
    said = capsys.readouterr().err.splitlines()
    assert len(said) == 4 and said[0].startswith(
        "autostage: trial 3: uploading a checkpoint: the checkpoint store s3://b/p failed "
        "(When getting information")


def test_a_store_away_past_the_patience_is_one_error_naming_it_and_what_to_do(capsys):
    clock = Clock()
    operation, calls = failing(1000, STORE_DOWN)
    with pytest.raises(outage.StoreUnavailable) as raised:
        outage.patiently(operation, "s3://b/p", 100, "", clock.sleep, lambda: clock.now)
    assert clock.now == 100 and max(clock.waits) == outage.LONGEST_WAIT_S
    assert str(raised.value).startswith("the checkpoint store s3://b/p did not answer for "
                                        "100 s (When getting information for key 'k'")
    assert "--resume" in str(raised.value)
    # what a trial's error says reaches the driver as the store's, not the trial's
    text = f"Traceback ...\nautostage.search.outage.StoreUnavailable: {raised.value}"
    assert outage.cut_by_store(text) == str(raised.value).partition(outage.ADVICE)[0]


@pytest.mark.parametrize("error", [FileNotFoundError("deleted"), OSError(28, "disk full"),
                                   ValueError("a bug")])
def test_what_waiting_cannot_mend_is_raised_at_once(error):
    clock = Clock()
    operation, calls = failing(1, error)
    with pytest.raises(type(error)):
        outage.patiently(operation, "s3://b/p", 300, "", clock.sleep, lambda: clock.now)
    assert len(calls) == 1 and clock.waits == []


def test_a_trial_failing_on_its_own_is_not_taken_for_the_store():
    assert outage.cut_by_store("Traceback ...\nValueError: loss is nan") is None
    assert outage.cut_by_store("OSError: [Errno 28] No space left on device") is None
    assert outage.cut_by_store(f"Traceback ...\nOSError: {STORE_DOWN}").startswith(
        "When getting information for key 'k'")


def test_the_patience_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(outage.PATIENCE_ENV, raising=False)
    assert outage.patience() == outage.PATIENCE_S
    monkeypatch.setenv(outage.PATIENCE_ENV, "42")
    assert outage.patience() == 42
    monkeypatch.setenv(outage.PATIENCE_ENV, "soon")
    with pytest.raises(AutostageError, match="AUTOSTAGE_STORE_PATIENCE_S='soon' is not a "
                                             "number of seconds"):
        outage.patience()
