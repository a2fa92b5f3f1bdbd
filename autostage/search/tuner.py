"""One Ray Tuner of a search: the searcher (Optuna), the trial scheduler, the trainable and
the driver's callbacks, wired for a batch of trials."""

from __future__ import annotations

import functools
import math
import os
import uuid
from typing import TYPE_CHECKING, Any

import ray
from ray import tune

from autostage.errors import AutostageError
from autostage.search import outage
from autostage.search.bridge import EarlyStops, EvalsOnly, StudySearch
from autostage.search.driver import Recorder, SearchEnd
from autostage.search.messages import TIME_ATTR, TRIAL
from autostage.search.ray_start import threads
from autostage.search.storage import sampler_seed
from autostage.search.worker import SearchJob, run_one
from autostage.spec import Study

if TYPE_CHECKING:
    from autostage.search.lifecycle import Search


def build_tuner(search: Search, trials: int, spent: int,
                name: str) -> tuple[tune.Tuner, EarlyStops]:
    """A Tuner running `trials` more trials of `search` into the Ray experiment `name`, the
    search having spent `spent` tokens so far; and what tells why its trials stop early."""
    s = search.study.study
    searcher = _searcher(search)
    max_t = _max_final_evals(search.study)
    scheduler = search.registry.create("trial_scheduler", s.trial_scheduler,
                                       s.trial_scheduler_settings).build(
        metric=s.metrics[0], mode=s.modes[0], time_attr=TIME_ATTR, max_t=max_t)
    budget = SearchEnd(s.token_budget, spent, s.target, s.modes[0])
    stops = searcher.stops = EarlyStops(s.trial_scheduler, budget)
    job = _job(search)
    recorder = Recorder(search.run, stops, search.view, search.models, s, search.store,
                        job.search_id, search.population, search.retention)
    recorder.requeue, recorder.patience = searcher.requeue, job.store_patience
    recorder.trackers = search.trackers
    trainable = tune.with_parameters(run_one, job=job)
    if s.resources.workers > 1:
        from autostage.search import data_parallel

        trainable = data_parallel.trainable(trainable)
    trainable = tune.with_resources(trainable, _trial_resources(s.resources))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=EvalsOnly(scheduler, stops, max_t),
            num_samples=trials, max_concurrent_trials=s.parallel, reuse_actors=True,
            trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=search.store.path,
            storage_filesystem=search.store.filesystem, verbose=0, stop=budget,
            callbacks=[recorder],
            failure_config=tune.FailureConfig(max_failures=s.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )
    return tuner, stops


def _searcher(search: Search) -> StudySearch:
    from autostage.space import suggest

    s = search.study.study
    several = len(s.metrics) > 1
    sampler = search.registry.create("sampler", s.sampler, s.sampler_settings).sized(
        s.trials).build(seed=sampler_seed(s.seed, search.storage, s.name))
    searcher = StudySearch(
        space=functools.partial(suggest, search.space),
        metric=s.metrics if several else s.metrics[0], mode=s.modes if several else s.modes[0],
        sampler=_picklable(s.sampler, sampler), study_name=s.name, storage=search.storage)
    searcher.population, searcher.retention = search.population, search.retention
    searcher.study_seed = s.seed
    return searcher


def _job(search: Search) -> SearchJob:
    """What every trial of this Tuner gets in its Ray worker."""
    s = search.study.study
    return SearchJob(search.study, search.space, search.run.path.resolve(),
                     ray.get_runtime_context().get_node_id(), uuid.uuid4().hex,
                     threads=threads(s, search.address is not None),
                     load_plugins=os.environ.get("AUTOSTAGE_LOAD_PLUGINS"),
                     every_eval=s.trial_scheduler != "fifo", store=search.store,
                     within_final=search.population is not None,
                     store_patience=outage.patience())


def _trial_resources(resources: Any) -> dict[str, float]:
    """What Ray Tune reserves for a trial's own process. A data-parallel trial's process
    only starts Ray Train's workers and passes their reports on: the workers hold its CPUs
    and GPUs (`data_parallel`), and Tune, which cannot reserve nothing, a MiB of memory."""
    if resources.workers > 1:
        return {"cpu": 0, "memory": 2**20}
    return {"cpu": resources.cpus, "gpu": resources.gpus}


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
