"""Read back what the built-in trackers logged, with each tracker's own reader: MLflow's
client API and TensorBoard's event-file reader (`EventAccumulator`). Used by the trackers'
contract tests and the searches that log to them."""

from __future__ import annotations

import re
from pathlib import Path

from autostage.testing import Logged


def mlflow_uri(run_dir: Path) -> str:
    """The built-in MLflow tracker's default store for `run_dir`."""
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


def read_mlflow(run_dir: Path, experiment: str | None = None) -> dict[int, Logged]:
    """Every trial's MLflow run in the run directory's store, by trial number."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri(run_dir))
    experiments = [e.experiment_id for e in client.search_experiments()
                   if experiment is None or e.name == experiment]
    runs = client.search_runs(experiments, max_results=1000)
    number = {r.info.run_id: int(r.data.tags["autostage.trial"]) for r in runs}
    out = {}
    for run in runs:
        tags = run.data.tags
        metrics = {key: [(m.step, m.value) for m in
                         client.get_metric_history(run.info.run_id, key)]
                   for key in run.data.metrics}
        parent = tags.get("mlflow.parentRunId")
        files = [a.path for a in client.list_artifacts(run.info.run_id, "model")]
        out[number[run.info.run_id]] = Logged(
            params=dict(run.data.params), metrics=metrics,
            notes="\n".join(f"{k}={v}" for k, v in sorted(tags.items())),
            parent=number.get(parent) if parent else None, model_files=files)
    return out


def read_tensorboard(run_dir: Path) -> dict[int, Logged]:
    """Every trial's event folder under RUN_DIR/tensorboard, by trial number."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for folder in sorted((Path(run_dir) / "tensorboard").glob("trial-*")):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        metrics = {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
                   for tag in tags["scalars"]}
        texts = {tag: [t.tensor_proto.string_val[0].decode() for t in acc.Tensors(tag)
                       if t.tensor_proto.string_val]  # (hparams' tags hold none)
                 for tag in tags["tensors"]}
        params = {}
        for table in texts.get("params", []):
            for line in table.splitlines()[2:]:
                key, value = (cell.strip() for cell in line.strip("|").split("|", 1))
                params[key] = value
        lineage = re.search(r"branched from trial (\d+)", " ".join(texts.get("lineage", [])))
        out[int(folder.name.removeprefix("trial-"))] = Logged(
            params=params, metrics=metrics,
            notes="\n".join(f"{k}: {t}" for k, ts in sorted(texts.items()) for t in ts),
            parent=int(lineage.group(1)) if lineage else None)
    return out
