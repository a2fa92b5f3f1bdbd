"""Data-parallel trials (`study.resources.workers` > 1): one trial trained by several
processes through Ray Train (gloo on CPU, NCCL on GPU), inside the same Tune search.

The trial's Tune process holds no CPU or GPU itself (`tuner._trial_resources`): it starts a
TorchTrainer whose workers each hold `study.resources` and each run the whole trial — the
same trial loop, stage policy, seeds and decisions, in lockstep — while the trainer's run
splits every batch among them and reduces their gradients (the trainer's part:
`Trainer.check_workers`, docs/plugins.md). Worker 0 alone writes checkpoints and the model;
its reports travel to the trial's Tune process, which reports them to Tune exactly as a
one-process trial reports its own (`worker.ToTune`): the driver, the records and the report
cannot tell the difference. After each report the Tune process answers whether the trial
goes on (a trial scheduler may stop it there) and worker 0 passes the answer to every
worker, so all stop together.

When Tune stops the trial (a trial scheduler, the search's end), its process must not die
before the workers: Ray removes a placement group when the job that created it ends, not its
creator, so workers torn down with the trial's process would hold their CPUs and GPUs until
the search ends (Ray Train's own cleaner reads Ray's state API, which needs the dashboard a
search turns off). `EndsItsRun`, mixed into the trial's trainable, ends the run first.

Ray Train retries nothing itself: a worker that dies or raises (or a preempted node) fails the
run, hence the Tune trial, which `study.retries` retries from its last checkpoint like any
other trial. (Ray Train's own retries would restart the workers from the checkpoint the
Tune trial started from, not its newest.)
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from autostage.search import ray_internals, worker
from autostage.trial_identity import TrialIdentity

GO, STOP = "go", "stop"
#: seconds to wait for the workers to stop at a report, then for them to end once removed
STOP_WAIT_S, END_WAIT_S = 5.0, 60.0


@dataclass
class _Run:
    relay: Any  # the `_Relay` actor between worker 0 and this process
    fit: _Fit


_RUN: _Run | None = None  # this process's data-parallel trial, while it runs


def trainable(function: Any) -> Any:
    """`function` (run_one with its parameters), as the trainable of data-parallel trials."""
    function.__mixins__ = (EndsItsRun,)  # how Tune's wrap_function takes in a mixin
    return function


class EndsItsRun:
    """Ends the trial's Ray Train run before Tune ends its trial (Trainable.cleanup, when
    Tune stops it; reset_config, when a reused process takes the next trial)."""

    def cleanup(self) -> None:
        _end_run()
        super().cleanup()  # type: ignore[misc]

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        _end_run()
        return super().reset_config(new_config)  # type: ignore[misc]


def _end_run() -> None:
    """Stop this process's Ray Train run: at the report worker 0 waits on the answer of
    (every worker stops there), else by removing the workers' placement group."""
    from ray.util import remove_placement_group

    run = _RUN
    if run is None or not run.fit.is_alive():
        return
    run.relay.answer.remote(STOP)
    run.fit.join(STOP_WAIT_S)
    if run.fit.is_alive() and (group := ray.get(run.relay.group.remote())) is not None:
        remove_placement_group(group)  # ends its workers; the run then fails, unrecorded
        run.fit.join(END_WAIT_S)


def run_data_parallel(config: dict[str, Any], job: worker.SearchJob) -> None:
    """The Ray trainable of a data-parallel trial: its Ray Train run, whose reports this
    process passes on to Tune."""
    global _RUN

    relay = _Relay.remote()
    storage = Path(tempfile.mkdtemp(prefix="autostage-train-"))  # Ray Train's own state
    node = ray.get_runtime_context().get_node_id()
    fit = _Fit(_torch_trainer(job, storage, {
        "config": config, "job": job, "latest": tune.get_checkpoint(), "relay": relay,
        "node": node}))
    _RUN = _Run(relay, fit)
    fit.start()
    try:
        _pass_on(relay, fit, job)
    finally:
        fit.join(END_WAIT_S)
        _RUN = None
        shutil.rmtree(storage, ignore_errors=True)
    fit.raise_failure()


def _torch_trainer(job: worker.SearchJob, storage: Path, loop_config: dict[str, Any]) -> Any:
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    r = job.study.study.resources
    per_worker = {"CPU": r.cpus, **({"GPU": r.gpus} if r.gpus else {})}
    return TorchTrainer(
        _replica, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=r.workers, use_gpu=r.gpus > 0,
                                     resources_per_worker=per_worker),
        # no retries of Ray Train's own (see above); but a worker group that cannot start
        # yet (another trial's workers hold the resources) is tried again, as Tune would wait
        run_config=RunConfig(name="trial", storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=0,
                                                          max_preemption_failures=0)))


@ray.remote(num_cpus=0)
class _Relay:
    """Worker 0's reports to the trial's process, and its answers back; and the workers'
    placement group. (Async: worker 0 waits on an answer while the process waits on the
    next report.)"""

    def __init__(self) -> None:
        self.reports: asyncio.Queue = asyncio.Queue()
        self.answers: asyncio.Queue = asyncio.Queue()
        self.placement_group: Any = None

    async def ask(self, message: tuple) -> str:
        await self.reports.put(message)
        return await self.answers.get()

    async def next(self, timeout: float) -> tuple | None:
        try:
            return await asyncio.wait_for(self.reports.get(), timeout)
        except TimeoutError:
            return None

    async def answer(self, answer: str) -> None:
        await self.answers.put(answer)

    async def hello(self, placement_group: Any) -> None:
        self.placement_group = placement_group

    async def group(self) -> Any:
        return self.placement_group


class _Fit(threading.Thread):
    """`trainer.fit()` beside this process's Tune session: Tune reports from the thread it
    started the trial in, which passes the workers' reports on meanwhile."""

    def __init__(self, trainer: Any) -> None:
        super().__init__(daemon=True, name="autostage-ray-train")
        self.trainer = trainer
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.trainer.fit()
        except BaseException as e:  # raised in the trial's own thread: `raise_failure`
            self.failure = e

    def raise_failure(self) -> None:
        """Raise what failed the run: the exception a worker raised, as a one-process trial
        would have, so the driver records the same reason and sees the same store outages;
        else Ray Train's own error. A worker that died is the cause (the others then fail in
        their next collective); else the lowest rank's exception."""
        if self.failure is None:
            return
        failures = getattr(self.failure, "worker_failures", None) or {}
        if not failures:
            raise self.failure
        ranks = sorted(failures, key=lambda rank: (not ray_internals.worker_died(failures[rank]),
                                                   rank))
        raise ray_internals.worker_exception(failures[ranks[0]]) from self.failure


def _pass_on(relay: Any, fit: _Fit, job: worker.SearchJob) -> None:
    """Report each of worker 0's reports to Tune, answering GO, or STOP when Tune stops the
    trial there (Tune raises SystemExit in `tune.report`: raised again once the workers
    were told)."""
    to_tune = worker.ToTune(job)
    while True:
        message = ray.get(relay.next.remote(1.0))
        if message is None:
            if fit.is_alive():
                continue
            return
        kind, metrics, parcel, what = message
        directory, owned = _unpacked(parcel)
        try:
            if kind == "last_words":
                to_tune.last_words(metrics)
            else:
                to_tune.report(metrics, directory, what)
        except BaseException:
            relay.answer.remote(STOP)
            raise
        finally:
            if owned and directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        relay.answer.remote(GO)


def _parcel(directory: Path | None, here: str, there: str) -> Any:
    """A checkpoint's folder for the trial's Tune process: its path when that process runs
    on this node, else its files' bytes through Ray's object store."""
    if directory is None or here == there:
        return None if directory is None else str(directory)
    return {str(p.relative_to(directory)): ray.put(p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _unpacked(parcel: Any) -> tuple[Path | None, bool]:
    """The folder a parcel names or holds; and whether it is this process's to remove."""
    if parcel is None or isinstance(parcel, str):
        return (None if parcel is None else Path(parcel)), False
    directory = Path(tempfile.mkdtemp(prefix="autostage-ckpt-"))
    for name, ref in parcel.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(ray.get(ref))
    return directory, True


class _Stopped(BaseException):
    """Tune stopped the trial at a report: every worker leaves the trial there. (Not an
    Exception: the trial's own crash handling must not take it for a failure.)"""


class Replica:
    """Where the reports of one worker of a data-parallel trial go (`worker.ToTune`'s
    counterpart): worker 0's to the trial's Tune process; and every worker, at each report,
    learns whether the trial goes on."""

    def __init__(self, rank: int, loop_config: dict[str, Any]) -> None:
        from ray.util import get_current_placement_group

        self.writes = rank == 0  # worker 0 writes the checkpoints and the model
        self.relay = loop_config["relay"]
        self.checkpoint, self.there = loop_config["latest"], loop_config["node"]
        self.here = ray.get_runtime_context().get_node_id()
        if self.writes:  # what the trial's process removes if Tune stops it mid-segment
            ray.get(self.relay.hello.remote(get_current_placement_group()))

    def latest(self) -> Any:
        return self.checkpoint

    def report(self, metrics: dict[str, Any], directory: Path | None = None,
               what: str = "") -> None:
        import torch.distributed as dist

        answer = [self._ask("report", metrics, directory, what) if self.writes else None]
        dist.broadcast_object_list(answer, src=0)
        if answer[0] == STOP:
            raise _Stopped

    def last_words(self, metrics: dict[str, Any]) -> None:
        # worker 0 only, and no collective: the trial is failing, maybe on this worker alone
        self._ask("last_words", metrics, None, "")

    def _ask(self, kind: str, metrics: dict[str, Any], directory: Path | None,
             what: str) -> str:
        message = (kind, metrics, _parcel(directory, self.here, self.there), what)
        return ray.get(self.relay.ask.remote(message))


def _replica(loop_config: dict[str, Any]) -> None:
    """One worker of a data-parallel trial (Ray Train's train_loop_per_worker)."""
    import ray.train

    context = ray.train.get_context()
    rank, workers = context.get_world_rank(), context.get_world_size()
    job: worker.SearchJob = loop_config["job"]
    who = TrialIdentity.from_config(loop_config["config"], job.study.study.seed)
    try:
        worker.run_watched(who, job, Replica(rank, loop_config), (rank, workers))
    except _Stopped:
        return
