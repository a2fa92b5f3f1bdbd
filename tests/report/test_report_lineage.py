"""Branched trials in the report, `autostage best` and the live view: which trial branched from
which at which tokens, a branch's curve continuing its parent's, the compute shared prefixes
saved, and every trial's parent — from hand-made records and run directories (no Ray)."""

import io
import re
from dataclasses import replace
from types import SimpleNamespace

from rich.console import Console
from support.report_runs import (
    COMPLETED,
    FAILED,
    METRIC,
    PRUNED,
    RUNNING,
    T0,
    ev,
    figure_divs,
    rec,
    study_records,
    write_run,
)

from autostage.cli import main
from autostage.host import plugin_manager
from autostage.live import SearchView, print_front, print_trial
from autostage.records import Branch
from autostage.report import build_report
from autostage.report.curves import _curves_info, path_traces
from autostage.report.lineage import _lineage_info, _saved_info, plot_lineage
from autostage.report.metrics import _metrics_info, plot_metrics
from autostage.report.progress import _compute_info
from autostage.report.sections import sections
from autostage.report.study_run import load_run
from autostage.report.summary import _summary_info, summary_html
from autostage.report.tables import _failed_info, _top_trials_info, failed_table
from autostage.report.timeline import _timeline_info
from autostage.rundir import RunDir

K = 1_000
FAST = {"optimizer": "adamw", "optimizer.adamw.lr": 3e-3}
SLOW = {"optimizer": "adamw", "optimizer.adamw.lr": 1e-3}


def branch(parent, tokens, evals, prefix, stage="target"):
    return Branch(parent, stage, tokens, evals, f"/ck/{parent}/{evals}", dict(prefix), parent)


def lineage_records():
    """Trial 0 trains 400k tokens from scratch; 1 branches from it at 200k (its second eval)
    with a lower learning rate and is the best; 2 branches from 1 at 300k (its lineage's
    third eval: two of 0's, one of 1's); 3 is pruned, from scratch; 4 branched from 0 at
    100k and failed before its first eval. Charged: 400k + 200k + 100k + 100k + 0 = 800k;
    the prefixes, not trained again: 200k + 300k + 100k = 600k."""
    return [
        rec(0, COMPLETED, 2.2, plan="target", config=FAST, started=T0, ended=T0 + 10,
            events=[ev("target", 100 * K, 4.0), ev("target", 200 * K, 3.0),
                    ev("target", 300 * K, 2.5), ev("target", 400 * K, 2.2)]),
        replace(rec(1, COMPLETED, 1.8, plan="target", config=SLOW, started=T0 + 5,
                    ended=T0 + 12, tokens=200 * K,
                    events=[ev("target", 300 * K, 2.4), ev("target", 400 * K, 1.8)]),
                branch=branch(0, 200 * K, 2, {**FAST, "plan.order": "target"})),
        replace(rec(2, COMPLETED, 2.0, plan="target", config={**SLOW, "init": "zeros"},
                    started=T0 + 8, ended=T0 + 14, tokens=100 * K,
                    events=[ev("target", 400 * K, 2.0)]),
                branch=branch(1, 300 * K, 3, {**SLOW, "plan.order": "target"})),
        rec(3, PRUNED, None, plan="target", config=FAST, started=T0 + 1, ended=T0 + 3,
            reason="stopped early by the population trial scheduler",
            events=[ev("target", 100 * K, 4.5)]),
        replace(rec(4, FAILED, None, plan="target", config=SLOW, started=T0 + 4,
                    ended=T0 + 5, tokens=0, reason="the checkpoint would not load"),
                branch=branch(0, 100 * K, 1, {**FAST, "plan.order": "target"})),
    ]


def lineage_run(path, records=None):
    return write_run(path, records or lineage_records(), stages=["target"], optuna_db=False)


def host():
    return plugin_manager(entry_points=False)


def body(page):
    """The page after its <head>: what we wrote (the head inlines plotly.js, whose code has
    words and URLs of its own)."""
    return page[page.index("</head>"):]


# --- the report ----------------------------------------------------------------------------


def test_a_study_without_branches_shows_no_lineage_and_no_parent_column(tmp_path):
    records = study_records()
    page = build_report(write_run(tmp_path / "run", records, trials=10, optuna_db=False),
                        host=host(), now=T0 + 40)
    assert "Lineage" not in page and "shared prefixes" not in page
    ours = body(page).replace(str(tmp_path), "")  # (the test's name is in the path)
    assert "<th>parent</th>" not in ours
    assert not re.search(r"branch|prefix", ours, re.I)
    assert figure_divs(page) == 8  # as before branching (importances: no Optuna storage)
    assert _lineage_info(records, "min") == {"missing": "no trial branched"}
    assert _saved_info(records) is None
    assert "parent" not in _failed_info(records)["rows"][0]
    assert all("branch" not in t for t in _curves_info(records, METRIC, "min")["trials"])
    assert not any("prefix" in t["name"] for t in path_traces(
        _curves_info(records, METRIC, "min")))


def test_the_lineage_section_names_each_parent_and_where_its_branches_started(tmp_path):
    run = load_run(lineage_run(tmp_path / "run"))
    titles = [s.title for s in sections(run, host(), T0 + 40)]
    assert titles.index("Lineage") == titles.index("Where the compute went") + 1
    info = _lineage_info(run.records, "min")
    # tree order: each parent above its branches (earliest branch point first)
    assert [(t["number"], t["depth"]) for t in info["trials"]] == [
        (0, 0), (4, 1), (1, 1), (2, 2), (3, 0)]
    trials = {t["number"]: t for t in info["trials"]}
    assert (trials[1]["parent"], trials[1]["start"], trials[1]["end"]) == (0, 200 * K, 400 * K)
    assert (trials[2]["parent"], trials[2]["start"], trials[2]["end"]) == (1, 300 * K, 400 * K)
    assert (trials[0]["parent"], trials[0]["start"], trials[0]["end"]) == (None, 0, 400 * K)
    assert trials[1]["changed"] == {"optimizer.adamw.lr": 1e-3}
    assert trials[2]["changed"] == {"init": "zeros"}
    # the best model (trial 1): trial 0 up to 200k, then its own
    assert info["best_path"] == [{"number": 1, "start": 200 * K, "end": 400 * K},
                                 {"number": 0, "start": 0, "end": 200 * K}]
    fig = plot_lineage(info)
    points = next(t for t in fig.data if t.name.startswith("branch points"))
    assert points.name == "branch points (3)"
    assert list(points.x) == [100 * K, 200 * K, 300 * K]
    assert list(points.y) == ["trial 0", "trial 0", "trial 1"]  # on the parent's line
    hover = next(t for t in fig.data if t.name == "completed (3)").text
    assert ("trial 2 branched from trial 1 at 300,000 tokens (stage target)<br>changed:<br>"
            "  init = zeros") in "".join(hover)
    page = build_report(run.path, host=host(), now=T0 + 40)
    assert "<h2>Lineage</h2>" in page
    assert "trial 1 branched from trial 0 at 200,000 tokens (stage target)" in page


def test_the_compute_shared_prefixes_saved_is_their_share_of_every_models_tokens(tmp_path):
    saved = _saved_info(lineage_records())
    assert saved == {"saved": 600 * K, "charged": 800 * K, "lineage": 1_400 * K,
                     "share": 600 / 1_400, "branched": 3, "parents": 2}
    run = load_run(lineage_run(tmp_path / "run"))
    text = ("3 trials branched from 2 parents. Shared prefixes saved 600k training tokens "
            "(600,000): the trials&#x27; models were trained on 1.4M tokens (1,400,000), "
            "42.9% of them a parent&#x27;s prefix, not trained again")
    top = summary_html(_summary_info(run, T0 + 40))
    assert f"<tr><th>shared prefixes</th><td>{text}</td></tr>" in top
    assert "800k training tokens (800,000)" in top  # compute is what trials were charged
    lineage = next(s for s in sections(run, host(), T0 + 40) if s.title == "Lineage")
    assert text.replace("&#x27;", "'") in lineage.help
    # by outcome and stage, too, a branch counts what it trained, not its prefix
    assert _compute_info(run.records, ["target"])["total"] == 800 * K


def test_a_branchs_curve_continues_its_parents_from_the_parents_first_eval(tmp_path):
    records = load_run(lineage_run(tmp_path / "run")).records
    info = _curves_info(records, METRIC, "min")
    trials = {t["number"]: t for t in info["trials"]}
    grandchild = trials[2]
    assert grandchild["tokens"] == [400 * K] and grandchild["y"] == [2.0]  # its own evals
    prefix = grandchild["branch"]["prefix"]
    assert prefix["tokens"] == [100 * K, 200 * K, 300 * K]  # from trial 0's first eval
    assert prefix["y"] == [4.0, 3.0, 2.4] and prefix["trial"] == [0, 0, 1]
    assert "branch" not in trials[0]
    traces = {t["name"]: t for t in path_traces(info)}
    # the best (trial 1): solid from its branch point on, its prefix (trial 0's) dotted
    assert traces["best: trial 1"]["x"] == [200 * K, 300 * K, 400 * K, None]
    assert traces["best: trial 1"]["text"][0] == "trial 1 branched from trial 0 here · target"
    best_prefix = traces["best's prefix (from trial 0)"]
    assert best_prefix["x"] == [100 * K, 200 * K, None]
    assert best_prefix["line"]["dash"] == "dot"
    others = traces["prefixes of branches (1)"]  # trial 2's: trial 0's two evals, 1's first
    assert others["x"] == [100 * K, 200 * K, 300 * K, None]
    assert others["text"][2] == "trial 2's prefix: trial 1 · target"
    # trial 0 whole; trial 2 from its branch point (3: the best is one of the completed)
    completed = traces["completed (3)"]["x"]
    assert completed == [100 * K, 200 * K, 300 * K, 400 * K, None, 300 * K, 400 * K, None]


def test_every_recorded_metric_draws_the_prefixes_the_menu_swaps_in():
    records = [replace(r, evals=tuple(replace(e, eval=replace(e.eval, metrics={
        **e.eval.metrics, "train.loss": e.eval.metrics[METRIC] + 1})) for e in r.evals))
        for r in lineage_records()]
    fig = plot_metrics(_metrics_info(records, "min"))
    entries = {e.label: e for e in fig.layout.updatemenus[0].buttons}
    assert all(len(e.args[0]["y"]) == len(fig.data) for e in entries.values())
    index = next(i for i, t in enumerate(fig.data) if t.name.startswith("best's prefix"))
    assert list(entries["train.loss"].args[0]["y"][index]) == [5.0, 4.0, None]
    assert list(entries[METRIC].args[0]["y"][index]) == [4.0, 3.0, None]


def test_tables_and_the_timeline_name_each_trials_parent(tmp_path):
    records = lineage_records()
    top = _top_trials_info(records, METRIC, "min", ["target"])
    assert [(r["number"], r["parent"], r["tokens"]) for r in top["rows"]] == [
        (1, 0, 200 * K), (2, 1, 100 * K), (0, None, 400 * K)]  # charged tokens
    failed = _failed_info(records)
    assert failed["rows"][0]["parent"] == 0
    assert re.search(r"<th>trial</th><th>parent</th>.*<td>4</td><td>0</td>",
                     failed_table(failed))
    timeline = {t["number"]: t for t in _timeline_info(records, T0 + 40)["trials"]}
    assert timeline[2]["parent"] == 1 and timeline[0]["parent"] is None
    page = build_report(lineage_run(tmp_path / "run"), host=host(), now=T0 + 40)
    assert ("<tr><td>1</td><td>1</td><td>0</td><td>1.8</td>" in page)  # rank, trial, parent
    assert "<tr><td>3</td><td>0</td><td></td><td>2.2</td>" in page  # not branched: blank
    assert "completed, value 2, branch of trial 1" in page


def test_a_branched_best_says_where_it_started_at_the_top_of_the_report(tmp_path):
    page = build_report(lineage_run(tmp_path / "run"), host=host(), now=T0 + 40)
    assert "200k tokens (400k with its prefix)" in page
    assert ("<p><b>branched</b> from trial 0 at 200,000 tokens (stage <code>target</code>); "
            "changed: <code>optimizer.adamw.lr</code></p>") in page


def test_a_running_branch_is_drawn_from_its_branch_point(tmp_path):
    records = lineage_records()
    running = replace(rec(5, RUNNING, started=T0 + 20, events=[ev("target", 300 * K, 2.3)]),
                      branch=branch(0, 200 * K, 2, {**FAST, "plan.order": "target"}))
    path = lineage_run(tmp_path / "run", [*records, running])
    RunDir(path).write_branch(5, running.branch)  # as a search writes it when a branch starts
    run = load_run(path)
    record = next(r for r in run.records if r.number == 5)
    assert record.status is RUNNING and record.tokens == 100 * K  # charged its own
    trial = next(t for t in _lineage_info(run.records, "min")["trials"] if t["number"] == 5)
    assert (trial["parent"], trial["start"], trial["end"]) == (0, 200 * K, 300 * K)


EVIL = "<img src=x onerror=\"document.body.dataset.pwned = 1\">"


def test_hostile_names_in_a_lineage_stay_text_and_the_page_loads_nothing(tmp_path):
    records = lineage_records()
    records[1] = replace(records[1], config={**records[1].config, EVIL: EVIL},
                         branch=replace(records[1].branch, stage=EVIL))
    page = build_report(lineage_run(tmp_path / "run", records), host=host(), now=T0 + 40)
    assert "<img" not in page
    assert len(re.findall(r"<script", page, re.I)) == 1 + figure_divs(page)
    assert "at 200,000 tokens (stage &lt;img src=x" in page
    # self-contained: plotly.js inlined, nothing fetched from the network
    assert "<script src" not in page
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", body(page))


def test_a_two_metric_front_names_each_trials_parent(tmp_path):
    from autostage.report.pareto import _pareto_info, pareto_table

    records = [replace(r, values=(r.value, 1.0)) if r.value is not None else r
               for r in lineage_records()]
    info = _pareto_info(records, [METRIC, "eval.target.accuracy"], ["min", "max"])
    assert [(r["number"], r["parent"]) for r in info["front"]] == [(1, 0)]
    assert "<th>trial</th><th>parent</th>" in pareto_table(info)
    buffer = io.StringIO()
    print_front(Console(file=buffer, width=200), [records[1]], [METRIC, "acc"])
    assert re.search(r"branch of\s*\n\s*1\s+1\.8\s+1\s+target\s+0", buffer.getvalue())


# --- autostage best and the live view ------------------------------------------------------


def test_best_shows_the_parent_the_branch_point_and_what_the_branch_changed(tmp_path, capsys):
    run = lineage_run(tmp_path / "run")
    assert main(["best", str(run)]) == 0
    out = capsys.readouterr().out
    assert "best: trial 1  eval.target.loss = 1.8  (200,000 tokens; 400,000 with its " \
           "prefix)" in out
    assert "  branched from trial 0 at 200,000 tokens (stage target); changed: " \
           "optimizer.adamw.lr\n" in out
    assert main(["best", str(run), "--trial", "0"]) == 0
    out = capsys.readouterr().out
    assert "trial 0  eval.target.loss = 2.2  (400,000 tokens)\n" in out
    assert "branched" not in out


def test_the_live_view_says_which_trial_a_branch_came_from():
    buffer = io.StringIO()
    view = SearchView(Console(file=buffer, width=400))
    study = SimpleNamespace(study=SimpleNamespace(trials=5, modes=["min"], metrics=[METRIC]))
    view.start(study, done=0, tokens=0)
    records = lineage_records()
    for record in records[:2]:
        view.trial_ended(record)
    lines = buffer.getvalue().splitlines()
    assert lines[0].endswith("plan target") and "branch of" not in lines[0]
    assert lines[1] == f"trial   1 completed {METRIC}      1.8  plan target  branch of 0"
    panel = io.StringIO()
    Console(file=panel, width=400).print(view._panel())
    assert f"{METRIC} 1.8 (trial 1, plan target, branch of 0)" in panel.getvalue()


def test_hostile_branch_strings_print_verbatim():
    hostile = "[/x] [bold]stage[/bold]"
    record = replace(lineage_records()[1], config={**SLOW, hostile: 1},
                     branch=branch(0, 200 * K, 2, {**FAST, "plan.order": "target"},
                                   stage=hostile))
    buffer = io.StringIO()
    print_trial(Console(file=buffer, width=400), record, [METRIC])
    assert (f"branched from trial 0 at 200,000 tokens (stage {hostile}); changed: {hostile}, "
            "optimizer.adamw.lr") in buffer.getvalue()


def test_a_search_its_token_budget_ended_is_not_called_partial(tmp_path):
    """A budget ends a search as planned (studies/branching.toml asks for 100 trials and a
    4.8M budget): the report says the budget was spent, not that the study was cut short."""
    import json

    path = lineage_run(tmp_path / "run")
    data = json.loads((path / "study.json").read_text())
    data["study"]["study"].update(trials=100, token_budget=800 * K)
    (path / "study.json").write_text(json.dumps(data))
    page = body(build_report(path))
    assert "Partial results" not in page
    assert "the token budget of 800k was spent: the search ended" in page
    data["study"]["study"]["token_budget"] = 900 * K  # not spent: cut short after all
    (path / "study.json").write_text(json.dumps(data))
    assert "Partial results" in body(build_report(path))
