"""Built-in experiment trackers: MLflow and TensorBoard. A study lists them:

    [study]
    trackers = ["mlflow", "tensorboard"]
    tracker_settings = { mlflow = { tracking_uri = "http://127.0.0.1:5000" } }

Both log from the search's driver. Each trial is one run (an MLflow run named `trial <n>`; a
TensorBoard event folder RUN_DIR/tensorboard/trial-<n>) with its sampled parameters, every
eval's metrics and LR at step = the lineage's tokens, where each stage visit starts and every
decision of the stage policy other than Continue, and its outcome. MLflow also records a
branched trial's parent as the parent run (`mlflow.parentRunId`) and keeps the model of a
trial the search keeps as the run's `model` artifacts. Their packages are imported when a
search starts them, never when autostage loads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from autostage.components import Tracker, missing_package
from autostage.decisions import Continue
from autostage.hookspecs import hookimpl
from autostage.records import Branch, EvalRecord, TrialRecord, TrialStatus
from autostage.trackers import stage_started

MLFLOW_INSTALL = "pip install mlflow-skinny (or mlflow, or 'autostage[trackers]')"
TENSORBOARD_INSTALL = "pip install tensorboard (or 'autostage[trackers]')"



def _mlflow_status(status: TrialStatus) -> str:
    """The MLflow run status a trial that ended with `status` ends with."""
    from mlflow.entities import RunStatus

    ended = RunStatus.FINISHED if status.ranked else \
        RunStatus.FAILED if status == TrialStatus.FAILED else RunStatus.KILLED
    return RunStatus.to_string(ended)

TRIAL_TAG = "autostage.trial"


@hookimpl
def register_trackers(register):
    register("mlflow", MLflow)
    register("tensorboard", TensorBoard)


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)}


def _visit(ev: Any) -> str:
    """A stage visit in words: "target", "general (visit 2)"."""
    return ev.stage if ev.visit == 0 else f"{ev.stage} (visit {ev.visit + 1})"


def _branch_text(branch: Branch) -> str:
    return (f"branched from trial {branch.parent} after {branch.tokens} tokens "
            f"(stage {branch.stage})")


def _outcome(record: TrialRecord) -> str:
    values = ", ".join("-" if v is None else f"{v:.6g}" for v in record.values or ())
    text = record.status.value + (f" ({record.reason})" if record.reason else "")
    return text + (f"; value {values}" if values else "") + f"; {record.tokens} tokens charged"


# --- MLflow ---------------------------------------------------------------------------------


class MLflow(Tracker):
    """One MLflow run per trial, in one experiment per study."""

    keeps_models = True
    tracking_uri: str | None = Field(
        None, min_length=1, description="a tracking server (http://host:5000), a database "
        "(sqlite:///path/mlflow.db) or Databricks; default: RUN_DIR/mlflow.db, an SQLite "
        "store (MLflow 3 refuses a plain folder store), its artifacts in RUN_DIR/mlruns")
    experiment: str | None = Field(None, min_length=1,
                                   description="the MLflow experiment; default: the study's name")
    log_models: bool = Field(True, description="log the models the search keeps as artifacts")

    def check(self) -> list[str]:
        return missing_package("mlflow", MLFLOW_INSTALL)

    def start(self, run_dir: Path, study: Any) -> MLflowRun:
        import logging

        from mlflow.tracking import MlflowClient

        # a new store's schema migrations would be INFO lines amid the search's output
        for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
            logging.getLogger(name).setLevel(logging.WARNING)

        run_dir = Path(run_dir).resolve()
        uri = self.tracking_uri or f"sqlite:///{run_dir / 'mlflow.db'}"
        client = MlflowClient(tracking_uri=uri)
        name = self.experiment or study.study.name
        found = client.get_experiment_by_name(name)
        if found is not None:
            experiment = found.experiment_id
        else:  # a local store keeps its artifacts beside it, in the run directory
            artifacts = (run_dir / "mlruns").as_uri() if self.tracking_uri is None else None
            experiment = client.create_experiment(name, artifact_location=artifacts)
        return MLflowRun(client, experiment, study.study, self.log_models)


class MLflowRun:
    def __init__(self, client: Any, experiment: str, study: Any, log_models: bool) -> None:
        self.client, self.experiment = client, experiment
        self.study, self.metrics = study.name, study.metrics
        self.log_models = log_models
        self.ids: dict[int, str] = {}  # trial number -> its MLflow run's id
        self.last: dict[int, Any] = {}  # trial number -> its last Eval
        self.visits: dict[int, int] = {}  # trial number -> stage visits seen
        self.open: set[int] = set()  # trials started and not ended

    def _find(self, number: int) -> str | None:
        """The run of trial `number`: this session's, or an earlier session's (--resume)."""
        if number not in self.ids:
            runs = self.client.search_runs(
                [self.experiment], filter_string=f"tags.`{TRIAL_TAG}` = '{number}'",
                max_results=1)
            if runs:
                self.ids[number] = runs[0].info.run_id
        return self.ids.get(number)

    def trial_started(self, number: int, params: Mapping[str, Any],
                      branch: Branch | None) -> None:
        from mlflow.entities import Param, RunTag

        tags = {TRIAL_TAG: str(number), "autostage.study": self.study}
        if branch is not None:
            tags["autostage.parent"] = str(branch.parent)
            tags["autostage.branch_point"] = _branch_text(branch)
            if (parent := self._find(branch.parent)) is not None:
                tags["mlflow.parentRunId"] = parent
        run_id = self._find(number)
        if run_id is None:
            run_id = self.client.create_run(self.experiment, run_name=f"trial {number}",
                                            tags=tags).info.run_id
            self.ids[number] = run_id
            self.client.log_batch(run_id, params=[Param(k, str(v)[:6000])
                                                  for k, v in sorted(params.items())])
        else:  # run again by a resumed search: its parameters are logged already
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            self.client.update_run(run_id, status="RUNNING")
        self.last.pop(number, None)
        self.open.add(number)

    def eval(self, number: int, record: EvalRecord) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._find(number)
        if run_id is None:
            return
        ev, stamp = record.eval, int((record.time or time.time()) * 1000)
        metrics = {**_finite(ev.metrics), **_finite({"lr": ev.lr})}
        tags = []
        if stage_started(self.last.get(number), ev):
            visit = self.visits[number] = self.visits.get(number, -1) + 1
            metrics["autostage.stage_visit"] = visit
            tags.append(RunTag(f"autostage.stage.{visit}",
                               f"{_visit(ev)} from {ev.tokens - ev.stage_tokens} tokens"))
        if ev.decision is not None and not isinstance(ev.decision, Continue):
            tags.append(RunTag(f"autostage.decision.{ev.tokens}", record.decision_label))
        self.client.log_batch(run_id, metrics=[Metric(k, v, stamp, ev.tokens)
                                               for k, v in metrics.items()], tags=tags)
        self.last[number] = ev

    def trial_ended(self, record: TrialRecord, model: Path | None) -> None:
        from mlflow.entities import Metric, RunTag

        run_id = self._find(record.number)
        if run_id is None:
            return
        stamp = int((record.ended or time.time()) * 1000)
        tags = {"autostage.status": record.status.value, "autostage.reason": record.reason,
                "autostage.outcome": _outcome(record)}
        metrics = {"autostage.tokens_charged": record.tokens}
        for metric, value in zip(self.metrics, record.values or (), strict=False):
            if value is not None and math.isfinite(value):
                metrics[f"result.{metric}"] = value  # the trial's value, as Optuna has it
        last = self.last.get(record.number)
        step = last.tokens if last is not None else 0
        self.client.log_batch(run_id, metrics=[Metric(k, v, stamp, step)
                                               for k, v in metrics.items()],
                              tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
        if model is not None and self.log_models:
            self.client.log_artifacts(run_id, str(model), "model")
            self.client.set_tag(run_id, "autostage.model", "model")
        self.client.set_terminated(run_id, _mlflow_status(record.status), end_time=stamp)
        self.open.discard(record.number)

    def close(self) -> None:
        for number in sorted(self.open):  # cut short: --resume runs them again
            if (run_id := self._find(number)) is not None:
                self.client.set_terminated(run_id, "KILLED")
        self.open.clear()


# --- TensorBoard ----------------------------------------------------------------------------


class TensorBoard(Tracker):
    """One TensorBoard event folder per trial: `tensorboard --logdir RUN_DIR/tensorboard`."""

    logdir: str | None = Field(None, min_length=1,
                               description="where the trials' event folders go; default: "
                               "RUN_DIR/tensorboard")

    def check(self) -> list[str]:
        return missing_package("tensorboard", TENSORBOARD_INSTALL)

    def start(self, run_dir: Path, study: Any) -> TensorBoardRun:
        import tensorboard.summary.writer.event_file_writer  # noqa: F401  (fails here if absent)

        logdir = Path(self.logdir) if self.logdir else Path(run_dir) / "tensorboard"
        logdir.mkdir(parents=True, exist_ok=True)
        return TensorBoardRun(logdir)


class TensorBoardRun:
    """Event files written with TensorBoard's own writer (no TensorFlow, no torch)."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.writers: dict[int, Any] = {}
        self.last: dict[int, Any] = {}

    def _writer(self, number: int) -> Any:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if number not in self.writers:
            self.writers[number] = EventFileWriter(str(self.logdir / f"trial-{number}"))
        return self.writers[number]

    def _write(self, number: int, step: int, summary: Any, wall: float | None = None) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._writer(number).add_event(Event(wall_time=wall or time.time(), step=step,
                                             summary=summary))

    def trial_started(self, number: int, params: Mapping[str, Any],
                      branch: Branch | None) -> None:
        from tensorboard.plugins.hparams import summary_v2 as hp
        from tensorboard.plugins.text.summary_v2 import text_pb

        step = branch.tokens if branch is not None else 0
        rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(params.items()))
        self._write(number, step, text_pb("params", f"| parameter | value |\n|---|---|\n{rows}"))
        hparams = {k: v if isinstance(v, bool | int | float | str) else str(v)
                   for k, v in params.items()}
        self._write(number, step, hp.hparams_pb(hparams, trial_id=f"trial-{number}"))
        if branch is not None:
            self._write(number, step, text_pb("lineage", _branch_text(branch)))
        self.last.pop(number, None)
        self._writer(number).flush()

    def eval(self, number: int, record: EvalRecord) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.text.summary_v2 import text_pb

        ev, wall = record.eval, record.time
        scalars = {**_finite(ev.metrics), **_finite({"lr": ev.lr})}
        self._write(number, ev.tokens, Summary(value=[
            Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]), wall)
        if stage_started(self.last.get(number), ev):
            self._write(number, ev.tokens - ev.stage_tokens,
                        text_pb("stages", f"{_visit(ev)} starts"), wall)
        if ev.decision is not None and not isinstance(ev.decision, Continue):
            self._write(number, ev.tokens, text_pb("decisions", record.decision_label), wall)
        self.last[number] = ev
        self._writer(number).flush()

    def trial_ended(self, record: TrialRecord, model: Path | None) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        last = self.last.pop(record.number, None)
        step = last.tokens if last is not None else 0
        self._write(record.number, step, text_pb("outcome", _outcome(record)), record.ended)
        self.writers.pop(record.number).close()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()
