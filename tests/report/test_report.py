"""The study report: each figure's data from hand-made records, the page, and the command."""

import json
import math
import re
import shutil
from dataclasses import replace

import optuna
import pytest
from support import FIXTURES
from support.report_runs import (
    ACCURACY,
    CLIPPED,
    COMPLETED,
    FAILED,
    GRAD,
    GRAD_MAX,
    GRAD_MIN,
    INTERRUPTED,
    METRIC,
    PRUNED,
    RUNNING,
    STAGES,
    STOPPED,
    T0,
    TRAIN_LOSS,
    GoodPlugin,
    ev,
    evil_run,
    figure_divs,
    gradient_records,
    rec,
    study_records,
    write_run,
)

from autostage.cli import main
from autostage.decisions import Advance, Continue, Rewind, ScaleLR, Stop
from autostage.hookspecs import hookimpl
from autostage.host import plugin_manager
from autostage.records import TrialRecord, TrialStatus, best_trial
from autostage.report import build_report, write_report
from autostage.report.curves import _curves_info, _lr_info
from autostage.report.metrics import _metrics_info, plot_metrics
from autostage.report.params import (
    _dimension,
    _importance_info,
    _parallel_info,
    _storage_importance_info,
)
from autostage.report.plans import _plans_info
from autostage.report.plugins import plugin_figures
from autostage.report.progress import _best_so_far_info, _compute_info
from autostage.report.sections import sections
from autostage.report.study_run import load_run
from autostage.report.style import STATUS_COLOURS, decision_kind
from autostage.report.tables import _failed_info, _top_trials_info
from autostage.report.timeline import _timeline_info

#: a run directory written by autostage at commit b659e5d, before the typed records: flat eval
#: lines, decisions as text labels (see tests/fixtures/README.md)
OLD_RUN = FIXTURES / "run-b659e5d"


def test_every_status_has_its_colour_and_a_decision_kind_comes_from_its_type():
    assert set(STATUS_COLOURS) == set(TrialStatus)
    assert [decision_kind(d) for d in (ScaleLR(0.5), Rewind(0.5), Advance("target"),
                                       Advance(), Stop("advance: no, stop"), Continue())] == [
        "scale_lr", "rewind", "advance", "advance", "stop", "continue"]


# --- each figure's data --------------------------------------------------------------------


def test_best_so_far_follows_the_order_trials_ended_and_counts_every_trials_tokens():
    info = _best_so_far_info(study_records(), "min")
    walk = info["by_tokens"]
    assert walk["trial"] == [0, 1, 2, 3, 4, 5]  # the running trial is not finished
    assert walk["x"] == [400, 800, 1000, 1300, 1450, 1950]  # pruned and failed cost too
    assert walk["value"] == [1.5, 1.2, 2.0, None, None, 1.3]
    assert walk["best"] == [1.5, 1.2, 1.2, 1.2, 1.2, 1.2]


def test_best_so_far_by_trial_number_and_for_a_metric_to_maximise():
    records = [rec(0, COMPLETED, 0.5, ended=T0 + 9), rec(1, COMPLETED, 0.7, ended=T0 + 1),
               rec(2, PRUNED, None, ended=T0 + 5, tokens=10)]
    info = _best_so_far_info(records, "max")
    assert info["by_tokens"]["trial"] == [1, 2, 0]
    assert info["by_tokens"]["best"] == [0.7, 0.7, 0.7]
    assert info["by_number"]["x"] == [0, 1, 2]
    assert info["by_number"]["best"] == [0.5, 0.7, 0.7]


def test_best_so_far_before_any_trial_finished_says_so():
    assert "missing" in _best_so_far_info([rec(0, RUNNING, events=[ev("a", 1, 1.0)])], "min")


def test_learning_curves_mark_the_best_trial_stage_boundaries_and_decisions():
    info = _curves_info(study_records(), METRIC, "min")
    trials = {t["number"]: t for t in info["trials"]}
    assert info["best"] == 1 and trials[1]["best"] and not trials[0]["best"]
    assert trials[0]["tokens"] == [100, 200, 300, 400]
    assert trials[0]["y"] == [4.0, 3.8, 2.0, 1.5]
    assert trials[0]["boundaries"] == [
        {"tokens": 200, "y": 3.8, "from": "general", "to": "target"}]
    assert trials[4]["y"] == [None]  # a non-finite loss is a gap, not a point
    assert [(d["kind"], d["stage"], d["tokens"]) for d in trials[5]["decisions"]] == [
        ("rewind", "prereq", 200), ("advance", "prereq", 300)]
    assert [b["to"] for b in trials[5]["boundaries"]] == ["prereq#2", "target"]
    assert trials[2]["decisions"][0]["decision"] == "stop: no progress"
    assert 6 in trials and trials[6]["status"] is RUNNING


def test_lr_paths_show_the_learning_rate_and_where_the_policy_scaled_it():
    info = _lr_info(study_records(), "min")
    best = next(t for t in info["trials"] if t["number"] == 1)
    assert best["y"] == [2e-2, 2e-2, 1e-2, 1e-2]
    assert best["decisions"] == [{"tokens": 200, "y": 2e-2, "stage": "prereq",
                                  "decision": "scale_lr x0.5", "kind": "scale_lr"}]


def test_learning_curves_without_evals_say_so():
    assert "missing" in _curves_info([rec(0, FAILED)], METRIC, "min")


def menu(fig):
    """The recorded-metrics figure's menu entries by label, and the label shown."""
    entries = fig.layout.updatemenus[0].buttons
    return {e.label: e for e in entries}, entries[fig.layout.updatemenus[0].active].label


def plotted(fig, key, trace):
    """The y values a menu entry puts into the trace whose name starts with `trace`."""
    index = next(i for i, t in enumerate(fig.data) if t.name.startswith(trace))
    return list(menu(fig)[0][key].args[0]["y"][index])


def test_recorded_metrics_show_gradient_norms_first_on_a_log_axis():
    fig = plot_metrics(_metrics_info(gradient_records(), "min"))
    entries, shown = menu(fig)
    assert shown == GRAD
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis.title.text == GRAD
    best = next(t for t in fig.data if t.name == "best: trial 1")
    assert list(best.y) == [1.0, 0.8, 1e-4, None] == plotted(fig, GRAD, "best")
    assert [entries[k].args[1]["yaxis.type"] for k in (GRAD_MIN, GRAD_MAX, TRAIN_LOSS)] == [
        "log", "log", "linear"]
    no_gradients = [rec(0, COMPLETED, 1.0, events=[ev("a", 1, 1.0, metrics={TRAIN_LOSS: 1.1})])]
    fig = plot_metrics(_metrics_info(no_gradients, "min"))
    assert menu(fig)[1] == TRAIN_LOSS and fig.layout.yaxis.type == "linear"


def test_the_metric_menu_offers_every_recorded_metric_and_only_those():
    fig = plot_metrics(_metrics_info(gradient_records(), "min"))
    entries, _ = menu(fig)
    assert list(entries) == [CLIPPED, GRAD, GRAD_MAX, GRAD_MIN, TRAIN_LOSS, ACCURACY, METRIC]
    assert all(len(e.args[0]["y"]) == len(fig.data) for e in entries.values())
    assert plotted(fig, ACCURACY, "best") == [None, None, 0.7, None]  # where it was measured
    assert list(menu(plot_metrics(_metrics_info(study_records(), "min")))[0]) == [METRIC]
    assert "missing" in _metrics_info([rec(0, FAILED)], "min")


def test_clipping_markers_sit_exactly_at_the_evals_that_clipped():
    fig = plot_metrics(_metrics_info(gradient_records(), "min"))
    clipped = next(t for t in fig.data if t.name.startswith("gradients clipped"))
    assert clipped.name == "gradients clipped (2)"
    assert list(clipped.x) == [200, 100]
    assert list(clipped.text) == ["trial 0 in general: 25% of its optimizer steps clipped",
                                  "trial 1 in prereq: 50% of its optimizer steps clipped"]
    assert list(clipped.y) == [30.0, 1.0] == plotted(fig, GRAD, "gradients clipped")
    assert plotted(fig, TRAIN_LOSS, "gradients clipped") == [3.9, 4.0]
    unclipped = plot_metrics(_metrics_info(study_records(), "min"))  # no train.clipped
    assert not any(t.name.startswith("gradients clipped") for t in unclipped.data)


def test_a_rewind_is_plotted_as_measured_with_the_restored_value_in_its_hover():
    records = gradient_records()
    fig = plot_metrics(_metrics_info(records, "min"))
    assert plotted(fig, METRIC, "best") == [3.9, 4.3, 1.2, None]  # the regression shows
    assert plotted(fig, METRIC, "policy: rewind") == [4.3]
    assert plotted(fig, TRAIN_LOSS, "policy: rewind") == [3.7]
    rewind = next(t for t in fig.data if t.name.startswith("policy: rewind"))
    assert list(rewind.text) == [
        "trial 1 in prereq: rewind, lr x0.5<br>restored eval.target.loss = 3.9"]
    curve = next(t for t in _curves_info(records, METRIC, "min")["trials"] if t["number"] == 1)
    assert curve["y"] == [3.9, 4.3, 1.2]
    assert curve["decisions"][0]["restored"] == {"metric": METRIC, "value": 3.9}


def test_stage_plans_best_first_with_every_outcome_counted():
    info = _plans_info(study_records(), "min")
    plans = [(p["plan"], p["best"], p["counts"]) for p in info["plans"]]
    assert plans == [
        ("prereq>target", 1.2, {COMPLETED: 1, FAILED: 1}),
        ("prereq>prereq>target", 1.3, {COMPLETED: 1}),
        ("general>target", 1.5, {COMPLETED: 1, PRUNED: 1}),
        ("target", 2.0, {STOPPED: 1}),
    ]  # the running trial's plan is not known yet


def test_a_plan_without_results_comes_last_and_unplanned_trials_use_their_stages():
    records = [rec(0, PRUNED, plan="a>b", events=[ev("a", 1, 3.0)]),
               rec(1, COMPLETED, 3.0, events=[ev("a", 1, 4.0), ev("b", 2, 3.0)]),
               rec(2, COMPLETED, 2.0, plan="b")]
    info = _plans_info(records, "max")
    assert [(p["plan"], p["values"], p["trials"]) for p in info["plans"]] == [
        ("a>b", [3.0], [1]), ("b", [2.0], [2])]
    assert info["plans"][0]["counts"] == {PRUNED: 1, COMPLETED: 1}
    records[2] = replace(records[2], status=FAILED, values=None)
    assert _plans_info(records, "max")["plans"][-1]["plan"] == "b"


def test_parallel_coordinates_axes_are_the_sampled_parameters():
    info = _parallel_info(study_records(), "min")
    assert info["trials"] == [0, 1, 2, 5] and info["values"] == [1.5, 1.2, 2.0, 1.3]
    axes = {a["key"]: a for a in info["axes"]}
    assert info["axes"][0]["key"] == "plan.order"  # long tick labels: the left margin is free
    assert "init" not in axes  # the same in every trial: a setting, not a choice
    assert axes["optimizer"]["kind"] == "category"
    assert axes["optimizer"]["categories"] == ["adamw", "sgd"]
    assert axes["optimizer.adamw.lr"]["kind"] == "log"  # 1e-4 .. 3e-3 spans > 20x
    assert axes["optimizer.adamw.lr"]["values"] == [3e-3, None, 1e-4, 2e-3]  # conditional
    assert axes["optimizer.sgd.momentum"]["kind"] == "number"


def test_parallel_coordinates_need_two_results():
    assert "not enough trials" in _parallel_info(study_records()[:1], "min")["missing"]


def test_an_axis_puts_trials_without_the_parameter_below_its_range():
    dim = _dimension({"key": "lr", "kind": "log", "values": [1e-4, None, 1e-2]})
    assert dim["values"][0] == pytest.approx(-4) and dim["values"][2] == pytest.approx(-2)
    assert dim["values"][1] < -4 and dim["ticktext"][0] == "unused"
    assert dim["ticktext"][1:] == ["0.0001", "0.0003162", "0.001", "0.003162", "0.01"]
    cat = _dimension({"key": "opt", "kind": "category", "values": ["sgd", None],
                      "categories": ["sgd"]})
    assert cat["values"] == [1, 0] and cat["ticktext"] == ["unused", "sgd"]


def _optuna_study(trials, directions=("minimize",)):
    study = optuna.create_study(directions=list(directions))
    for params, values in trials:
        dists = {k: optuna.distributions.CategoricalDistribution([v]) if isinstance(v, str)
                 else optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)
                 for k, v in params.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  values=values))
    return study


def test_importances_need_two_completed_trials():
    assert "not enough trials" in _importance_info(_optuna_study([]))["missing"]
    one = _optuna_study([({"opt": "a", "a.lr": 1e-3}, [1.0])])
    assert "not enough trials" in _importance_info(one)["missing"]
    assert "no Optuna study" in _importance_info(None)["missing"]


def test_importances_cover_conditional_parameters():
    study = optuna.create_study()
    for i in range(12):
        opt = "a" if i % 2 else "b"
        lr = 10 ** (-4 + i / 4)
        params = {"opt": opt, f"{opt}.lr": lr}
        dists = {"opt": optuna.distributions.CategoricalDistribution(["a", "b"]),
                 f"{opt}.lr": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  value=lr if opt == "a" else 0.5))
    info = _importance_info(study)
    assert set(info["params"]) == {"opt", "a.lr", "b.lr"}
    assert sum(info["importance"]) == pytest.approx(1.0)
    assert info["trials"] == 12 and "few" not in info["note"]


def test_a_storage_that_cannot_be_opened_is_a_note():
    info = _storage_importance_info("postgresql://nobody@127.0.0.1:9/none", "s")
    assert info["missing"].startswith("could not open the Optuna storage: ")


def test_importances_of_identical_results_or_a_two_metric_study():
    same = _optuna_study([({"x": 1e-3}, [1.0]), ({"x": 1e-2}, [1.0])])
    assert "same value" in _importance_info(same)["missing"]
    two = _optuna_study([({"x": 1e-3}, [1.0, 5.0]), ({"x": 1e-2}, [2.0, 5.0]),
                         ({"x": 1e-1}, [3.0, 5.0])], directions=("minimize", "minimize"))
    info = _importance_info(two)
    assert info["params"] == ["x"] and "few" in info["note"]


def test_timeline_in_seconds_with_running_trials_until_now():
    info = _timeline_info(study_records(), now=T0 + 40)
    trials = {t["number"]: t for t in info["trials"]}
    assert info["t0"] == T0
    assert (trials[1]["start"], trials[1]["end"]) == (1, 12)
    assert (trials[6]["start"], trials[6]["end"]) == (16, 40)
    assert trials[4]["reason"].startswith("non-finite loss")
    assert info["parallel"]["t"] == [0, 1, 10, 12, 14, 15, 16, 30, 40]
    assert info["parallel"]["at_once"] == [1, 2, 2, 2, 2, 2, 2, 1, 0]  # one ends, one starts
    assert info["untimed"] == 0


def test_parallelism_counts_an_end_and_a_start_at_one_instant_once():
    records = [rec(0, COMPLETED, 1.0, started=0.0, ended=5.0),
               rec(1, COMPLETED, 1.0, started=5.0, ended=9.0),
               rec(2, INTERRUPTED)]
    info = _timeline_info(records, now=10.0)
    assert info["parallel"] == {"t": [0.0, 5.0, 9.0], "at_once": [1, 1, 0], "peak": 1}
    assert info["untimed"] == 1


def test_compute_by_outcome_and_stage():
    info = _compute_info(study_records(), STAGES)
    assert info["total"] == 400 + 400 + 200 + 300 + 150 + 500 + 100
    assert info["stages"] == ["general", "prereq", "prereq#2", "target"]
    assert info["statuses"] == [COMPLETED, STOPPED, PRUNED, FAILED, RUNNING]
    assert info["tokens"][COMPLETED] == {"general": 200, "target": 500, "prereq": 500,
                                           "prereq#2": 100}
    assert info["tokens"][FAILED] == {"prereq": 150}  # tokens after its last eval count
    assert info["trials"][COMPLETED] == 3


def test_top_trials_show_the_metric_at_the_end_of_each_stage():
    info = _top_trials_info(study_records(), METRIC, "min", STAGES, limit=2)
    assert info["stages"] == ["prereq", "prereq#2", "target"]  # the stages these two ran
    first, second = info["rows"]
    assert (first["number"], second["number"]) == (1, 5)
    assert first["stage_evals"] == {"prereq": 4.1, "target": 1.2}
    assert second["stage_evals"] == {"prereq": 3.9, "prereq#2": 3.7, "target": 1.3}
    assert first["decisions"] == ["scale_lr x0.5 (prereq, 200)"]
    assert first["params"] == {"optimizer": "sgd", "optimizer.sgd.lr": 0.02,
                               "optimizer.sgd.momentum": 0.9}


def test_failed_trials_with_where_and_why():
    rows = _failed_info(study_records())["rows"]
    assert rows == [{"number": 4, "plan": "prereq>target", "stage": "prereq", "tokens": 150,
                     "reason": "non-finite loss at stage prereq, step 3"}]
    assert _failed_info([rec(0, FAILED)])["rows"][0]["stage"] == "before its first eval"


# --- reading a run directory ---------------------------------------------------------------


def test_a_run_directory_reads_back_as_the_records_written(tmp_path):
    records = study_records()
    run = load_run(write_run(tmp_path / "run", records, trials=10))
    assert [r.number for r in run.records] == [r.number for r in records]
    assert all(isinstance(r, TrialRecord) for r in run.records)
    assert [[e.eval for e in r.evals] for r in run.records] == [
        [replace(e.eval, metrics={k: v if math.isfinite(v) else None
                                  for k, v in e.eval.metrics.items()}) for e in r.evals]
        for r in records]  # a non-finite loss is stored as null
    assert [e.eval.decision for e in run.records[5].decisions] == [Rewind(0.5),
                                                                   Advance("target")]
    assert _curves_info(run.records, METRIC, "min") == _curves_info(records, METRIC, "min")


def test_a_trial_with_evals_and_no_result_is_running(tmp_path):
    run = load_run(write_run(tmp_path / "run", study_records(), trials=10))
    running = [r for r in run.records if r.status is RUNNING]
    assert [r.number for r in running] == [6]
    assert running[0].tokens == 100 and running[0].started == T0 + 16
    assert run.running == 1 and run.finished == 6 and run.partial


def test_a_retried_trials_repeated_evals_are_replaced_by_the_retry(tmp_path):
    events = [ev("a", 100, 3.0), ev("a", 200, 2.9), ev("b", 300, 2.0), ev("b", 400, 1.9),
              ev("b", 300, 2.1), ev("b", 400, 1.8)]  # restored from the boundary at 200
    run = load_run(write_run(tmp_path / "run", [rec(0, COMPLETED, 1.8, events=events)],
                             optuna_db=False))
    assert [(e.eval.tokens, e.metric(METRIC)) for e in run.records[0].evals] == [
        (100, 3.0), (200, 2.9), (300, 2.1), (400, 1.8)]


def test_not_a_run_directory_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


# --- a study with two metrics ----------------------------------------------------------------


def two_metric_records():
    """Loss (lower is better) and accuracy (higher is better): trials 0, 1 and 2 trade one
    for the other; 3 and 5 are dominated (5 by 0: as low a loss, less accurate); 4 was pruned
    and 6 failed, so neither ranks, however good 4's last values look."""
    def trial(number, status, loss, accuracy, lr):
        return rec(number, status, values=(loss, accuracy), plan="general>target",
                   config={"optimizer.adamw.lr": lr}, started=T0 + number,
                   ended=T0 + number + 1,
                   events=[ev("target", 100, loss, metrics={ACCURACY: accuracy})])

    return [trial(0, COMPLETED, 1.0, 0.5, 1e-3), trial(1, COMPLETED, 2.0, 0.9, 2e-3),
            trial(2, STOPPED, 1.5, 0.6, 3e-3), trial(3, COMPLETED, 2.5, 0.55, 4e-3),
            trial(4, PRUNED, 0.1, 0.99, 5e-3), trial(5, COMPLETED, 1.0, 0.4, 6e-3),
            rec(6, FAILED, started=T0 + 6, ended=T0 + 7, reason="non-finite loss")]


def two_metric_run(path):
    return write_run(path, two_metric_records(), metric=[METRIC, ACCURACY],
                     mode=["min", "max"], optuna_db=False)


def test_a_two_metric_study_shows_its_pareto_front_and_a_one_metric_study_none(tmp_path):
    host = plugin_manager(entry_points=False)
    run = load_run(two_metric_run(tmp_path / "two"))
    assert (run.metrics, run.modes, run.metric, run.mode) == (
        [METRIC, ACCURACY], ["min", "max"], METRIC, "min")
    front = sections(run, host, T0 + 40)[0]
    assert front.title == "Pareto front"
    dominated, on_front = front.figure.data
    assert list(on_front.customdata) == [0, 2, 1]  # connected along the front
    assert (list(on_front.x), list(on_front.y)) == ([1.0, 1.5, 2.0], [0.5, 0.6, 0.9])
    assert on_front.mode == "lines+markers" and on_front.name == "Pareto front (3)"
    assert sorted(dominated.customdata) == [3, 5] and dominated.mode == "markers"
    assert on_front.text[0] == ("trial 0 · general&gt;target<br>eval.target.loss = 1"
                                "<br>eval.target.accuracy = 0.5")
    rows = re.findall(r"<tr>(.*?)</tr>", front.table)[1:]
    assert [re.findall(r"<td>(.*?)</td>", row)[:4] for row in rows] == [
        ["0", "1", "0.5", "general&gt;target"], ["2", "1.5", "0.6", "general&gt;target"],
        ["1", "2", "0.9", "general&gt;target"]]  # best loss first
    assert "optimizer.adamw.lr = 0.003" in rows[1]
    page = build_report(tmp_path / "two", host=host, now=T0 + 40)
    assert page.index("<h2>Pareto front</h2>") < page.index("<h2>Best so far</h2>")
    assert "<code>eval.target.accuracy</code> (higher is better) — no one trial is best" in page

    one = load_run(write_run(tmp_path / "one", study_records(), optuna_db=False))
    assert one.metrics == [METRIC] and one.modes == ["min"]
    assert "Pareto front" not in [s.title for s in sections(one, host, T0 + 40)]
    page = build_report(tmp_path / "one", host=host, now=T0 + 40)
    assert "Pareto" not in page
    assert "<tr><th>metric</th><td><code>eval.target.loss</code> (lower is better)" in page


def test_one_mode_for_two_metrics_is_each_ones(tmp_path):
    path = write_run(tmp_path / "run", two_metric_records()[:2], metric=[METRIC, ACCURACY],
                     mode="min", optuna_db=False)
    assert load_run(path).modes == ["min", "min"]


# --- the page ------------------------------------------------------------------------------


class DictPlugin:
    """A plugin that prefers plain dicts: `to_json()` of a record and of its evals."""

    @hookimpl
    def report_figures(self, records):
        import plotly.graph_objects as go

        rows = [r.to_json() for r in records]
        evals = [[e.to_json() for e in r.evals] for r in records]
        return [go.Figure(go.Scatter(
            x=[row["number"] for row in rows], text=[row["status"] for row in rows],
            y=[e[-1]["metrics"][METRIC] if e else None for e in evals]))]


class AnotherPlugin(GoodPlugin):
    pass


class BrokenPlugin:
    @hookimpl
    def report_figures(self, records):
        raise RuntimeError("no figures today")


class WrongPlugin:
    @hookimpl
    def report_figures(self, records):
        return ["not a figure"]


def test_plugin_figures_come_in_load_order_and_a_broken_plugin_becomes_a_note():
    host = plugin_manager(entry_points=False,
                          plugins=[GoodPlugin(), BrokenPlugin(), WrongPlugin(), AnotherPlugin()])
    figures, notes = plugin_figures(host, study_records())
    assert [f.plugin for f in figures] == ["GoodPlugin", "AnotherPlugin"]
    assert list(figures[0].figure.data[0].x) == [0, 1, 2, 3, 4, 5, 6]
    assert notes == ["plugin 'BrokenPlugin' raised in hook report_figures: RuntimeError: "
                     "no figures today",
                     "plugin 'WrongPlugin' returned str from report_figures, not "
                     "plotly.graph_objects.Figure: left out"]


def test_a_plugin_gets_typed_records_and_plain_dicts_when_it_asks():
    host = plugin_manager(entry_points=False, plugins=[DictPlugin()])
    figures, notes = plugin_figures(host, study_records())
    assert notes == []
    data = figures[0].figure.data[0]
    assert list(data.x) == [0, 1, 2, 3, 4, 5, 6]
    assert list(data.text) == ["completed", "completed", "stopped", "pruned", "failed",
                               "completed", "running"]
    assert list(data.y)[:3] == [1.5, 1.2, 2.0]


def test_the_report_has_every_figure_and_table(tmp_path):
    run = write_run(tmp_path / "run", study_records(), trials=10)
    host = plugin_manager(entry_points=False, plugins=[GoodPlugin(), BrokenPlugin()])
    page = build_report(run, host=host, now=T0 + 40)
    declared = int(re.search(r"name='autostage-figures' content='(\d+)'", page).group(1))
    assert declared == figure_divs(page) == 10  # 9 built-in figures and the plugin's
    for heading in ("Best so far", "Learning curves", "Learning-rate paths",
                    "Recorded metrics", "Stage plans",
                    "Sampled parameters", "Parameter importances", "Where the compute went",
                    "Timeline", "Top trials", "Failed trials", "From plugin GoodPlugin"):
        assert f"<h2>{heading}</h2>" in page
    assert "plugin &#x27;BrokenPlugin&#x27; raised in hook report_figures" in page
    assert "Partial results:</b> 6 of 10 trials finished, 1 still running" in page
    assert "Best: trial 1" in page
    assert "non-finite loss at stage prereq, step 3" in page


def test_too_few_trials_for_a_figure_is_a_note_not_a_failure(tmp_path):
    records = [rec(0, COMPLETED, 1.0, config={"x": "a"}, started=T0, ended=T0 + 1,
                   events=[ev("target", 100, 1.0)])]
    page = build_report(write_run(tmp_path / "run", records),
                        host=plugin_manager(entry_points=False))
    assert "not enough trials: parameter importances need at least 2 completed trials, " \
           "this study has 1" in page
    assert "not enough trials: 1 with a result, the plot needs 2" in page
    assert "Partial results" not in page


def test_names_and_values_cannot_inject_markup_or_script(tmp_path):
    page = build_report(evil_run(tmp_path / "run"), host=plugin_manager(entry_points=False))
    scripts = len(re.findall(r"<script", page, re.I))
    assert scripts == 1 + figure_divs(page)  # plotly.js, then one per figure: nothing else
    assert "<script>alert" not in page and "<img" not in page and "<b>crashed" not in page
    assert "<h1>Study <code>&lt;script&gt;alert(1)&lt;/script&gt;</code></h1>" in page
    assert "<title>autostage report: &lt;script&gt;alert(1)&lt;/script&gt;</title>" in page
    assert "&lt;/script&gt;&lt;script&gt;document.body.dataset.pwned" in page  # in a table
    # figure text is entity-escaped: Plotly shows it as written instead of parsing its tags
    assert '"text":"\\u25b6 &lt;img src=x onerror=\\"document' in page
    assert '"label":"eval.&lt;img src=x onerror=\\"document' in page  # a metric in the menu


def test_report_command_writes_into_the_run_directory_or_where_asked(tmp_path, capsys):
    run = write_run(tmp_path / "run", study_records())
    assert main(["report", str(run)]) == 0
    inline = (run / "report.html").read_text()
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(run), "-o", str(tmp_path / "small.html"), "--cdn"]) == 0
    small = (tmp_path / "small.html").read_text()
    assert re.search(r"<script src='https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js'", small)
    assert len(inline) > 3_000_000 > 300_000 > len(small)  # plotly.js inlined: opens offline
    assert figure_divs(inline) == figure_divs(small) == 9


def test_a_report_can_be_written_while_trials_run_and_without_optuna_storage(tmp_path):
    records = [rec(0, RUNNING, started=T0, events=[ev("general", 100, 4.0)])]
    run = write_run(tmp_path / "run", records, trials=4, optuna_db=False)
    path = write_report(run, host=plugin_manager(entry_points=False))
    page = path.read_text()
    assert path == run / "report.html"
    assert "Partial results:</b> 0 of 4 trials finished, 1 still running" in page
    assert "no Optuna study in the run directory" in page
    assert not (run / "optuna.db").exists()  # reading never creates the storage
    assert figure_divs(page) == 5  # curves, LR paths, recorded metrics, compute, timeline


# --- a run directory of an earlier version -------------------------------------------------


def test_a_run_directory_of_an_earlier_version_reads_as_typed_records():
    run = load_run(OLD_RUN)
    assert [(r.number, r.status) for r in run.records] == [
        (0, COMPLETED), (1, COMPLETED), (2, COMPLETED), (3, PRUNED), (4, PRUNED),
        (5, COMPLETED)]
    assert run.finished == run.requested == 6 and not run.partial
    assert best_trial(run.records, run.mode).number == 1
    best = run.records[1]
    assert best.ranked_value == pytest.approx(1.5764815656) and best.tokens == 401_408
    assert best.plan == "prereq>general>target" and len(best.evals) == 12
    flat = [json.loads(line) for line in (OLD_RUN / "trials/1/events.jsonl").open()]
    assert METRIC in flat[0] and "metrics" not in flat[0]  # flat eval lines, as written then
    assert [(e.eval.stage, e.eval.tokens, e.eval.lr, e.metric(METRIC)) for e in best.evals] == [
        (line["stage"], line["tokens"], line["lr"], line[METRIC]) for line in flat]
    assert [(e.eval.decision, e.eval.stage, e.eval.tokens) for e in best.decisions] == [
        (ScaleLR(0.3), "general", 200_704)]  # a text label read back as the decision
    pruned = run.records[4]
    assert pruned.ranked_value is None
    assert [type(e.eval.decision).__name__ for e in pruned.decisions] == [
        "ScaleLR", "Advance", "ScaleLR", "Advance", "ScaleLR"]


def test_best_opens_a_run_directory_of_an_earlier_version(capsys):
    assert main(["best", str(OLD_RUN)]) == 0
    out = capsys.readouterr().out
    assert "best: trial 1  eval.target.loss = 1.576  (401,408 tokens)" in out
    assert "stage plan: prereq>general>target" in out
    assert "decision at 200,704 tokens in general: scale_lr x0.3" in out


def test_report_opens_a_run_directory_of_an_earlier_version(tmp_path, capsys):
    run = shutil.copytree(OLD_RUN, tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert "Partial results" not in page  # 6 of 6 trials finished
    assert "<h1>Study <code>fixture-b659e5d</code></h1>" in page
    assert "4 completed</span>" in page and "2 pruned</span>" in page
    assert "Best: trial 1 — <code>eval.target.loss</code> = 1.576" in page
    assert "<code>prereq&gt;general&gt;target</code>" in page
    # its decision in the summary and the top-trials table, every decision in the figures
    assert "stage-policy decisions</b>: scale_lr x0.3 in general at 200,704 tokens" in page
    assert "scale_lr x0.3 (general, 201k)" in page
    assert "policy: scale_lr (7)" in page and "policy: advance (2)" in page
    # no optuna.db was kept with the fixture: importances are a note, every other figure draws
    assert "no Optuna study in the run directory" in page
    assert figure_divs(page) == 8
    assert not (run / "optuna.db").exists()
