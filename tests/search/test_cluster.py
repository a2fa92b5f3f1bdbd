"""A search on a real two-node Ray cluster whose worker node cannot see the driver's files,
with checkpoints on a real S3 endpoint (moto's server on loopback: HTTP, no mock objects).

On one machine: a head node with no CPUs (so every trial runs on the other node) and a worker
node started in a mount namespace of its own (`unshare`), where the test's folder — the study
file, the run directory — is covered by an empty folder. The driver (`autostage search`) runs
here, as a user would run it. Nothing is shared between the nodes but Ray and S3.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import wait_for
from support.studies import tiny_lm_study, toy_study

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
AUTOSTAGE = str(Path(sys.executable).with_name("autostage"))
BUCKET = "autostage-test"

STUDY = toy_study(
    "study.name=cluster", "study.trials=6", "study.sampler=random", "study.retries=1",
    "study.keep_models=1",
    "model.step_seconds=0.03",  # ~5 s a trial: time to kill a worker mid-stage
    "stage.prereq.tokens=60_000", "stage.target.tokens=120_000")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a loopback port, with one bucket; the AWS variables that reach it."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        wait_for(lambda: urllib.request.urlopen(env["AWS_ENDPOINT_URL"], timeout=1).status == 200,
              30, "moto's S3 server")
        _client(env).create_bucket(Bucket=BUCKET)
        yield env
    finally:
        server.terminate()
        server.wait(10)


def _client(env: dict):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@dataclass
class Cluster:
    address: str
    hidden: Path  # the driver's folder: study files and run directories
    worker_view: Path  # what the worker node sees at `hidden` (stays empty if it wrote none)
    env: dict


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    hidden = tmp_path_factory.mktemp("driver")
    worker_view = tmp_path_factory.mktemp("worker-view")
    port = free_port()
    # token authentication (Ray's default), with a token of this cluster's own; no AWS keys
    # on the nodes: the checkpoint store brings them
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--block", "--disable-usage-stats", f"--dashboard-agent-listen-port={free_port()}"]
    head = subprocess.Popen(
        [RAY, "start", "--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
         *common],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # one (pretend) GPU: Ray schedules by the resource it declares, whatever the hardware
    script = ('mount --bind "$VIEW" "$HIDDEN" && exec "$RAY" start --address="$ADDRESS" '
              '--num-cpus=2 --num-gpus=1 ' + " ".join(common))
    node = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
        env={**env, "VIEW": str(worker_view), "HIDDEN": str(hidden), "RAY": RAY,
             "ADDRESS": f"127.0.0.1:{port}"},
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        wait_for(lambda: _alive_nodes(address, env) == 2, 90, "a two-node Ray cluster")
        yield Cluster(address, hidden, worker_view, env)
    finally:
        for process in (node, head):
            _stop(process)
        _forget(address)


def _alive_nodes(address: str, env: dict) -> int:
    done = subprocess.run([RAY, "status", f"--address={address}"], env=env,
                          capture_output=True, text=True, timeout=30)
    active = done.stdout.partition("Active:")[2].partition("Pending:")[0]
    return len(re.findall(r"^\s*1 node_", active, re.MULTILINE))


def _stop(process: subprocess.Popen) -> None:
    """End a `ray start --block` and every process it started (its session)."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _forget(address: str) -> None:
    """`ray start` names its cluster in /tmp/ray/ray_current_cluster, where a later
    `ray.init()` or `--address auto` would find this dead one."""
    current = Path("/tmp/ray/ray_current_cluster")
    try:
        if address.split(":")[1] in current.read_text():
            current.unlink()
    except OSError:
        pass


def search(cluster: Cluster, study: Path, out: Path, *args: str, env: dict | None = None,
           wait: bool = True):
    argv = [AUTOSTAGE, "search", str(study), "--out", str(out), "--address", cluster.address,
            *args]
    full_env = {**cluster.env, **(env or {})}
    if not wait:
        return subprocess.Popen(argv, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=600)


def events(out: Path, number: int) -> list[dict]:
    path = out / "trials" / str(number) / "events.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def test_a_search_on_nodes_that_cannot_see_the_run_directory_checkpoints_to_s3_and_survives_a_killed_worker_and_driver(  # noqa: E501
        cluster, s3):
    study = cluster.hidden / "study.toml"
    study.write_text(STUDY)
    out = cluster.hidden / "run"
    uri = f"s3://{BUCKET}/runs/cluster"
    driver = search(cluster, study, out, "--checkpoints", uri, env=s3, wait=False)
    try:
        # a trial past its stage boundary (checkpointed to S3), training its last stage
        victim = None
        deadline = time.monotonic() + 180
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            for number in range(6):
                evs = events(out, number)
                if any(e.get("checkpoint") for e in evs) and not (
                        out / "trials" / str(number) / "result.json").exists():
                    victim = number, evs
                    break
            time.sleep(0.1)
        assert victim is not None, driver.communicate(timeout=60)
        number, before = victim
        # named relative to the store's prefix (a copied prefix names its own objects)
        assert all(e["checkpoint"].startswith("ray-") for e in before if e.get("checkpoint"))
        os.kill(before[-1]["worker"], signal.SIGKILL)  # the trial's Ray worker, mid-stage
        # let the retry finish and a few more trials end, then kill the driver itself
        wait_for(lambda: driver.poll() is not None or (
            (out / "trials" / str(number) / "result.json").exists()
            and len(list(out.glob("trials/*/result.json"))) >= 3), 240, "the retried trial")
        assert driver.poll() is None, ("the search ended before its driver could be killed",
                                       driver.communicate())
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert len(list(out.glob("trials/*/result.json"))) < 6

    resumed = search(cluster, study, out, "--checkpoints", uri, "--resume", env=s3)
    assert resumed.returncode == 0, resumed.stderr
    statuses = [json.loads(p.read_text())["status"] for p in out.glob("trials/*/result.json")]
    # trials the killed driver left running were recorded as interrupted and re-queued
    assert statuses.count("completed") == 6
    assert set(statuses) == {"completed", "interrupted"}

    # the killed trial resumed from its S3 checkpoint: the evals up to it were kept as the
    # killed worker recorded them (a start from scratch records them again, from another
    # worker), the rest came from the retry, and it trained its whole plan once
    after = events(out, number)
    killed = before[-1]["worker"]
    kept = [e for e in after if e["worker"] == killed]
    assert kept and kept == after[:len(kept)] and kept == before[:len(kept)]
    assert kept[-1].get("checkpoint") and len(kept) < len(after)
    assert [e["tokens"] for e in after] == sorted({e["tokens"] for e in after})
    records = [json.loads(p.read_text()) for p in out.glob("trials/*/result.json")]
    planned = {r["tokens"] for r in records if r["status"] == "completed"}
    assert len(planned) == 1  # every plan trains the same whole steps; the retry no more

    # the checkpoints were in the bucket (the retry above read one); once every trial ended
    # no branch could start from them (keep_checkpoints = "needed"): they were deleted there.
    # The best model was moved from the bucket into models/
    keys = [o["Key"] for page in _client(s3).get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="runs/cluster/") for o in page.get("Contents", [])]
    assert not any("/checkpoint_" in k for k in keys), keys
    kept_models = list((out / "models").iterdir())
    assert len(kept_models) == 1 and any(kept_models[0].iterdir())
    # and the worker node wrote nothing where the driver's files are (its view stayed empty)
    assert list(cluster.worker_view.iterdir()) == []


def test_without_checkpoint_storage_a_run_directory_the_nodes_cannot_see_is_refused_up_front(
        cluster):
    study = cluster.hidden / "unshared.toml"
    study.write_text(STUDY)
    out = cluster.hidden / "unshared-run"
    started = time.monotonic()
    done = search(cluster, study, out)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"the run directory {out} is not there on the Ray node" in lines[0]
    assert "--checkpoints s3://" in lines[0]
    assert time.monotonic() - started < 60
    assert not out.exists()  # nothing written


def test_a_data_file_only_the_driver_has_is_named_up_front(cluster, s3):
    (cluster.hidden / "corpus.txt").write_text("All work and no play makes a dull study. " * 50)
    study = cluster.hidden / "data.toml"
    study.write_text(STUDY.replace('[data.prereq]\ndataset = "toy_task"',
                                   '[data.prereq]\ndataset = "text"\npath = "corpus.txt"'))
    out = cluster.hidden / "data-run"
    done = search(cluster, study, out, "--checkpoints", f"s3://{BUCKET}/runs/data", env=s3)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: data.prereq.path: {cluster.hidden / 'corpus.txt'} is "
                               "not there on the Ray node")
    assert "same path on every node" in lines[0]
    assert not out.exists()


def test_resources_no_node_has_are_an_error_after_a_bounded_wait(cluster, s3):
    study = cluster.hidden / "big.toml"
    study.write_text(STUDY)
    out = cluster.hidden / "big-run"
    started = time.monotonic()
    done = search(cluster, study, out, "--set", "study.resources.cpus=64", "--checkpoints",
                  f"s3://{BUCKET}/runs/big", env={**s3, "AUTOSTAGE_RESOURCE_WAIT_S": "3"})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "study.resources asks each trial for 64 CPUs; no node of the Ray cluster has that " \
           "(waited 3 s; its nodes: " in lines[0]
    assert "2 CPUs and 1 GPU" in lines[0]
    assert time.monotonic() - started < 60
    assert not out.exists()


def test_a_checkpoint_store_that_cannot_be_written_is_one_line_before_anything_starts(
        cluster, s3):
    study = cluster.hidden / "nobucket.toml"
    study.write_text(STUDY)
    out = cluster.hidden / "nobucket-run"
    done = search(cluster, study, out, "--checkpoints", "s3://no-such-bucket/x", env=s3)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: study.checkpoints: cannot write to s3://no-such-bucket/x")
    assert "AWS_ENDPOINT_URL" in lines[0]
    assert not out.exists()



GPT2 = tiny_lm_study(
    "study.name=gpu", "study.trials=2", "study.parallel=2",
    "study.resources={ cpus = 1, gpus = 0.5 }",  # two trials share one GPU
    "search.optimizer.adamw.lr={ low = 1e-3, high = 1e-2, log = true }",
    drop=("model.eval_batches",))


def test_trials_share_a_gpu_by_fractions_and_one_given_a_gpu_torch_cannot_see_fails_clearly(
        cluster, s3):
    """The worker node declares one GPU (there is none): Ray gives both trials GPU 0 at 0.5
    each, at once; torch (a CPU build) sees no CUDA, so each fails saying so instead of
    training on the CPU unnoticed."""
    study = cluster.hidden / "gpu.toml"
    study.write_text(GPT2)
    out = cluster.hidden / "gpu-run"
    done = search(cluster, study, out, "--checkpoints", f"s3://{BUCKET}/runs/gpu", env=s3)
    assert done.returncode == 1, done.stdout + done.stderr
    records = [json.loads(p.read_text()) for p in out.glob("trials/*/result.json")]
    assert len(records) == 2 and {r["status"] for r in records} == {"failed"}
    for record in records:
        assert record["reason"].startswith("model.device: this trial was given GPU 0 "
                                           "(CUDA_VISIBLE_DEVICES, which Ray sets from "
                                           "study.resources.gpus), but torch sees no CUDA"), \
            record["reason"]
