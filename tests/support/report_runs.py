"""Hand-made trial records and run directories, as a search leaves them: the report tests
(tests/report/) build their figures, pages and run directories from these (no Ray, no
search). `study_records()` is the study most of them read."""

import json
import math
import re
from dataclasses import replace

import optuna

from autostage.decisions import Advance, Continue, Eval, Rewind, ScaleLR, Stop
from autostage.hookspecs import hookimpl
from autostage.keys import PLAN_KEY
from autostage.records import EvalRecord, TrialRecord, TrialStatus
from autostage.rundir import RunDir

# --- records -------------------------------------------------------------------------------

METRIC = "eval.target.loss"
ACCURACY = "eval.target.accuracy"
TRAIN_LOSS, GRAD, GRAD_MIN, GRAD_MAX, CLIPPED = (
    "train.loss", "train.grad_norm", "train.grad_norm_min", "train.grad_norm_max",
    "train.clipped")
STAGES = ["general", "prereq", "target"]
T0 = 1_700_000_000.0
COMPLETED, STOPPED, PRUNED, FAILED, INTERRUPTED, RUNNING = (
    TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.PRUNED, TrialStatus.FAILED,
    TrialStatus.INTERRUPTED, TrialStatus.RUNNING)


def ev(stage, tokens, value, lr=1e-3, decision=None, visit=0, metrics=None, restored=None):
    """An eval as the trial loop records it; every eval carries the policy's decision
    (Continue unless given). A value of None is a non-finite loss. `metrics`: more metrics
    than the study's; `restored`: the metrics a Rewind went back to."""
    return EvalRecord(Eval(
        stage=stage, visit=visit, tokens=tokens, stage_tokens=tokens, stage_budget=0, lr=lr,
        metrics={METRIC: math.nan if value is None else value, **(metrics or {})},
        watch=METRIC, decision=decision or Continue(), restored=restored))


def rec(number, status, value=None, events=(), plan="", config=None, tokens=None,
        started=None, ended=None, reason="", values=None):
    """A trial's record; `value` is its one study metric's, `values` one per metric."""
    config = dict(config or {})
    if plan:
        config.setdefault(PLAN_KEY, plan)
    events = tuple(events)
    return TrialRecord(
        number, status, reason, values=values or (None if value is None else (value,)),
        tokens=events[-1].eval.tokens if tokens is None and events else tokens or 0,
        config=config, started=started, ended=ended, evals=events)


def study_records():
    """Seven trials: three results (one the best, one stopped by its policy), a pruned, a
    failed, a trial that repeats a stage, and one still running."""
    adamw = {"optimizer": "adamw", "optimizer.adamw.lr": 3e-3, "init": "default"}
    sgd = {"optimizer": "sgd", "optimizer.sgd.lr": 0.02, "optimizer.sgd.momentum": 0.9,
           "init": "default"}
    return [
        rec(0, COMPLETED, 1.5, plan="general>target", started=T0, ended=T0 + 10,
            config=adamw,
            events=[ev("general", 100, 4.0), ev("general", 200, 3.8),
                    ev("target", 300, 2.0), ev("target", 400, 1.5)]),
        rec(1, COMPLETED, 1.2, plan="prereq>target", started=T0 + 1, ended=T0 + 12,
            config=sgd,
            events=[ev("prereq", 100, 4.1, lr=2e-2), ev("prereq", 200, 4.1, lr=2e-2,
                                                          decision=ScaleLR(0.5)),
                    ev("target", 300, 1.9, lr=1e-2), ev("target", 400, 1.2, lr=1e-2)]),
        rec(2, STOPPED, 2.0, plan="target", started=T0 + 10, ended=T0 + 14,
            config={**adamw, "optimizer.adamw.lr": 1e-4},
            events=[ev("target", 100, 2.5), ev("target", 200, 2.0,
                                                decision=Stop("no progress"))]),
        rec(3, PRUNED, None, plan="general>target", started=T0 + 12, ended=T0 + 15,
            config={**adamw, "optimizer.adamw.lr": 1e-3},
            reason="stopped early by the asha trial scheduler",
            events=[ev("general", 100, 4.2), ev("general", 200, 4.0), ev("target", 300, 3.0)]),
        rec(4, FAILED, None, plan="prereq>target", started=T0 + 14, ended=T0 + 16,
            config={**sgd, "optimizer.sgd.lr": 0.5},
            reason="non-finite loss at stage prereq, step 3", tokens=150,
            events=[ev("prereq", 100, None)]),
        rec(5, COMPLETED, 1.3, plan="prereq>prereq>target", started=T0 + 15, ended=T0 + 30,
            config={**adamw, "optimizer.adamw.lr": 2e-3},
            events=[ev("prereq", 100, 4.0), ev("prereq", 200, 4.3, decision=Rewind(0.5)),
                    ev("prereq", 300, 3.9, decision=Advance("target")),
                    ev("prereq", 400, 3.7, visit=1), ev("target", 500, 1.3)]),
        rec(6, RUNNING, None, started=T0 + 16, events=[ev("general", 100, 4.4)]),
    ]


def trained(loss, grad, clipped=0.0, **more):
    """What a trainer records at an eval besides the held-out metrics: the training loss,
    the segment's gradient norms (mean, min, max) and the share of its steps clipped."""
    return {TRAIN_LOSS: loss, GRAD: grad, GRAD_MIN: grad / 4, GRAD_MAX: grad * 4,
            CLIPPED: clipped, **more}


def gradient_records():
    """Two trials with training statistics (and a second metric, accuracy): trial 0 clipped
    at its second eval; trial 1 clipped at its first, then regressed (4.3) and its stage
    policy rewound to the weights of its first eval (3.9); only it measured accuracy."""
    return [
        rec(0, COMPLETED, values=(1.5, 0.8), plan="general>target", started=T0,
            ended=T0 + 10, config={"optimizer.adamw.lr": 1e-3}, events=[
                ev("general", 100, 4.0, metrics=trained(4.1, 2.0)),
                ev("general", 200, 3.8, metrics=trained(3.9, 30.0, clipped=0.25)),
                ev("target", 300, 1.5, metrics=trained(1.6, 0.5))]),
        rec(1, COMPLETED, values=(1.2, 0.7), plan="prereq>target", started=T0 + 1,
            ended=T0 + 12, config={"optimizer.adamw.lr": 3e-3}, events=[
                ev("prereq", 100, 3.9, metrics=trained(4.0, 1.0, clipped=0.5)),
                ev("prereq", 200, 4.3, metrics=trained(3.7, 0.8), decision=Rewind(0.5),
                   restored={METRIC: 3.9, **trained(4.0, 1.0, clipped=0.5)}),
                ev("target", 300, 1.2, metrics=trained(1.3, 1e-4, **{ACCURACY: 0.7}))]),
    ]


# --- run directories -----------------------------------------------------------------------


def write_run(path, records, name="toy-study", stages=STAGES, trials=None, optuna_db=True,
              metric=METRIC, mode="min"):
    """A run directory as `autostage search` leaves it, from hand-made records."""
    path.mkdir(parents=True, exist_ok=True)
    study = {"study": {"name": name, "metric": metric, "mode": mode,
                       "trials": trials or len(records), "storage": None},
             "stage": [{"name": s} for s in stages]}
    (path / "study.json").write_text(json.dumps({"study": study, "overrides": []}))
    run = RunDir(path)
    for r in records:
        run.trial_dir(r.number).mkdir(parents=True)
        for e in r.evals:
            run.append_event(r.number, replace(e, time=r.started))
        if r.status is not RUNNING:
            run.write_result(r)
    if optuna_db:
        _write_optuna(path, name, records)
    return path


def _write_optuna(path, name, records):
    storage = f"sqlite:///{path / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=storage)
    choices: dict[str, set] = {}
    for r in records:
        for k, v in r.config.items():
            choices.setdefault(k, set()).add(v)
    for r in records:
        if not r.status.ranked:
            continue
        dists = {k: optuna.distributions.CategoricalDistribution(sorted(choices[k], key=str))
                 for k in r.config}
        study.add_trial(optuna.trial.create_trial(params=dict(r.config), distributions=dists,
                                                  value=r.value))


# --- the page ------------------------------------------------------------------------------


class GoodPlugin:
    """A report plugin that draws one figure: each trial's tokens."""

    @hookimpl
    def report_figures(self, records):
        import plotly.graph_objects as go

        return [go.Figure(go.Bar(x=[r.number for r in records],
                                 y=[r.tokens for r in records]))]


def figure_divs(page):
    return len(re.findall(r'class="plotly-graph-div"', page))


# --- a study whose names and values are markup ---------------------------------------------

EVIL_NAME = "<script>alert(1)</script>"
EVIL_VALUE = "</script><script>document.body.dataset.pwned = 1</script>"
EVIL_STAGE = "<img src=x onerror=\"document.body.dataset.pwned = 1\">"
EVIL_METRIC = f"eval.{EVIL_STAGE}.accuracy"  # a data source named like the stage


def evil_records():
    def evil(record):
        config = {**record.config, "init": EVIL_VALUE}
        if record.plan:
            config[PLAN_KEY] = record.plan.replace("target", EVIL_STAGE)
        evals = [replace(e, eval=replace(
            e.eval, stage=e.eval.stage.replace("target", EVIL_STAGE),
            # (it varies: the menu leaves out a metric with one value at every eval)
            metrics={**e.eval.metrics, EVIL_METRIC: e.eval.tokens / 1000})) for e in record.evals]
        return replace(record, config=config, evals=tuple(evals))

    records = [evil(r) for r in study_records()]
    records[4] = replace(records[4], reason=f"<b>crashed</b> {EVIL_VALUE}")
    # so it varies: a searched parameter
    records[1] = replace(records[1], config={**records[1].config, "init": "<i>other</i>"})
    return records


def evil_run(path):
    return write_run(path, evil_records(), name=EVIL_NAME,
                     stages=["general", "prereq", EVIL_STAGE], trials=10)
