"""Report details a user trips on (issue 25): a learning rate that reaches 0 on the log axis,
legends that count what the page's header counts, a metric menu without constant or
bookkeeping keys, and a run directory opened from a plain string."""

from dataclasses import replace

from support.report_runs import (
    ACCURACY,
    COMPLETED,
    FAILED,
    GRAD_MIN,
    INTERRUPTED,
    METRIC,
    T0,
    TRAIN_LOSS,
    ev,
    gradient_records,
    rec,
    study_records,
    write_run,
)

from autostage.report.curves import _curves_info, _lr_info, plot_learning_curves, plot_lr_paths
from autostage.report.metrics import _metrics_info, plot_metrics, recorded_metrics
from autostage.report.study_run import load_run
from autostage.report.summary import _summary_info
from autostage.report.timeline import _timeline_info, plot_timeline

# --- a learning rate that reaches 0 ---------------------------------------------------------


def zero_lr_records():
    """Two trials whose schedule (min_ratio 0) brings the LR to exactly 0 at each stage's
    end; trial 1 is the best."""
    def trial(number, value, peak):
        return rec(number, COMPLETED, value, plan="prereq>target", events=[
            ev("prereq", 100, 3.0, lr=peak), ev("prereq", 200, 2.5, lr=0.0),
            ev("target", 300, 2.0, lr=2 * peak), ev("target", 400, value, lr=0.0)])
    return [trial(0, 1.5, 1e-3), trial(1, 1.2, 3e-3)]


def trace(fig, name):
    return next(t for t in fig.data if t.name.startswith(name))


def test_a_learning_rate_that_reaches_zero_ends_its_line_instead_of_plunging():
    info = _lr_info(zero_lr_records(), "min")
    assert [t["y"] for t in info["trials"]][1] == [3e-3, 0.0, 6e-3, 0.0]  # data as measured
    fig = plot_lr_paths(info)
    assert fig.layout.yaxis.type == "log"
    for t in fig.data:  # a log axis has no 0: nothing drawn at or below it
        assert all(y is None or y > 0 for y in t.y), (t.name, t.y)
    assert list(trace(fig, "best").y) == [3e-3, None, 6e-3, None, None]  # the line ends
    zeros = trace(fig, "learning rate reached 0")
    assert zeros.name == "learning rate reached 0 (4)"
    # at the eval that reached 0, level with the last positive LR before it
    assert list(zip(zeros.x, zeros.y, strict=True)) == [
        (200, 1e-3), (400, 2e-3), (200, 3e-3), (400, 6e-3)]
    assert "trial 1 in prereq: the learning rate reached 0" in zeros.text[2]
    ticks = trace(fig, "stage boundary")  # at the boundary, where the line ended
    assert list(zip(ticks.x, ticks.y, strict=True)) == [(200, 1e-3), (200, 3e-3)]


def test_learning_rates_that_never_reach_zero_draw_no_zero_marks():
    fig = plot_lr_paths(_lr_info(study_records(), "min"))
    assert not any(t.name.startswith("learning rate reached 0") for t in fig.data)
    assert list(trace(fig, "best").y) == [2e-2, 2e-2, 1e-2, 1e-2, None]


def test_a_gradient_norm_of_zero_is_a_gap_on_its_log_axis_not_a_plunge():
    records = gradient_records()
    first = records[0].evals[0]
    records[0] = replace(records[0], evals=(replace(first, eval=replace(first.eval, metrics={
        **first.eval.metrics, GRAD_MIN: 0.0})), *records[0].evals[1:]))
    fig = plot_metrics(_metrics_info(records, "min"))
    entry = next(b for b in fig.layout.updatemenus[0].buttons if b.label == GRAD_MIN)
    completed = next(i for i, t in enumerate(fig.data) if t.name.startswith("completed"))
    assert list(entry.args[0]["y"][completed]) == [None, 7.5, 0.125, None]
    loss = next(b for b in fig.layout.updatemenus[0].buttons if b.label == TRAIN_LOSS)
    assert 0.0 not in entry.args[0]["y"][completed] and loss.args[1]["yaxis.type"] == "linear"


# --- legends count what the header counts -------------------------------------------------


def counted_records():
    """The usual study, and a failed trial that never reached its first eval."""
    return [*study_records(), rec(7, FAILED, reason="out of memory", tokens=0,
                                  started=T0 + 20, ended=T0 + 21)]


def header_counts(tmp_path, records):
    run = load_run(write_run(tmp_path / "run", records, trials=10))
    return {status.value: n for status, n in _summary_info(run, T0 + 40)["counts"].items()}


def test_the_curves_legend_counts_every_trial_of_a_status_as_the_header_does(tmp_path):
    records = counted_records()
    header = header_counts(tmp_path, records)
    assert header["completed"] == 3 and header["failed"] == 2
    fig = plot_learning_curves(_curves_info(records, METRIC, "min"), METRIC)
    names = [t.name for t in fig.data]
    # the best (a completed trial, drawn apart) is one of the completed; a trial without
    # evals is counted and said not to be drawn
    assert "completed (3)" in names and "best: trial 1" in names
    assert "failed (2; 1 without evals, not drawn)" in names
    assert "stopped (1)" in names and "pruned (1)" in names and "running (1)" in names


def test_the_timeline_legend_counts_trials_it_cannot_draw(tmp_path):
    records = [*counted_records(), rec(8, INTERRUPTED, reason="the search was interrupted")]
    assert header_counts(tmp_path, records)["interrupted"] == 1
    fig = plot_timeline(_timeline_info(records, now=T0 + 40))
    names = [t.name for t in fig.data]
    assert "completed (3)" in names and "failed (2)" in names
    assert not any(n.startswith("interrupted") for n in names)  # no bar: no entry
    partly = [*records, rec(9, INTERRUPTED, started=T0 + 22, ended=T0 + 23)]
    names = [t.name for t in plot_timeline(_timeline_info(partly, now=T0 + 40)).data]
    assert "interrupted (2; 1 without start and end times, not drawn)" in names


# --- the metric menu ----------------------------------------------------------------------


def test_the_metric_menu_leaves_out_metrics_that_never_change_and_bookkeeping():
    examples, other_examples, constant = (
        "eval.target.examples", "eval.general.examples", "eval.target.f1")
    records = gradient_records()
    for i, r in enumerate(records):  # every eval: the same examples and f1, one source varying
        evals = [replace(e, eval=replace(e.eval, metrics={
            **e.eval.metrics, examples: 64, other_examples: 10 * (i + j + 1), constant: 0.5}))
            for j, e in enumerate(r.evals)]
        records[i] = replace(r, evals=tuple(evals))
    keys = recorded_metrics(records)
    assert examples not in keys and other_examples not in keys and constant not in keys
    assert TRAIN_LOSS in keys and METRIC in keys
    assert ACCURACY in keys  # measured once: nothing to say it never changes
    assert _metrics_info(records, "min")["keys"] == keys


# --- the API ------------------------------------------------------------------------------


def test_a_run_directory_opens_from_a_string_or_any_path_like(tmp_path):
    import os

    from autostage import RunDir

    path = write_run(tmp_path / "run", study_records())

    class PathLike:
        def __fspath__(self):
            return str(path)

    for given in (str(path), PathLike(), os.path.relpath(path)):
        run = RunDir(given)
        assert [r.number for r in run.trials()] == list(range(7))
        assert run.study_json.exists() and run.storage_url.endswith("optuna.db")
    assert RunDir(str(path)) == RunDir(path)
