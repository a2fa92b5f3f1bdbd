"""Ray for a search: starting a Ray of the search's own or joining a cluster, and what a local
Ray can give the trials. (Ray's settings are the package's: `autostage.search` sets them
before any of its modules imports Ray.)"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import ray

from autostage.errors import AutostageError, first_line
from autostage.search import ray_internals
from autostage.watchdog import guard, release


def check_address(address: str | None) -> None:
    """Refuse, in one line, an --address nothing answers at (Ray itself retries a dead
    address for minutes)."""
    if address == "auto":
        _probe(_auto_address(), given="auto")
    elif address and ":" in address and "://" not in address:
        _probe(address)


@contextlib.contextmanager
def ray_for(address: str | None, verbose: bool) -> Iterator[None]:
    """Ray for the search while the block runs: the one a caller (a test, a notebook) already
    started, else a Ray of the search's own or the cluster at `address` joined. A Ray of its
    own is shut down after, and goes with this process even when it is killed (a cluster's is
    not the search's to stop)."""
    owns_ray = not ray.is_initialized()
    watchdog = guard() if owns_ray and address is None else None
    try:
        if owns_ray:
            _start_ray(address, verbose)
        yield
    finally:
        if owns_ray:
            ray.shutdown()
        release(watchdog)


def _start_ray(address: str | None, verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    # A trial that raises is recorded with its reason; Ray's traceback is for -v only.
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(level if verbose else logging.CRITICAL)
    if not verbose:  # nor that of a trial raising as Ray stops the search (no one reads it)
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    try:
        # No --address: a Ray of our own, as promised — not the cluster RAY_ADDRESS or a
        # running `ray start` names (Ray's own default); `--address auto` joins those.
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=verbose,
                 logging_level=level, configure_logging=True)
    except Exception as e:  # ConnectionError, AuthenticationError, ... from ray.init
        if address is None:
            raise
        raise AutostageError(
            f"cannot join the Ray cluster at {address}: {first_line(e)}. Give the address "
            "`ray start --head` printed (or 'auto' on a cluster node); a cluster with token "
            "authentication (Ray's default) also needs RAY_AUTH_MODE=token here and its token "
            "in ~/.ray/auth_token or RAY_AUTH_TOKEN") from None


def _auto_address() -> str:
    """The cluster `--address auto` means, as Ray resolves it: RAY_ADDRESS, else the last
    `ray start` on this machine, else a running local Ray's GCS. Nothing to join is one line
    (Ray would otherwise wait on a stale address for minutes)."""
    try:
        return ray_internals.auto_address()
    except ConnectionError as e:
        raise AutostageError(f"--address auto: no Ray cluster to join ({first_line(e)}). Start one "
                             "with `ray start --head`, give its address, or leave --address "
                             "out for a local Ray of this search's own") from None


def _probe(address: str, given: str | None = None) -> None:
    import socket

    host, _, port = address.rpartition(":")
    said = f"{address} (--address {given})" if given else address
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as e:
        raise AutostageError(f"cannot join the Ray cluster at {said}: nothing answers there "
                             f"({e}). Give the address `ray start --head` printed, or 'auto' "
                             "on a cluster node") from None


def local_resources() -> tuple[float, Any]:
    """The CPUs, and a callable counting the GPUs (it may import torch: only called when a
    trial asks for some), that a search without --address can give its trials: those of the
    Ray this process already runs (a test, a notebook), else those a local Ray would detect
    on this machine (Ray's CPU count honours container limits; CUDA_VISIBLE_DEVICES holds)."""
    if ray.is_initialized():
        have = ray.cluster_resources()
        return have.get("CPU", 0.0), lambda: have.get("GPU", 0.0)
    cpus = ray_internals.num_cpus()

    def gpus() -> float:
        try:
            import torch

            return float(torch.cuda.device_count())
        except Exception:
            return 0.0

    return cpus, gpus


def threads(s: Any, on_cluster: bool) -> int:
    """torch threads per trial (per worker of a data-parallel trial): the study's
    `resources.threads` when set; else on our own Ray, the machine's cores shared by the
    trials' processes at once; on a cluster, the CPUs a trial (a worker) asks for (Ray may
    pack trials onto one node)."""
    if s.resources.threads:
        return s.resources.threads
    if on_cluster:
        return max(1, int(s.resources.cpus))
    processes = s.parallel * s.resources.workers
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // processes)
