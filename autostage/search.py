"""`autostage search`: Ray Tune runs the trials, Optuna samples them. The only module that
imports Ray.

Trials are counted by autostage, not by Ray or Optuna (Ray's restore has holes, Optuna's
`n_trials` means "this many more"): the Optuna storage in the run directory holds the sampler's
history, our records say which trials finished, and a resumed search starts a fresh Tuner for
exactly the trials still missing. A trial interrupted by a killed driver is re-run with the same
parameters.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autostage.rundir import FINISHED, RunDir
from autostage.spec import Study

# Before Ray is imported: no CSV/TensorBoard loggers per trial (overhead, clutter).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# A trial's last report (its outcome) carries no metric: a failed trial has none to give.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")

import optuna  # noqa: E402
import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import TrialScheduler  # noqa: E402
from ray.tune.search.optuna import OptunaSearch  # noqa: E402

# Trial schedulers count evals of the final stage, so rungs fall at evaluations and compare
# trials at the same point of the stage that decides the metric. Counting every eval would
# compare a trial still in its prerequisite stage with one already training on the target,
# and stop every plan with a prefix (ASHA's short-horizon bias, made worse by stages).
TIME_ATTR = "final_evals"
FINAL = "autostage_status"  # key of a trial's last report: it ended on its own


@dataclass(frozen=True)
class SearchJob:
    """Everything a trial needs in a Ray worker: plain, picklable data."""

    study: Study
    space: Any  # autostage.space.SearchSpace
    run_dir: Path
    threads: int
    load_plugins: str | None  # AUTOSTAGE_LOAD_PLUGINS of the driver, for the workers
    every_eval: bool  # a trial scheduler reads every final-stage eval as it happens


# --- the trial, in a Ray worker ---------------------------------------------------------------


@functools.cache
def _registry(load_plugins: str | None) -> Any:
    from autostage.host import load_registry

    if load_plugins is not None:
        os.environ["AUTOSTAGE_LOAD_PLUGINS"] = load_plugins
    return load_registry()


def run_one(config: dict[str, Any], job: SearchJob) -> None:
    """The Ray trainable: build the trial from its config, run it, report every eval."""
    from autostage.build import build_trial
    from autostage.space import decode
    from autostage.trial import LoopState, run_trial

    number = int(config["trial_number"])
    seed = job.study.study.seed + number
    registry = _registry(job.load_plugins)
    built = build_trial(job.study, registry, decode(job.space, config), seed=seed,
                        threads=job.threads, workdir=str(job.run_dir / "trials" / str(number)))
    trainer = built.trainer.start(built.setup)
    resume = None
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            trainer.load(directory)
            resume = LoopState.from_json(json.loads((Path(directory) / "loop.json").read_text()))
    final = job.study.final.name if job.study.final else None
    reporter = _Reporter(trainer, number, final, resume.evals if resume else (), job.every_eval)
    try:
        result = run_trial(built.plan, trainer, reporter.report, reporter.checkpoint, resume)
    except Exception:
        # the trial crashed (Ray records the error, and may retry): keep its evals so far
        if held := reporter.take_held():
            tune.report({"earlier_evals": held, "trial_number": number})
        raise
    values = [result.evals[-1].metrics.get(m) if result.evals and m != "tokens" else result.tokens
              for m in job.study.study.metrics]
    tune.report({
        FINAL: result.status, "reason": result.reason, "trial_number": number,
        "earlier_evals": reporter.take_held(), "tokens": result.tokens, "seed": seed,
        "values": None if result.status == "failed" else values,
    })


class _Reporter:
    """Turns the trial loop's evals and boundary states into Ray reports and checkpoints.

    Each Ray report is a round trip to the driver (~8 ms here), so evals no trial scheduler
    reads travel with the next report ("earlier_evals"): Ray hears of stage boundaries (with
    their checkpoint), outcomes and, when a scheduler stops trials early, final-stage evals.
    """

    def __init__(self, trainer: Any, number: int, final: str | None, done: tuple,
                 every_eval: bool) -> None:
        self.trainer, self.number, self.final = trainer, number, final
        self.every_eval = every_eval
        self.final_evals = sum(final is None or e.stage == final for e in done)
        self.seen = len(done)
        self.pending: Path | None = None
        self.held: list[dict[str, Any]] = []

    def take_held(self) -> list[dict[str, Any]]:
        held, self.held = self.held, []
        return held

    def checkpoint(self, state: Any) -> None:
        directory = Path(tempfile.mkdtemp(prefix="autostage-ckpt-"))
        self.trainer.save(str(directory))
        (directory / "loop.json").write_text(json.dumps(state.to_json()))
        self.pending = directory

    def report(self, ev: Any) -> None:
        from autostage.trial import eval_record

        self.seen += 1
        metrics = {**eval_record(ev), "trial_number": self.number, "eval_index": self.seen}
        in_final = self.final is None or ev.stage == self.final
        if in_final:
            self.final_evals += 1
            metrics[TIME_ATTR] = self.final_evals  # absent before: schedulers wait
        if self.pending is None and not (in_final and self.every_eval):
            self.held.append(metrics)
            return
        metrics["earlier_evals"], self.held = self.held, []
        if self.pending is None:
            tune.report(metrics)
            return
        try:
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.pending)))
        finally:
            _remove_tree(self.pending)
            self.pending = None


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --- Optuna behind Ray ------------------------------------------------------------------------


class StudySearch(OptunaSearch):
    """OptunaSearch that tags each config with its Optuna trial number and tells Optuna the
    truth at the end: failed trials FAIL, trials stopped early PRUNED, and only a trial's own
    final value (never a NaN or an intermediate eval) COMPLETE."""

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is not None:
            config["trial_number"] = self._ot_trials[trial_id].number
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna's intermediate values, stepped by the trial's own eval count (Ray's iteration
        # counter restarts when a trial is restored); a retried trial's repeats are dropped.
        if FINAL in result or isinstance(self.metric, list) or self.metric not in result:
            return
        if trial_id in self._ot_trials and trial_id not in self._completed_trials:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._ot_trials[trial_id].report(result[self.metric], result["eval_index"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        trial = self._ot_trials[trial_id]
        values = (result or {}).get("values")
        status = (result or {}).get(FINAL)
        finite = values is not None and all(isinstance(v, int | float) and math.isfinite(v)
                                            for v in values)
        if status in ("completed", "stopped") and finite:
            self._ot_study.tell(trial, values if len(values) > 1 else values[0])
        elif error or status == "failed":
            self._ot_study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._ot_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


# --- trial schedulers see evals only ----------------------------------------------------------


class EvalsOnly(TrialScheduler):
    """Shows a trial scheduler only the reports that carry a final-stage eval.

    Ray's schedulers read `time_attr` and the metric from every report; a stage-boundary
    report before the final stage has no `final_evals`, and a trial's outcome report (a
    failed one has no value) has no metric. A trial that ends is completed with its last
    eval, or removed when it never had one.
    """

    def __init__(self, inner: TrialScheduler) -> None:
        super().__init__()
        self.inner = inner
        self.last: dict[str, dict] = {}

    @property
    def metric(self) -> Any:
        return self.inner.metric

    def supports_buffered_results(self) -> bool:
        return self.inner.supports_buffered_results

    def set_search_properties(self, metric: Any, mode: Any, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, controller: Any, trial: Any) -> None:
        self.inner.on_trial_add(controller, trial)

    def on_trial_error(self, controller: Any, trial: Any) -> None:
        self.last.pop(trial.trial_id, None)
        self.inner.on_trial_error(controller, trial)

    def on_trial_result(self, controller: Any, trial: Any, result: dict) -> str:
        if TIME_ATTR not in result or FINAL in result:
            return TrialScheduler.CONTINUE
        self.last[trial.trial_id] = result
        return self.inner.on_trial_result(controller, trial, result)

    def on_trial_complete(self, controller: Any, trial: Any, result: dict) -> None:
        last = self.last.pop(trial.trial_id, None)
        if last is None:
            self.inner.on_trial_remove(controller, trial)
        else:
            self.inner.on_trial_complete(controller, trial, last)

    def on_trial_remove(self, controller: Any, trial: Any) -> None:
        self.last.pop(trial.trial_id, None)
        self.inner.on_trial_remove(controller, trial)

    def choose_trial_to_run(self, controller: Any) -> Any:
        return self.inner.choose_trial_to_run(controller)

    def debug_string(self) -> str:
        return self.inner.debug_string()


# --- records, budget and progress, in the driver ----------------------------------------------


class Recorder(tune.Callback):
    """Writes each trial's events and outcome into the run directory as they happen."""

    def __init__(self, run: RunDir, scheduler: str, budget: TokenBudget, view: Any) -> None:
        self.run, self.scheduler, self.budget, self.view = run, scheduler, budget, view
        self.started: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its run config for Tuner.restore, which autostage does not use; the
        # live view (locks, a terminal) stays in this process.
        return {**self.__dict__, "view": None}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        self.view.trial_started()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        number = int(result["trial_number"])
        for earlier in result.get("earlier_evals", []):
            self.run.append_event(number, {k: v for k, v in earlier.items() if _is_ours(k)})
        if FINAL in result or "stage" not in result:
            return  # an outcome, or evals flushed before a crash: no eval of its own
        event = {k: v for k, v in result.items() if _is_ours(k)}
        event["time"] = time.time()
        if result.get("checkpoint_dir_name"):
            event["checkpoint"] = str(Path(trial.path) / result["checkpoint_dir_name"])
        self.run.append_event(number, event)
        self.view.trial_result(result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if FINAL in last:
            status, reason = last[FINAL], last.get("reason", "")
        elif self.budget.spent_out():
            status, reason = "pruned", "stopped: the study's token budget was spent"
        else:
            status, reason = "pruned", f"stopped early by the {self.scheduler} trial scheduler"
        self._write(trial, status, reason)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, "failed", _error_reason(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Ray stops the running trials without completing them when the budget is spent;
        # an interrupted search leaves them for --resume to re-queue.
        if not self.budget.spent_out():
            return
        for trial in trials:
            number = (trial.config or {}).get("trial_number")
            if number is not None and not (self.run.trial_dir(number) / "result.json").exists():
                self._write(trial, "pruned", "stopped: the study's token budget was spent")

    def _write(self, trial: Any, status: str, reason: str) -> None:
        last = trial.last_result or {}
        config = dict(trial.config)
        number = int(config.pop("trial_number"))
        values = last.get("values") if FINAL in last else None
        evals = self.run.events(number)
        record = {
            "number": number, "status": status, "reason": reason,
            "value": values[0] if values else None, "values": values,
            "tokens": last.get("tokens", evals[-1]["tokens"] if evals else 0),
            "evals": len(evals), "seed": last.get("seed"), "config": config,
            "plan": config.get("plan.order", ""),
            "decisions": [{"stage": e["stage"], "tokens": e["tokens"], "decision": e["decision"]}
                          for e in evals if e.get("decision") not in ("continue", "", None)],
            "started": self.started.get(trial.trial_id), "ended": time.time(),
        }
        self.run.write_result(number, record)
        self.view.trial_ended(record)


def _is_ours(key: str) -> bool:
    return key.startswith(("eval.", "train.")) or key in (
        "stage", "visit", "tokens", "stage_tokens", "lr", "decision", TIME_ATTR, "trial_number",
        "pid")  # the worker process: shows which trials shared a reused actor


def _error_reason(trial: Any) -> str:
    """The exception line of a trial's error (Ray keeps the whole traceback in a file)."""
    try:
        text = Path(trial.error_file).read_text()
    except (OSError, TypeError):
        return "the trial raised an error (no details were kept)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) and " " not in head:
            return line
    return lines[-1] if lines else "the trial raised an error"


class TokenBudget(tune.Stopper):
    """Stops the whole search once the trials have trained the study's token budget."""

    def __init__(self, budget: int | None, already: int) -> None:
        self.budget, self.already = budget, already
        self.tokens: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if "tokens" in result:
            self.tokens[trial_id] = int(result["tokens"])
        return False

    def spent(self) -> int:
        return self.already + sum(self.tokens.values())

    def spent_out(self) -> bool:
        return self.budget is not None and self.spent() >= self.budget

    def stop_all(self) -> bool:
        return self.spent_out()


# --- the search -------------------------------------------------------------------------------


@dataclass
class SearchOutcome:
    run_dir: Path
    requested: int
    records: list[dict[str, Any]]
    interrupted: bool


def run_search(study: Study, registry: Any, run: RunDir, *, resume: bool, address: str | None,
               view: Any, verbose: bool = False) -> SearchOutcome:
    """Run (or resume) the study's search into `run`; return the records when it ends."""
    from autostage.space import compile_space

    space = compile_space(study, registry)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run.path.mkdir(parents=True, exist_ok=True)
    storage = open_storage(run.storage_url)
    remaining, spent = _reconcile(study, run, storage) if resume else (study.study.trials, 0)
    view.start(study, done=study.study.trials - remaining, tokens=spent)
    if remaining <= 0:
        return SearchOutcome(run.path, study.study.trials, run.results(), False)
    owns_ray = not ray.is_initialized()  # a caller (a test, a notebook) may have started it
    if owns_ray:
        _start_ray(address, verbose)
    try:
        tuner = _tuner(study, registry, space, run, storage, remaining, spent, view)
        tuner.fit()
    finally:
        if owns_ray:
            ray.shutdown()
    _settle(storage, study.study.name, run)
    records = run.results()
    finished = sum(r["status"] in FINISHED for r in records)
    budget_spent = (study.study.token_budget is not None
                    and sum(r.get("tokens") or 0 for r in records) >= study.study.token_budget)
    return SearchOutcome(run.path, study.study.trials, records,
                         finished < study.study.trials and not budget_spent)


def open_storage(url: str) -> Any:
    """Optuna's RDB storage; for SQLite in write-ahead-log mode with `synchronous=NORMAL`.

    Every eval writes an intermediate value: with SQLite's defaults each commit syncs the
    disk (~6 ms here), a third of the search's overhead. WAL + NORMAL survives a killed
    process (what --resume needs); only a power cut may lose the last commits.
    """
    if not url.startswith("sqlite:///"):
        return optuna.storages.RDBStorage(url)
    import sqlite3

    import sqlalchemy

    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("PRAGMA journal_mode=WAL")  # kept in the file: every later opener uses it
    storage = optuna.storages.RDBStorage(url)

    def on_connect(connection: Any, record: Any) -> None:
        connection.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect with the pragma
    return storage


def _settle(storage: Any, name: str, run: RunDir) -> None:
    """Trials Ray stopped for the token budget never reached the searcher: tell Optuna."""
    pruned = {r["number"] for r in run.results() if r["status"] == "pruned"}
    for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.RUNNING and trial.number in pruned:
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.PRUNED)


def _start_ray(address: str | None, verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    # A trial that raises is recorded with its reason; Ray's traceback is for -v only.
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(level if verbose else logging.CRITICAL)
    ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
             logging_level=level, configure_logging=True)


def _tuner(study: Study, registry: Any, space: Any, run: RunDir, storage: Any,
           remaining: int, spent: int, view: Any) -> tune.Tuner:
    from autostage.space import suggest

    s = study.study
    metrics = s.metrics if len(s.metrics) > 1 else s.metrics[0]
    modes = s.modes if len(s.metrics) > 1 else s.modes[0]
    searcher = StudySearch(
        space=functools.partial(suggest, space), metric=metrics, mode=modes,
        sampler=registry.create("sampler", s.sampler).build(seed=s.seed),
        study_name=s.name, storage=storage,
    )
    max_t = _max_final_evals(study)
    scheduler = registry.create("trial_scheduler", s.trial_scheduler).build(
        metric=s.metrics[0], mode=s.modes[0], time_attr=TIME_ATTR, max_t=max_t)
    budget = TokenBudget(s.token_budget, spent)
    cores = int(ray.cluster_resources().get("CPU", 1))
    job = SearchJob(study, space, run.path.resolve(), threads=max(1, cores // s.parallel),
                    load_plugins=os.environ.get("AUTOSTAGE_LOAD_PLUGINS"),
                    every_eval=s.trial_scheduler != "fifo")
    trainable = tune.with_resources(tune.with_parameters(run_one, job=job),
                                    {"cpu": s.resources.cpus, "gpu": s.resources.gpus})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=EvalsOnly(scheduler),
                                    num_samples=remaining, max_concurrent_trials=s.parallel,
                                    reuse_actors=True, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=f"ray-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(run.path.resolve()),
            verbose=0, stop=budget, callbacks=[Recorder(run, s.trial_scheduler, budget, view)],
            failure_config=tune.FailureConfig(max_failures=s.retries),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        ),
    )


def _trial_dirname(trial: Any) -> str:
    # addressable: stage-boundary checkpoints of trial n live in ray-<time>/trial-<n>/
    return f"trial-{trial.config.get('trial_number', trial.trial_id)}"


def _max_final_evals(study: Study) -> int:
    from autostage.space import stage_plans

    def evals(name: str) -> int:
        stage = study.stage_named(name)
        return math.ceil(stage.tokens / stage.every)

    if study.final is not None:
        return evals(study.final.name)
    return max(sum(map(evals, plan)) for plan in stage_plans(study.stage, study.search.plan))


def _reconcile(study: Study, run: RunDir, storage: Any) -> tuple[int, int]:
    """Before a resume: give every trial the killed driver left running a record, re-queue its
    parameters so no work is lost, and count what is still to do. Returns (remaining trials,
    tokens already spent)."""
    try:
        ot_study = optuna.load_study(study_name=study.study.name, storage=storage)
    except KeyError:
        return study.study.trials, 0  # killed before the first trial was asked for
    recorded = {r["number"]: r for r in run.results()}
    for trial in ot_study.get_trials(deepcopy=False):
        state = trial.state
        if state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING) or (
                state.is_finished() and trial.number not in recorded):
            if state.is_finished() is False:
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            if trial.number not in recorded or recorded[trial.number]["status"] != "interrupted":
                ot_study.enqueue_trial(trial.params, skip_if_exists=False)
                run.write_result(trial.number, {
                    "number": trial.number, "status": "interrupted", "value": None,
                    "reason": "the search was interrupted; re-queued with the same parameters",
                    "config": trial.params, "tokens": 0, "evals": 0,
                })
    records = run.results()
    finished = sum(r["status"] in FINISHED for r in records)
    spent = sum(r.get("tokens") or 0 for r in records)
    if study.study.token_budget is not None and spent >= study.study.token_budget:
        return 0, spent  # the budget is spent: nothing more to run
    return study.study.trials - finished, spent
