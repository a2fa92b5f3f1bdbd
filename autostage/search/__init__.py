"""`autostage search`: Ray Tune runs the trials, Optuna samples them. This package is the
only part of autostage that imports Ray.

Trials are counted by autostage, not by Ray or Optuna (Ray's restore has holes, Optuna's
`n_trials` means "this many more"): the Optuna storage in the run directory holds the sampler's
history, our records say which trials finished, and a resumed search starts a fresh Tuner for
exactly the trials still missing. A trial interrupted by a killed driver is re-run with the same
parameters.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: trials per Ray Tuner: Ray keeps each trial of a Tuner in memory until its fit() returns
TRIALS_PER_TUNER = 500

# Before Ray is imported: no CSV/TensorBoard loggers per trial (overhead, clutter).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# Ray rewrites its whole experiment state (~30 kB per trial: a 1,000-trial search's is 32 MB)
# every 10-20 s by default, a cost that grows with the trials. autostage never restores from
# it (a resumed search starts from our records and optuna.db), so every 10 minutes is enough;
# Ray still writes it once at the end.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
# A trial's last report (its outcome) carries no metric: a failed trial has none to give.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Trials run where `autostage search` was started, so a study's relative paths (data files,
# a pretrained directory) mean in a trial what they meant to `validate`. (Ray's default runs
# each trial in a directory of its own, where `path = "corpus.txt"` is not found.)
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")

import optuna  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402

from autostage.branching import BranchPoints  # noqa: E402
from autostage.checkpoint_store import CheckpointStore, open_store  # noqa: E402
from autostage.errors import AutostageError  # noqa: E402
from autostage.models import ModelKeeper  # noqa: E402
from autostage.records import Branch, TrialRecord  # noqa: E402
from autostage.rundir import RunDir  # noqa: E402
from autostage.search import cluster, outage  # noqa: E402
from autostage.search.bridge import EarlyStops, EvalsOnly, StudySearch  # noqa: E402
from autostage.search.driver import Recorder, TokenBudget  # noqa: E402
from autostage.search.messages import TIME_ATTR, TRIAL  # noqa: E402
from autostage.search.retention import Retention  # noqa: E402
from autostage.search.storage import (  # noqa: E402
    open_storage,
    reconcile,
    sampler_seed,
    settle,
)
from autostage.search.warm import seed_sampler  # noqa: E402
from autostage.search.worker import SearchJob, run_one  # noqa: E402
from autostage.spec import Study  # noqa: E402
from autostage.trial_identity import TrialIdentity  # noqa: E402
from autostage.watchdog import guard, release  # noqa: E402


@dataclass
class SearchOutcome:
    run_dir: Path
    requested: int
    records: list[TrialRecord]  # outcomes, without their evals
    interrupted: bool


def run_search(study: Study, registry: Any, run: RunDir, *, resume: bool, address: str | None,
               view: Any, verbose: bool = False) -> SearchOutcome:
    """Run (or resume) the study's search into `run`; return the records when it ends."""
    from autostage.space import compile_space

    if address == "auto":
        _probe(_auto_address(), given="auto")
    elif address and ":" in address and "://" not in address:
        _probe(address)  # Ray itself retries a dead address for minutes
    space = compile_space(study, registry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run.path.mkdir(parents=True, exist_ok=True)
    storage = open_storage(study.study.storage or run.storage_url)
    if not resume and study.study.name in optuna.get_all_study_names(storage):
        raise AutostageError(f"the Optuna storage already holds a study named "
                             f"'{study.study.name}': continue it with --resume and --out the "
                             "run directory that started it, or rename the study (--set "
                             "study.name=...)")
    if not resume and study.study.warm_start:
        seeded = seed_sampler(study, space, optuna.create_study(
            study_name=study.study.name, storage=storage, directions=[
                "minimize" if m == "min" else "maximize" for m in study.study.modes]),
            registry)
        view.note(seeded.lines())
    remaining, spent = reconcile(study, space, run, storage) if resume else (study.study.trials, 0)
    view.start(study, done=study.study.trials - remaining, tokens=spent)
    if remaining <= 0:
        return SearchOutcome(run.path, study.study.trials, run.results(), False)
    owns_ray = not ray.is_initialized()  # a caller (a test, a notebook) may have started it
    # a Ray of our own goes with this process, even a killed one (a cluster's is not ours)
    watchdog = guard() if owns_ray and address is None else None
    if owns_ray:
        _start_ray(address, verbose)
    try:
        if address is not None:
            cluster.check(study, registry, run.path.resolve())
        models = ModelKeeper(run, study.study.keep_models, study.study.modes)
        store, part = open_store(study.study.checkpoints, run.path), 0
        population = _population(study, registry, run, store, storage, resume)
        retention = Retention(store, study.study.keep_checkpoints, population)
        if resume:
            retention.note_records(run.trials(), _waiting_branches(storage, study.study.name))
        while remaining > 0:
            # Ray Tune keeps every trial of a Tuner in memory until fit() returns (~0.1 MB
            # each): trials run in Tuners of at most TRIALS_PER_TUNER, so Ray's share of the
            # driver's memory stays bounded however many trials a study has
            batch = min(remaining, TRIALS_PER_TUNER)
            experiment = f"ray-{time.strftime('%Y%m%d-%H%M%S')}" + (f"-{part}" if part else "")
            # (a Tuner writes to the store as it starts: retried while the store is away)
            tuner, stops = _patiently(store, "starting Ray Tune", functools.partial(
                _tuner, study, registry, space, run, storage, batch, spent, view, models,
                store, on_cluster=address is not None, name=experiment, population=population,
                retention=retention))
            _fit(tuner, stops, storage, study, run, store)
            store.drop_ray_state(experiment)
            records = run.results()
            left = study.study.trials - sum(r.status.finished for r in records)
            # trials the checkpoint store cut were queued again: the next Tuner runs them
            if left > remaining - batch + stops.budget.store.requeued or \
                    stops.budget.spent_out():
                break  # interrupted (Ctrl-C), or the budget is spent
            remaining, spent, part = left, sum(r.tokens for r in records), part + 1
    finally:
        if owns_ray:
            ray.shutdown()
        release(watchdog)
    records = run.results()
    finished = sum(r.status.finished for r in records)
    budget_spent = (study.study.token_budget is not None
                    and sum(r.tokens for r in records) >= study.study.token_budget)
    return SearchOutcome(run.path, study.study.trials, records,
                         finished < study.study.trials and not budget_spent)


def _population(study: Study, registry: Any, run: RunDir, store: CheckpointStore,
                storage: Any, resume: bool) -> BranchPoints | None:
    """The branch points of a study whose trial scheduler branches (None: it does not);
    a resumed search starts with those its records hold."""
    s = study.study
    brancher = registry.create("trial_scheduler", s.trial_scheduler,
                               s.trial_scheduler_settings).branching(s.metrics[0], s.modes[0])
    if brancher is None:
        return None
    from autostage.space import compile_space

    population = BranchPoints(brancher, s.metrics[0], sampler_seed(s.seed, storage, s.name),
                              compile_space(study, registry).plans)
    if resume:
        population.note_records(run.trials(), study.final.name if study.final else None,
                                store.resolve, store.missing)
    return population


def _waiting_branches(storage: Any, name: str) -> list[Branch]:
    """The branched trials a resume re-queued: their checkpoints must wait for them."""
    waiting = optuna.load_study(study_name=name, storage=storage).get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    return [b for t in waiting if (b := TrialIdentity.from_optuna(t, 0).branch) is not None]


def _fit(tuner: tune.Tuner, stops: EarlyStops, storage: Any, study: Study, run: RunDir,
         store: CheckpointStore | None = None) -> None:
    try:
        tuner.fit()
        settle(storage, study.study.name, run)
    except Exception as e:
        if stops.refused is not None:
            raise stops.refused from None
        if _disk_full(e):
            raise AutostageError(
                f"the disk holding {run.path} is full (no space left on device): free "
                "some space, then continue the search with --resume (every trial "
                "recorded so far is kept)") from None
        if stops.budget.store.down is not None:  # (Ray then fails to list what it wrote)
            raise stops.budget.store.down from None
        if store is not None and store.remote and outage.store_error_in(e) is not None:
            # Ray reads back what the trials wrote as fit() ends (its ResultGrid, unused
            # here): the store failing then costs nothing once it answers again; the loop
            # counts the trials recorded, and a resume runs any that are not
            outage.wait_for(store, outage.patience(), "Ray Tune ending")
            settle(storage, study.study.name, run)
            return
        raise
    if stops.budget.store.down is not None:  # the store stayed away: Ray stopped the trials
        raise stops.budget.store.down from None


def _patiently(store: CheckpointStore, what: str, operation: Any) -> Any:
    """`operation()`, retried while object storage fails (see `outage`)."""
    if not store.remote:
        return operation()
    return outage.patiently(operation, store.uri(store.path), outage.patience(), what)


def _disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it came from, is a full disk: an OSError (ENOSPC, EDQUOT)
    from our own writes, SQLite's "database or disk is full" through SQLAlchemy and Optuna, or
    either as text in the traceback Ray wraps its callbacks' errors in."""
    import errno

    seen = 0
    while error is not None and seen < 20:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(error) for text in ("No space left on device",
                                               "database or disk is full")):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


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
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AutostageError(
            f"cannot join the Ray cluster at {address}: {first}. Give the address `ray start "
            "--head` printed (or 'auto' on a cluster node); a cluster with token "
            "authentication (Ray's default) also needs RAY_AUTH_MODE=token here and its token "
            "in ~/.ray/auth_token or RAY_AUTH_TOKEN") from None


def _auto_address() -> str:
    """The cluster `--address auto` means, as Ray resolves it: RAY_ADDRESS, else the last
    `ray start` on this machine, else a running local Ray's GCS. Nothing to join is one line
    (Ray would otherwise wait on a stale address for minutes)."""
    from ray._private.services import canonicalize_bootstrap_address_or_die

    try:
        return canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AutostageError(f"--address auto: no Ray cluster to join ({first}). Start one "
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
    try:
        from ray._private.utils import get_num_cpus

        cpus = float(get_num_cpus())
    except Exception:  # a Ray whose private helper moved: the OS's count
        cpus = float(os.cpu_count() or 1)

    def gpus() -> float:
        try:
            import torch

            return float(torch.cuda.device_count())
        except Exception:
            return 0.0

    return cpus, gpus


def _tuner(study: Study, registry: Any, space: Any, run: RunDir, storage: Any,
           trials: int, spent: int, view: Any, models: ModelKeeper, store: CheckpointStore,
           on_cluster: bool, name: str, population: BranchPoints | None = None,
           retention: Retention | None = None) -> tuple[tune.Tuner, EarlyStops]:
    from autostage.space import suggest

    s = study.study
    metrics = s.metrics if len(s.metrics) > 1 else s.metrics[0]
    modes = s.modes if len(s.metrics) > 1 else s.modes[0]
    searcher = StudySearch(
        space=functools.partial(suggest, space), metric=metrics, mode=modes,
        sampler=_picklable(s.sampler, registry.create("sampler", s.sampler,
                                                      s.sampler_settings).build(
            seed=sampler_seed(s.seed, storage, s.name))),
        study_name=s.name, storage=storage,
    )
    searcher.population, searcher.retention = population, retention
    searcher.study_seed = s.seed
    max_t = _max_final_evals(study)
    scheduler = registry.create("trial_scheduler", s.trial_scheduler,
                                s.trial_scheduler_settings).build(
        metric=s.metrics[0], mode=s.modes[0], time_attr=TIME_ATTR, max_t=max_t)
    budget = TokenBudget(s.token_budget, spent)
    stops = searcher.stops = EarlyStops(s.trial_scheduler, budget)
    search_id = uuid.uuid4().hex
    job = SearchJob(study, space, run.path.resolve(), ray.get_runtime_context().get_node_id(),
                    search_id, threads=_threads(s, on_cluster),
                    load_plugins=os.environ.get("AUTOSTAGE_LOAD_PLUGINS"),
                    every_eval=s.trial_scheduler != "fifo", store=store,
                    within_final=population is not None, store_patience=outage.patience())
    recorder = Recorder(run, stops, view, models, s, store, search_id, population, retention)
    recorder.requeue, recorder.patience = searcher.requeue, job.store_patience
    trainable = tune.with_resources(tune.with_parameters(run_one, job=job),
                                    {"cpu": s.resources.cpus, "gpu": s.resources.gpus})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=EvalsOnly(scheduler, stops, max_t),
            num_samples=trials, max_concurrent_trials=s.parallel, reuse_actors=True,
            trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=store.path,
            storage_filesystem=store.filesystem, verbose=0, stop=budget,
            callbacks=[recorder],
            failure_config=tune.FailureConfig(max_failures=s.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
    return tuner, stops


def _picklable(name: str, sampler: Any) -> Any:
    """`sampler`, if Ray can pickle it (it does when a Tuner starts and at every experiment
    checkpoint); else one line naming the plugin, not Ray's traceback from inside Tuner."""
    try:
        ray.cloudpickle.dumps(sampler)
    except Exception as e:
        raise AutostageError(
            f"study.sampler: the '{name}' plugin built a {type(sampler).__name__} that cannot "
            f"be pickled ({type(e).__name__}: {e}), which Ray needs to save the search; a "
            "sampler plugin must build a picklable sampler (autostage.testing.SamplerContract "
            "checks it)") from None
    return sampler


def _threads(s: Any, on_cluster: bool) -> int:
    """torch threads per trial: on our own Ray, the machine's cores shared by the trials at
    once; on a cluster, the CPUs a trial asks for (Ray may pack trials onto one node)."""
    if on_cluster:
        return max(1, int(s.resources.cpus))
    return max(1, int(ray.cluster_resources().get("CPU", 1)) // s.parallel)


def _trial_dirname(trial: Any) -> str:
    # addressable: stage-boundary checkpoints of trial n live in ray-<time>/trial-<n>/
    return f"trial-{trial.config.get(TRIAL, trial.trial_id)}"


def _max_final_evals(study: Study) -> int:
    from autostage.space import stage_plans

    def evals(name: str) -> int:
        stage = study.stage_named(name)
        return math.ceil(stage.tokens / stage.every)

    if study.final is not None:
        return evals(study.final.name)
    return max(sum(map(evals, plan)) for plan in stage_plans(study.stage, study.search.plan))
