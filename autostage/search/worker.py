"""The trial, in a Ray worker: build it from its config, run it, report to Ray."""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from autostage.branching import BRANCH_POINT_FAILED
from autostage.checkpoint_seal import LOOP, restore, seal
from autostage.checkpoint_store import CheckpointStore, newest_first
from autostage.errors import AutostageError
from autostage.ranking import finite
from autostage.records import Branch, TrialStatus
from autostage.search import messages as msg
from autostage.search import outage, ray_internals, time_limit
from autostage.spec import Study
from autostage.trial_identity import TrialIdentity


@dataclass(frozen=True)
class SearchJob:
    """Everything a trial needs in a Ray worker: plain, picklable data."""

    study: Study
    space: Any  # autostage.space.SearchSpace
    run_dir: Path  # on the driver's node: a worker elsewhere keeps its files on its own
    driver_node: str  # Ray's id of the node the driver runs on
    search_id: str  # names this search's keys in Ray's key-value store
    threads: int
    load_plugins: str | None  # AUTOSTAGE_LOAD_PLUGINS of the driver, for the workers
    every_eval: bool  # a trial scheduler reads every final-stage eval as it happens
    store: CheckpointStore | None = None  # where checkpoints are (a branch loads its parent's)
    within_final: bool = False  # checkpoint every final-stage eval: branches may start there
    store_patience: float = outage.PATIENCE_S  # how long the store's operations are retried

    def local_dirs(self, number: int) -> tuple[Path, Path]:
        """The trial's own folder and the study's cache (a trained tokenizer) on the node
        this worker runs on: the run directory's on the driver's node; elsewhere a folder of
        the node's own, since the run directory may not exist there (no shared filesystem)."""
        import ray

        if ray.get_runtime_context().get_node_id() == self.driver_node:
            return self.run_dir / "trials" / str(number), self.run_dir / "cache"
        here = Path(tempfile.gettempdir()) / "autostage" / self.search_id
        return here / "trials" / str(number), here / "cache"


# --- the trial, in a Ray worker ---------------------------------------------------------------


@functools.cache
def _registry(load_plugins: str | None) -> Any:
    from autostage.host import load_registry

    if load_plugins is not None:
        os.environ["AUTOSTAGE_LOAD_PLUGINS"] = load_plugins
    return load_registry()


def run_one(config: dict[str, Any], job: SearchJob) -> None:
    """The Ray trainable: build the trial from its config, run it, report every eval. A
    data-parallel trial (`study.resources.workers` > 1) runs on Ray Train's workers instead,
    this process passing their reports on."""
    if job.study.study.resources.workers > 1:
        from autostage.search.data_parallel import run_data_parallel

        run_data_parallel(config, job)
        return
    who = TrialIdentity.from_config(config, job.study.study.seed)
    run_watched(who, job, ToTune(job))


def run_watched(who: TrialIdentity, job: SearchJob, out: Any, replica: tuple[int, int] = (0, 1)
                ) -> None:
    """Run trial `who` under its time limit, its reports going to `out` (`ToTune`; a worker
    of a data-parallel trial: `data_parallel.Replica`, and `replica` its rank and the
    number of workers)."""
    watched = out.writes  # one watcher per trial: in the process that reports
    watcher = time_limit.watch(job.search_id, who.number, job.study.study.trial_time_limit) \
        if watched else None
    try:
        _run(who, job, watcher, out, replica)
    finally:
        if watcher is not None:
            watcher.stop()


class ToTune:
    """Where a trial's reports go when the trial is this process: Ray Tune's session here.
    (`data_parallel.Replica` is the other: a worker of a data-parallel trial.)"""

    writes = True  # this process writes the trial's checkpoints and its model

    def __init__(self, job: SearchJob) -> None:
        self.job = job

    def latest(self) -> tune.Checkpoint | None:
        """The trial's newest checkpoint, when Ray retries it (else None)."""
        return tune.get_checkpoint()

    def report(self, metrics: dict[str, Any], directory: Path | None = None,
               what: str = "") -> None:
        """One report; with `directory`, that folder as its checkpoint (`what`: the upload,
        named while the store fails)."""
        if directory is None:
            tune.report(metrics)
        else:
            _report_checkpoint(self.job, metrics, directory, what)

    def last_words(self, metrics: dict[str, Any]) -> None:
        """The evals a crashing trial held back, reported before it raises."""
        tune.report(metrics)


def _run(who: TrialIdentity, job: SearchJob, watcher: time_limit.TimeLimit | None, out: Any,
         replica: tuple[int, int]) -> None:
    from autostage.build import prepare_trial

    workdir, cache_dir = job.local_dirs(who.number)
    trial = prepare_trial(job.study, _registry(job.load_plugins), dict(who.params), who.seed,
                          space=job.space, threads=job.threads, workdir=str(workdir),
                          cache_dir=str(cache_dir), replica=replica)
    resume = _retried(who, job, trial.trainer, out)
    if resume is None and who.branch is not None:
        state = _on_store(job, f"trial {who.number}: reading its branch point",
                           lambda: _branch_from(trial.trainer, who.branch, job.store))
        resume = _go_on(state, who.branch, who.params)
    final = job.study.final.name if job.study.final else None
    reporter = _Reporter(trial.trainer, who, final, resume.evals if resume else (),
                         job.every_eval, job, out)
    if watcher is not None:
        watcher.planned = sum(trial.plan.stages[s].tokens for s in trial.plan.order)
        before = resume.tokens if resume else 0
        reporter.on_eval = lambda ev: watcher.progress(ev.tokens - before)
    within = job.within_final and hasattr(trial.trainer, "continue_stage")
    try:
        result = trial.run(reporter.report, reporter.checkpoint, resume, within)
    except Exception:
        # the trial crashed (Ray records the error, and may retry): keep its evals so far
        if (held := reporter.take_held()) and out.writes:
            out.last_words({msg.EARLIER: held, msg.TRIAL: who.number})
        raise
    _report_outcome(who, job, trial.trainer, result, reporter.take_held(), out)


def _retried(who: TrialIdentity, job: SearchJob, trainer: Any, out: Any) -> Any:
    """A retry's loop state, from the trial's own newest intact checkpoint (None: the trial
    has none, it starts anew or from its branch point)."""
    if (checkpoint := out.latest()) is None:
        return None
    resume, refused = _on_store(job, f"trial {who.number}: reading its checkpoint",
                                 lambda: restore(trainer, _newest_first(checkpoint)))
    for why in refused if out.writes else ():  # (shown with -v: Ray forwards worker output)
        print(f"autostage: trial {who.number}: {why}; resumed from the one before",
              file=sys.stderr)
    # the evals after this checkpoint were recorded once already, and will be again
    out.report({msg.RESUMED_AT: len(resume.evals) - who.prefix_evals if resume else 0,
                msg.TRIAL: who.number})
    return resume


def _report_outcome(who: TrialIdentity, job: SearchJob, trainer: Any, result: Any,
                    held: list[dict[str, Any]], out: Any) -> None:
    """The trial's last report: its outcome (with its exported model when one is kept)."""
    values = None if result.status == TrialStatus.FAILED else result.values(
        job.study.study.metrics)
    outcome = msg.outcome_report(who.number, result.status, result.reason, values,
                                 who.charged(result.tokens), who.seed, job.threads, held)
    if job.study.study.keep_models and _has_value(result.status, values):
        _report_with_model(outcome, trainer, out)
    else:
        out.report(outcome)  # no model is wanted: exporting would only cost disk and time


def _newest_first(latest: tune.Checkpoint) -> Any:
    """The trial's checkpoints from `latest` back, for `restore`: each downloaded from the
    checkpoint store only if tried (a local folder is read in place)."""
    for path in newest_first(latest.filesystem, latest.path):
        yield path, tune.Checkpoint(path, filesystem=latest.filesystem).as_directory()


def _branch_from(trainer: Any, branch: Branch, store: CheckpointStore | None) -> Any:
    """Load the parent's checkpoint a branched trial starts from; its trial-loop state."""
    if store is None:
        raise AutostageError(f"trial branches from trial {branch.parent}, but this search has "
                             "no checkpoint store")
    path = store.resolve(branch.checkpoint)
    where = store.uri(path)  # one line naming the checkpoint where a user finds it
    if store.missing([path]):  # (not "cut short": nothing is there at all)
        raise AutostageError(f"{BRANCH_POINT_FAILED}{branch.parent}: checkpoint {where} "
                             "is missing (deleted outside this search); no other trial is "
                             "handed this branch point")
    opened = tune.Checkpoint(path, filesystem=store.filesystem).as_directory()
    state, refused = restore(trainer, [(where, opened)])
    if state is None:  # the refusal names the checkpoint already: once is enough
        raise AutostageError(f"{BRANCH_POINT_FAILED}{branch.parent}: {refused[0]}; "
                             "no other trial is handed this branch point")
    return state


def _go_on(state: Any, branch: Branch, params: dict[str, Any]) -> Any:
    """The parent's loop state, going on with the branch's plan: at a stage boundary the
    branch may have chosen another rest of the plan than its parent's (`plan.after.*`)."""
    from dataclasses import replace

    from autostage.keys import PLAN_KEY, split_plan

    plan = split_plan(str(params.get(PLAN_KEY, "")))
    if branch.done and plan[:len(branch.done)] == branch.done and \
            params.get(PLAN_KEY) != branch.prefix.get(PLAN_KEY):
        return replace(state, queue=plan[len(branch.done):])
    return state


def _has_value(status: TrialStatus, values: list | None) -> bool:
    """The trial may rank among the best: it ran to its end with a finite value for every
    metric (a pruned or failed trial's model would never be kept)."""
    return status.ranked and values is not None and all(finite(v) is not None for v in values)


def _report_with_model(outcome: dict[str, Any], trainer: Any, out: Any) -> None:
    """Send the trial's outcome with its exported model as a Ray checkpoint: Ray moves it
    into the run's storage, whichever machine this worker runs on, and the driver keeps it
    or not. A trainer without export says so instead."""
    export = getattr(trainer, "export", None)
    if export is None:
        out.report({**outcome, msg.NO_MODEL: f"its trainer's run ({type(trainer).__name__}) "
                    "has no export(directory) method"})
        return
    # (another worker of a data-parallel trial only learns whether the trial goes on)
    directory = Path(tempfile.mkdtemp(prefix="autostage-model-")) if out.writes else None
    try:
        if directory is not None:
            export(str(directory))
        out.report(outcome, directory, f"trial {outcome[msg.TRIAL]}: uploading its model")
    finally:
        if directory is not None:
            _remove_tree(directory)


class _Reporter:
    """Turns the trial loop's evals and boundary states into Ray reports and checkpoints.

    Each Ray report is a round trip to the driver (~8 ms here), so evals no trial scheduler
    reads travel with the next report (EARLIER): Ray hears of stage boundaries (with their
    checkpoint), outcomes and, when a scheduler stops trials early, final-stage evals.
    """

    def __init__(self, trainer: Any, who: TrialIdentity, final: str | None, done: tuple,
                 every_eval: bool, job: SearchJob, out: Any) -> None:
        self.trainer, self.number, self.final, self.job = trainer, who.number, final, job
        self.every_eval, self.out = every_eval, out
        self.before = who.prefix_tokens  # a branched trial's prefix: not charged to it
        self.final_evals = sum(final is None or e.stage == final for e in done)
        self.seen = len(done)
        self.due = False  # a checkpoint goes with the next report
        self.pending: Path | None = None  # its folder (None in a worker that writes none)
        self.held: list[dict[str, Any]] = []
        self.on_eval: Any = lambda ev: None  # e.g. the trial's time limit follows its pace

    def take_held(self) -> list[dict[str, Any]]:
        held, self.held = self.held, []
        return held

    def checkpoint(self, state: Any) -> None:
        self.due = True
        if not self.out.writes:  # another worker of this data-parallel trial writes it
            return
        directory = Path(tempfile.mkdtemp(prefix="autostage-ckpt-"))
        try:
            self.trainer.save(str(directory))
            (directory / LOOP).write_text(json.dumps(state.to_json()))
            seal(directory)  # every file, the loop's state too: a torn one is refused
        except BaseException:  # a full disk, say: leave no partial checkpoint behind
            _remove_tree(directory)
            raise
        self.pending = directory

    def report(self, ev: Any) -> None:
        self.on_eval(ev)
        self.seen += 1
        in_final = self.final is None or ev.stage == self.final
        if in_final:
            self.final_evals += 1
        report = msg.eval_report(self.number, ev, self.seen,
                                 self.final_evals if in_final else None, os.getpid(),
                                 self.job.threads, self.before)
        if not self.due and not (in_final and self.every_eval):
            self.held.append({k: report[k] for k in (msg.EVAL, msg.WORKER)})
            return
        report[msg.EARLIER], self.held = self.held, []
        pending, self.pending, self.due = self.pending, None, False
        try:
            self.out.report(report, pending, f"trial {self.number}: uploading a checkpoint")
        finally:
            if pending is not None:
                _remove_tree(pending)


def _report_checkpoint(job: SearchJob | None, report: dict[str, Any], directory: Path,
                       what: str) -> None:
    """tune.report with a checkpoint, its upload retried while the store fails. Ray counts a
    report and numbers its checkpoint folder before uploading: every try starts from the same
    counts, so a retried upload writes the same folder again, whole (no gap in the numbers,
    no half checkpoint left behind)."""
    rewind = ray_internals.checkpoint_rewinder()

    def attempt() -> None:
        rewind()
        tune.report(dict(report), checkpoint=tune.Checkpoint.from_directory(str(directory)))

    _on_store(job, what, attempt)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _on_store(job: SearchJob | None, what: str, operation: Any) -> Any:
    """`operation()` on this search's checkpoint store, retried while object storage fails."""
    return outage.on_store(job.store if job else None, job.store_patience if job else 0, what,
                           operation)
