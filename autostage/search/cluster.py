"""Checks on a Ray cluster (`--address`) before any trial starts, each a one-line error:

- some node can hold a trial's `study.resources` — waited for a bounded time (an autoscaler
  may be adding one), where Ray Tune would wait forever;
- every node that may run a trial sees what the driver's study names on its own filesystem:
  the files and folders of path fields (data, a pretrained model, a tokenizer), at the same
  size; and, when checkpoints go to the run directory (no `study.checkpoints`), the run
  directory itself — Ray writes checkpoints there from whichever node a trial runs on.

autostage ships no files to the nodes: a cluster without a shared filesystem gets its data
at the same path on every node (baked into the image, synced) and `study.checkpoints` on
object storage.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import ray

from autostage.errors import AutostageError
from autostage.fields import fields_of
from autostage.spec import Resources, Study

#: seconds to wait for a node that can hold a trial (AUTOSTAGE_RESOURCE_WAIT_S overrides)
RESOURCE_WAIT_S = 60.0
PROBE_TIMEOUT_S = 60.0


def check(study: Study, registry: Any, run_path: Path, wait: float | None = None) -> None:
    nodes = nodes_for(study.study.resources, _wait(wait))
    _check_workers(study.study.resources, nodes)
    driver = ray.get_runtime_context().get_node_id()
    others = [n for n in nodes if n["NodeID"] != driver]
    if not others:
        return  # every trial runs beside the driver: it sees what the driver sees
    wanted = dict(study_paths(study, registry))
    marker = None
    if study.study.checkpoints is None:
        marker = run_path / f".autostage-shared-{os.getpid()}"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("is this run directory shared with the other nodes?")
        wanted["--out"] = str(marker)
    try:
        _check_nodes(others, wanted, {p: _size(p) for p in wanted.values()})
    finally:
        if marker is not None:
            marker.unlink(missing_ok=True)


def _wait(wait: float | None) -> float:
    if wait is not None:
        return wait
    try:
        return float(os.environ.get("AUTOSTAGE_RESOURCE_WAIT_S", RESOURCE_WAIT_S))
    except ValueError:
        return RESOURCE_WAIT_S


def nodes_for(resources: Resources, wait: float) -> list[dict[str, Any]]:
    """The alive nodes whose resources hold one trial; none after `wait` seconds is an
    error naming what was asked and what the nodes have."""
    deadline = time.monotonic() + wait
    while True:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        fitting = [n for n in alive if _fits(n.get("Resources", {}), resources)]
        if fitting:
            return fitting
        if time.monotonic() >= deadline:
            raise AutostageError(
                f"study.resources asks each trial for {_amount(resources.cpus, resources.gpus)}"
                f"; no node of the Ray cluster has that (waited {wait:.0f} s; its nodes: "
                f"{_inventory(alive)}). Ask for less (--set study.resources.cpus=N, "
                "study.resources.gpus=F: a fraction shares a GPU), or add a node that has it "
                "(AUTOSTAGE_RESOURCE_WAIT_S sets how long an autoscaler is given)")
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _check_workers(resources: Resources, nodes: list[dict[str, Any]]) -> None:
    """A data-parallel trial's workers (each holding `resources`) fit the nodes together."""
    w = resources.workers
    if w == 1:
        return
    cpus = sum(n["Resources"].get("CPU", 0.0) for n in nodes)
    gpus = sum(n["Resources"].get("GPU", 0.0) for n in nodes)
    if w * resources.cpus > cpus or w * resources.gpus > gpus:
        raise AutostageError(
            f"study.resources.workers = {w}, each with {_amount(resources.cpus, resources.gpus)}"
            f", asks every trial for {_amount(w * resources.cpus, w * resources.gpus)}; the "
            f"nodes that can hold a worker have {_amount(cpus, gpus)} together. Use fewer "
            "workers, or add nodes")


def _fits(have: dict[str, float], resources: Resources) -> bool:
    return have.get("CPU", 0.0) >= resources.cpus and have.get("GPU", 0.0) >= resources.gpus


def _amount(cpus: float, gpus: float) -> str:
    text = f"{cpus:g} CPU{'s' if cpus != 1 else ''}"
    return text + (f" and {gpus:g} GPU{'s' if gpus != 1 else ''}" if gpus else "")


def _inventory(nodes: list[dict[str, Any]]) -> str:
    if not nodes:
        return "none alive"
    return "; ".join(f"{n.get('NodeManagerAddress', '?')}: "
                     f"{_amount(n['Resources'].get('CPU', 0.0), n['Resources'].get('GPU', 0.0))}"
                     for n in nodes)


def study_paths(study: Study, registry: Any) -> list[tuple[str, str]]:
    """(field, path) of every path field of [model] and [data.*] that names a path here
    (a `PathOrName` holding a hub name names none)."""
    tables = [("trainer", study.model.trainer, study.model.settings, "model")]
    tables += [("dataset", s.dataset, s.settings, f"data.{name}")
               for name, s in study.data.items()]
    found = []
    for kind, name, settings, where in tables:
        for key, info in fields_of(registry.get(kind, name)).items():
            value = settings.get(key)
            if info.path is not None and isinstance(value, str) and Path(value).is_absolute() \
                    and os.path.exists(value):
                found.append((f"{where}.{key}", value))
    return found


def _size(path: str) -> int | None:
    """A file's size (a folder's: None; its presence is what is checked)."""
    return os.path.getsize(path) if os.path.isfile(path) else None


@ray.remote(num_cpus=0)
def _seen(paths: list[str]) -> dict[str, int | None | bool]:
    """On one node: each path's size, None for a folder, False where it is missing."""
    return {p: (os.path.getsize(p) if os.path.isfile(p) else None) if os.path.exists(p)
            else False for p in paths}


def _check_nodes(nodes: list[dict[str, Any]], wanted: dict[str, str],
                 sizes: dict[str, int | None]) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not wanted:
        return
    paths = sorted(set(wanted.values()))
    pending = {n["NodeID"]: _seen.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n["NodeID"], soft=False)).remote(paths) for n in nodes}
    where = {n["NodeID"]: n.get("NodeManagerAddress", "?") for n in nodes}
    for node, ref in pending.items():
        try:
            seen = ray.get(ref, timeout=PROBE_TIMEOUT_S)
        except Exception as e:  # GetTimeoutError, a node that died meanwhile
            raise AutostageError(f"cannot check the Ray node {where[node]} (node "
                                 f"{node[:8]}): {type(e).__name__}: {e}".splitlines()[0]) \
                from None
        for field, path in wanted.items():
            if (problem := _difference(seen[path], sizes[path])) is not None:
                raise AutostageError(_unseen(field, path, problem, where[node], node))


def _difference(there: int | None | bool, here: int | None) -> str | None:
    if there is False:
        return "is not there"
    if here is not None and there != here:
        return f"holds {there:,} bytes there, {here:,} here"
    return None


def _unseen(field: str, path: str, problem: str, address: str, node: str) -> str:
    at = f"on the Ray node {address} (node {node[:8]}), which may run trials"
    if field == "--out":
        folder = os.path.dirname(path)
        return (f"the run directory {folder} {problem} {at}: Ray writes the trials' "
                "checkpoints there from every node. Give checkpoints a place every node "
                "reaches: --checkpoints s3://bucket/prefix (or study.checkpoints; a folder "
                "every node mounts works too)")
    return (f"{field}: {path} {problem} {at}; autostage does not copy a study's files to the "
            "nodes: put it at the same path on every node (or on a filesystem they all "
            "mount)")
