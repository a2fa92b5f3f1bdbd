"""The study report: each figure's data from hand-made records, the page, and the command."""

import json
import re

import optuna
import pytest

from autostage.cli import main
from autostage.hookspecs import hookimpl
from autostage.host import plugin_manager
from autostage.report import build_report, write_report
from autostage.report.curves import _curves_info, _lr_info
from autostage.report.params import (
    _dimension,
    _importance_info,
    _parallel_info,
    _storage_importance_info,
)
from autostage.report.plans import _plans_info
from autostage.report.plugins import plugin_figures
from autostage.report.progress import _best_so_far_info, _compute_info
from autostage.report.records import load_run, without_replays
from autostage.report.tables import _failed_info, _top_trials_info
from autostage.report.timeline import _timeline_info

METRIC = "eval.target.loss"
STAGES = ["general", "prereq", "target"]
T0 = 1_700_000_000.0


def ev(stage, tokens, value, lr=1e-3, decision="continue", visit=0, **extra):
    return {"stage": stage, "visit": visit, "tokens": tokens, "stage_tokens": tokens,
            "lr": lr, METRIC: value, "decision": decision, **extra}


def rec(number, status, value=None, events=(), plan="", config=None, tokens=None,
        started=None, ended=None, reason=""):
    events = list(events)
    return {"number": number, "status": status, "value": value, "reason": reason,
            "tokens": events[-1]["tokens"] if tokens is None and events else tokens or 0,
            "config": config or {}, "plan": plan, "decisions": [], "events": events,
            "started": started, "ended": ended}


def study_records():
    """Seven trials: three results (one the best, one stopped by its policy), a pruned, a
    failed, a trial that repeats a stage, and one still running."""
    adamw = {"optimizer": "adamw", "optimizer.adamw.lr": 3e-3, "init": "default"}
    sgd = {"optimizer": "sgd", "optimizer.sgd.lr": 0.02, "optimizer.sgd.momentum": 0.9,
           "init": "default"}
    return [
        rec(0, "completed", 1.5, plan="general>target", started=T0, ended=T0 + 10,
            config={**adamw, "plan.order": "general>target"},
            events=[ev("general", 100, 4.0), ev("general", 200, 3.8),
                    ev("target", 300, 2.0), ev("target", 400, 1.5)]),
        rec(1, "completed", 1.2, plan="prereq>target", started=T0 + 1, ended=T0 + 12,
            config={**sgd, "plan.order": "prereq>target"},
            events=[ev("prereq", 100, 4.1, lr=2e-2), ev("prereq", 200, 4.1, lr=2e-2,
                                                          decision="scale_lr x0.5"),
                    ev("target", 300, 1.9, lr=1e-2), ev("target", 400, 1.2, lr=1e-2)]),
        rec(2, "stopped", 2.0, plan="target", started=T0 + 10, ended=T0 + 14,
            config={**adamw, "optimizer.adamw.lr": 1e-4, "plan.order": "target"},
            events=[ev("target", 100, 2.5), ev("target", 200, 2.0,
                                                decision="stop: no progress")]),
        rec(3, "pruned", None, plan="general>target", started=T0 + 12, ended=T0 + 15,
            config={**adamw, "optimizer.adamw.lr": 1e-3, "plan.order": "general>target"},
            reason="stopped early by the asha trial scheduler",
            events=[ev("general", 100, 4.2), ev("general", 200, 4.0), ev("target", 300, 3.0)]),
        rec(4, "failed", None, plan="prereq>target", started=T0 + 14, ended=T0 + 16,
            config={**sgd, "optimizer.sgd.lr": 0.5, "plan.order": "prereq>target"},
            reason="non-finite loss at stage prereq, step 3", tokens=150,
            events=[ev("prereq", 100, None)]),
        rec(5, "completed", 1.3, plan="prereq>prereq>target", started=T0 + 15, ended=T0 + 30,
            config={**adamw, "optimizer.adamw.lr": 2e-3, "plan.order": "prereq>prereq>target"},
            events=[ev("prereq", 100, 4.0), ev("prereq", 200, 4.3, decision="rewind, lr x0.5"),
                    ev("prereq", 300, 3.9, decision="advance to target"),
                    ev("prereq", 400, 3.7, visit=1), ev("target", 500, 1.3)]),
        rec(6, "running", None, started=T0 + 16, events=[ev("general", 100, 4.4)]),
    ]


# --- each figure's data --------------------------------------------------------------------


def test_best_so_far_follows_the_order_trials_ended_and_counts_every_trials_tokens():
    info = _best_so_far_info(study_records(), "min")
    walk = info["by_tokens"]
    assert walk["trial"] == [0, 1, 2, 3, 4, 5]  # the running trial is not finished
    assert walk["x"] == [400, 800, 1000, 1300, 1450, 1950]  # pruned and failed cost too
    assert walk["value"] == [1.5, 1.2, 2.0, None, None, 1.3]
    assert walk["best"] == [1.5, 1.2, 1.2, 1.2, 1.2, 1.2]


def test_best_so_far_by_trial_number_and_for_a_metric_to_maximise():
    records = [rec(0, "completed", 0.5, ended=T0 + 9), rec(1, "completed", 0.7, ended=T0 + 1),
               rec(2, "pruned", None, ended=T0 + 5, tokens=10)]
    info = _best_so_far_info(records, "max")
    assert info["by_tokens"]["trial"] == [1, 2, 0]
    assert info["by_tokens"]["best"] == [0.7, 0.7, 0.7]
    assert info["by_number"]["x"] == [0, 1, 2]
    assert info["by_number"]["best"] == [0.5, 0.7, 0.7]


def test_best_so_far_before_any_trial_finished_says_so():
    assert "missing" in _best_so_far_info([rec(0, "running", events=[ev("a", 1, 1.0)])], "min")


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
    assert 6 in trials and trials[6]["status"] == "running"


def test_lr_paths_show_the_learning_rate_and_where_the_policy_scaled_it():
    info = _lr_info(study_records(), "min")
    best = next(t for t in info["trials"] if t["number"] == 1)
    assert best["y"] == [2e-2, 2e-2, 1e-2, 1e-2]
    assert best["decisions"] == [{"tokens": 200, "y": 2e-2, "stage": "prereq",
                                  "decision": "scale_lr x0.5", "kind": "scale_lr"}]


def test_learning_curves_without_evals_say_so():
    assert "missing" in _curves_info([rec(0, "failed")], METRIC, "min")


def test_stage_plans_best_first_with_every_outcome_counted():
    info = _plans_info(study_records(), "min")
    plans = [(p["plan"], p["best"], p["counts"]) for p in info["plans"]]
    assert plans == [
        ("prereq>target", 1.2, {"completed": 1, "failed": 1}),
        ("prereq>prereq>target", 1.3, {"completed": 1}),
        ("general>target", 1.5, {"completed": 1, "pruned": 1}),
        ("target", 2.0, {"stopped": 1}),
    ]  # the running trial's plan is not known yet


def test_a_plan_without_results_comes_last_and_unplanned_trials_use_their_stages():
    records = [rec(0, "pruned", plan="a>b", events=[ev("a", 1, 3.0)]),
               rec(1, "completed", 3.0, events=[ev("a", 1, 4.0), ev("b", 2, 3.0)]),
               rec(2, "completed", 2.0, plan="b")]
    info = _plans_info(records, "max")
    assert [(p["plan"], p["values"], p["trials"]) for p in info["plans"]] == [
        ("a>b", [3.0], [1]), ("b", [2.0], [2])]
    assert info["plans"][0]["counts"] == {"pruned": 1, "completed": 1}
    records[2]["value"] = None
    records[2]["status"] = "failed"
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
    assert info["parallel"]["running"] == [1, 2, 2, 2, 2, 2, 2, 1, 0]  # one ends, one starts
    assert info["untimed"] == 0


def test_parallelism_counts_an_end_and_a_start_at_one_instant_once():
    records = [rec(0, "completed", 1.0, started=0.0, ended=5.0),
               rec(1, "completed", 1.0, started=5.0, ended=9.0),
               rec(2, "interrupted")]
    info = _timeline_info(records, now=10.0)
    assert info["parallel"] == {"t": [0.0, 5.0, 9.0], "running": [1, 1, 0], "peak": 1}
    assert info["untimed"] == 1


def test_compute_by_outcome_and_stage():
    info = _compute_info(study_records(), STAGES)
    assert info["total"] == 400 + 400 + 200 + 300 + 150 + 500 + 100
    assert info["stages"] == ["general", "prereq", "prereq#2", "target"]
    assert info["statuses"] == ["completed", "stopped", "pruned", "failed", "running"]
    assert info["tokens"]["completed"] == {"general": 200, "target": 500, "prereq": 500,
                                           "prereq#2": 100}
    assert info["tokens"]["failed"] == {"prereq": 150}  # tokens after its last eval count
    assert info["trials"]["completed"] == 3


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
    assert _failed_info([rec(0, "failed")])["rows"][0]["stage"] == "before its first eval"


# --- reading a run directory ---------------------------------------------------------------


def write_run(path, records, name="toy-study", stages=STAGES, trials=None, optuna_db=True):
    """A run directory as `autostage search` leaves it, from hand-made records."""
    path.mkdir(parents=True, exist_ok=True)
    study = {"study": {"name": name, "metric": METRIC, "mode": "min",
                       "trials": trials or len(records), "storage": None},
             "stage": [{"name": s} for s in stages]}
    (path / "study.json").write_text(json.dumps({"study": study, "overrides": []}))
    for r in records:
        trial = path / "trials" / str(r["number"])
        trial.mkdir(parents=True)
        lines = [json.dumps({**e, "time": r["started"]}) for e in r["events"]]
        (trial / "events.jsonl").write_text("".join(line + "\n" for line in lines))
        if r["status"] != "running":
            result = {k: v for k, v in r.items() if k != "events"}
            (trial / "result.json").write_text(json.dumps(result))
    if optuna_db:
        _write_optuna(path, name, records)
    return path


def _write_optuna(path, name, records):
    storage = f"sqlite:///{path / 'optuna.db'}"
    study = optuna.create_study(study_name=name, storage=storage)
    choices: dict[str, set] = {}
    for r in records:
        for k, v in r["config"].items():
            choices.setdefault(k, set()).add(v)
    for r in records:
        if r["status"] not in ("completed", "stopped"):
            continue
        dists = {k: optuna.distributions.CategoricalDistribution(sorted(choices[k], key=str))
                 for k in r["config"]}
        study.add_trial(optuna.trial.create_trial(params=r["config"], distributions=dists,
                                                  value=r["value"]))


def test_a_trial_with_evals_and_no_result_is_running(tmp_path):
    run = load_run(write_run(tmp_path / "run", study_records(), trials=10))
    running = [r for r in run.records if r["status"] == "running"]
    assert [r["number"] for r in running] == [6]
    assert running[0]["tokens"] == 100 and running[0]["started"] == T0 + 16
    assert run.running == 1 and run.finished == 6 and run.partial


def test_a_retried_trials_repeated_evals_are_replaced_by_the_retry():
    events = [ev("a", 100, 3.0), ev("a", 200, 2.9), ev("b", 300, 2.0), ev("b", 400, 1.9),
              ev("b", 300, 2.1), ev("b", 400, 1.8)]  # restored from the boundary at 200
    kept = without_replays(events)
    assert [(e["tokens"], e[METRIC]) for e in kept] == [(100, 3.0), (200, 2.9), (300, 2.1),
                                                        (400, 1.8)]


def test_not_a_run_directory_is_one_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


# --- the page ------------------------------------------------------------------------------


class GoodPlugin:
    @hookimpl
    def report_figures(self, records):
        import plotly.graph_objects as go

        return [go.Figure(go.Bar(x=[r["number"] for r in records],
                                 y=[r["tokens"] for r in records]))]


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


def figure_divs(page):
    return len(re.findall(r'class="plotly-graph-div"', page))


def test_the_report_has_every_figure_and_table(tmp_path):
    run = write_run(tmp_path / "run", study_records(), trials=10)
    host = plugin_manager(entry_points=False, plugins=[GoodPlugin(), BrokenPlugin()])
    page = build_report(run, host=host, now=T0 + 40)
    declared = int(re.search(r"name='autostage-figures' content='(\d+)'", page).group(1))
    assert declared == figure_divs(page) == 9  # 8 built-in figures and the plugin's
    for heading in ("Best so far", "Learning curves", "Learning-rate paths", "Stage plans",
                    "Sampled parameters", "Parameter importances", "Where the compute went",
                    "Timeline", "Top trials", "Failed trials", "From plugin GoodPlugin"):
        assert f"<h2>{heading}</h2>" in page
    assert "plugin &#x27;BrokenPlugin&#x27; raised in hook report_figures" in page
    assert "Partial results:</b> 6 of 10 trials finished, 1 still running" in page
    assert "Best: trial 1" in page
    assert "non-finite loss at stage prereq, step 3" in page


def test_too_few_trials_for_a_figure_is_a_note_not_a_failure(tmp_path):
    records = [rec(0, "completed", 1.0, config={"x": "a"}, started=T0, ended=T0 + 1,
                   events=[ev("target", 100, 1.0)])]
    page = build_report(write_run(tmp_path / "run", records),
                        host=plugin_manager(entry_points=False))
    assert "not enough trials: parameter importances need at least 2 completed trials, " \
           "this study has 1" in page
    assert "not enough trials: 1 with a result, the plot needs 2" in page
    assert "Partial results" not in page


EVIL_NAME = "<script>alert(1)</script>"
EVIL_VALUE = "</script><script>document.body.dataset.pwned = 1</script>"
EVIL_STAGE = "<img src=x onerror=\"document.body.dataset.pwned = 1\">"


def evil_records():
    records = study_records()
    for r in records:
        r["config"]["init"] = EVIL_VALUE
        r["plan"] = r["plan"].replace("target", EVIL_STAGE)
        for e in r["events"]:
            e["stage"] = e["stage"].replace("target", EVIL_STAGE)
    records[4]["reason"] = f"<b>crashed</b> {EVIL_VALUE}"
    records[1]["config"]["init"] = "<i>other</i>"  # so it varies: a searched parameter
    return records


def evil_run(path):
    return write_run(path, evil_records(), name=EVIL_NAME,
                     stages=["general", "prereq", EVIL_STAGE], trials=10)


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


def test_report_command_writes_into_the_run_directory_or_where_asked(tmp_path, capsys):
    run = write_run(tmp_path / "run", study_records())
    assert main(["report", str(run)]) == 0
    inline = (run / "report.html").read_text()
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    assert main(["report", str(run), "-o", str(tmp_path / "small.html"), "--cdn"]) == 0
    small = (tmp_path / "small.html").read_text()
    assert re.search(r"<script src='https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js'", small)
    assert len(inline) > 3_000_000 > 300_000 > len(small)  # plotly.js inlined: opens offline
    assert figure_divs(inline) == figure_divs(small) == 8


def test_a_report_can_be_written_while_trials_run_and_without_optuna_storage(tmp_path):
    records = [rec(0, "running", started=T0, events=[ev("general", 100, 4.0)])]
    run = write_run(tmp_path / "run", records, trials=4, optuna_db=False)
    path = write_report(run, host=plugin_manager(entry_points=False))
    page = path.read_text()
    assert path == run / "report.html"
    assert "Partial results:</b> 0 of 4 trials finished, 1 still running" in page
    assert "no Optuna study in the run directory" in page
    assert not (run / "optuna.db").exists()  # reading never creates the storage
    assert figure_divs(page) == 4  # curves, LR paths, compute, timeline
