"""Every use autostage makes of a private name of Ray, in one place.

A private name (a leading underscore, a `_private` or `_internal` module) comes with no
promise: a Ray release may rename it without a deprecation warning, and the code reaching for
it breaks in a user's search. Each function here is one such use, with why no public API
serves. tests/search/test_internals.py checks that every name still exists with the shape used
here, and fails in one line naming the installed Ray when one is gone; pyproject.toml bounds
Ray to the releases checked.

Ray is imported inside each function: importing this module costs nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# --- the cluster's key-value store (a trial's time limit: `time_limit`) -------------------------
# A trial's worker that runs past its time limit leaves the reason where the driver finds it,
# on any node of a cluster. Ray has no public key-value store. The public way, a named actor
# holding a dict, costs a process per search that the driver must start before the first
# trial (an actor a trial's worker starts dies with that worker, and the time limit ends it
# with os._exit) and the watchdog must end. Ray Tune keeps its own registry in this store
# through these very functions (ray.tune.registry): they change only together with Tune.


def kv_put(key: str, value: bytes) -> None:
    """Store `value` under `key` in Ray's GCS key-value store (overwriting)."""
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(key, value)


def kv_get(key: str) -> bytes | None:
    """The value under `key` in Ray's GCS key-value store (None: none)."""
    from ray.experimental.internal_kv import _internal_kv_get

    return _internal_kv_get(key)


def kv_del(key: str) -> None:
    """Remove `key` from Ray's GCS key-value store (no error when it is not there)."""
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(key)


# --- OptunaSearch's own state (the searcher: `bridge.StudySearch`) ------------------------------
# StudySearch extends Ray's OptunaSearch, which builds its Optuna study itself and keeps, per
# Ray trial, the Optuna trial it asked for; it shows neither. `suggest` returns only the
# parameters: the trial's number, the trial to report to and to tell, and the study to queue
# a branch in have no public route. (A second `optuna.load_study` over the same storage could
# queue and read trials, but `tell` must go through the searcher's own sampler, and the trials
# map has no substitute at all.)


def searcher_study(searcher: Any) -> Any:
    """The `optuna.Study` an OptunaSearch asks and tells (None before its search properties
    are set)."""
    return searcher._ot_study


def searcher_trials(searcher: Any) -> dict[str, Any]:
    """An OptunaSearch's open trials: Ray trial id -> the `optuna.Trial` it asked for. The
    searcher's own dict: removing a told trial shrinks what Ray pickles at every save."""
    return searcher._ot_trials


def completed_trials(searcher: Any) -> set[str]:
    """The Ray trial ids an OptunaSearch has told Optuna about. Its own set: a searcher that
    tells a trial itself adds it, or OptunaSearch would report to (and restore) a told
    trial."""
    return searcher._completed_trials


# --- AsyncHyperBand's brackets (plugins/ray_trial_schedulers.BracketsInTurn) ---------------------


def assign_bracket(scheduler: Any, trial_id: str, turn: int) -> None:
    """Put trial `trial_id` of an AsyncHyperBandScheduler in bracket `turn` mod brackets.

    Ray's `on_trial_add` draws the bracket from NumPy's global RNG, and has no argument or
    hook to choose it. Seeding that RNG around the call would be public, but each trial's
    bracket would still be a weighted draw, not its turn: the trials stopped would change."""
    brackets = scheduler._brackets
    scheduler._trial_info[trial_id] = brackets[turn % len(brackets)]


# --- a trial's report counts (the worker: a checkpoint upload retried) --------------------------


def checkpoint_rewinder() -> Callable[[], None]:
    """A function that sets this trial's report count and checkpoint index back to what they
    are now, so a retried `tune.report` with a checkpoint writes the same folder again.

    `ray.tune.report` counts a report and numbers its checkpoint folder before uploading, and
    Ray's public API shows neither count (`ray.tune.get_context().get_storage()`, a
    DeveloperAPI, reaches the index but not the report count). A Ray without them: the
    rewinder does nothing, and a retry takes the next folder's number."""
    try:
        from ray.train._internal.session import get_session
    except ImportError:
        return lambda: None
    session = get_session()
    storage = getattr(session, "storage", None)
    counts = (getattr(session, "iteration", None),
              getattr(storage, "current_checkpoint_index", None))

    def rewind() -> None:
        if None not in counts:
            session.iteration, storage.current_checkpoint_index = counts

    return rewind


# --- a data-parallel trial's failure (`data_parallel`) ------------------------------------------


def worker_exception(failure: BaseException) -> BaseException:
    """The exception a Ray Train worker raised, out of the wrapper Ray Train hands back in
    `WorkerGroupError.worker_failures` (`UserExceptionWithTraceback`, which shows only the
    traceback's text and keeps the exception private); any other failure as it is (a worker
    that died). Re-raised in the trial's Tune process, the exception is what the driver
    records and reads for a store outage, as from a one-process trial."""
    return getattr(failure, "_base_exc", failure)


def worker_died(failure: BaseException) -> bool:
    """Whether a failure in `WorkerGroupError.worker_failures` says the worker's process
    ended (it failed or missed Ray Train's health check), not that its code raised. Ray Train
    exports neither health-check error (both live in `ray.train.v2._internal`)."""
    from ray.train.v2._internal.exceptions import (
        WorkerHealthCheckFailedError,
        WorkerHealthCheckTimeoutError,
    )

    return isinstance(failure, WorkerHealthCheckFailedError | WorkerHealthCheckTimeoutError)


# --- a local Ray's resources and a cluster's address (search start-up) --------------------------


def num_cpus() -> float:
    """The CPUs a local Ray would give this machine's trials.

    `os.cpu_count()` counts the machine's cores, not a container's CPU quota; Ray's own count
    (what `ray.init` would detect) honours it, and a search sizes its trials before starting
    Ray. A Ray whose helper moved: the OS's count."""
    try:
        from ray._private.utils import get_num_cpus

        return float(get_num_cpus())
    except Exception:
        return float(os.cpu_count() or 1)


def auto_address() -> str:
    """The cluster `--address auto` means, as Ray resolves it: RAY_ADDRESS, else the last
    `ray start` on this machine, else a running local Ray's GCS. Raises ConnectionError when
    there is none (or several).

    `ray.init(address="auto")` resolves the same address only by joining it, and waits on a
    stale one for minutes; no public function only resolves it."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    return canonicalize_bootstrap_address_or_die("auto")
