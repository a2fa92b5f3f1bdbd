"""What the report shows, in the order a reader asks: did the search find something, how did
trials learn, which plans and parameters won, where the compute went, then the details."""

from __future__ import annotations

from typing import Any

from autostage.records import TrialRecord
from autostage.report.curves import _curves_info, _lr_info, plot_learning_curves, plot_lr_paths
from autostage.report.lineage import lineage_sections
from autostage.report.metrics import _metrics_info, plot_metrics
from autostage.report.page import Section, figure_section
from autostage.report.params import (
    _parallel_info,
    _storage_importance_info,
    plot_importances,
    plot_parallel,
)
from autostage.report.pareto import _pareto_info, pareto_table, plot_pareto
from autostage.report.plans import _plans_info, plot_plans
from autostage.report.plugins import plugin_figures
from autostage.report.progress import (
    _best_so_far_info,
    _compute_info,
    plot_best_so_far,
    plot_compute,
)
from autostage.report.study_run import StudyRun
from autostage.report.tables import (
    _failed_info,
    _top_trials_info,
    branched,
    failed_table,
    top_trials_table,
)
from autostage.report.timeline import _timeline_info, plot_timeline


def sections(run: StudyRun, host: Any, now: float) -> list[Section]:
    records, metric, mode = run.records, run.metric, run.mode
    out = _pareto_sections(run) + [
        figure_section(
            "Best so far", "The best result after each finished trial, against the training "
            "tokens all trials had spent by then (left) and against the trial number (right). "
            "Crosses: trials that ended without a result (pruned or failed) — compute spent "
            "for nothing.", _best_so_far_info(records, mode),
            lambda info: plot_best_so_far(info, metric)),
        figure_section(
            "Learning curves", f"{metric} at every eval of every trial, across its stages. The "
            "best trial is drawn thick with its stage starts marked; ticks mark other trials' "
            "stage boundaries, red markers the stage policy's decisions." + _branches(records),
            _curves_info(records, metric, mode), lambda info: plot_learning_curves(info, metric)),
        figure_section(
            "Learning-rate paths", "The learning rate at every eval: the LR schedule within "
            "each stage, and the stage policy's ScaleLR and Rewind decisions (red markers). "
            "The log axis has no 0: where a schedule brings the LR to 0 (min_ratio 0), the "
            "line ends at its last value above 0 and a ▼ marks the eval at 0.",
            _lr_info(records, mode), plot_lr_paths),
        figure_section(
            "Recorded metrics", "Any metric the trials recorded — training loss, gradient "
            "norms, each data source's held-out metrics — at every eval; pick it in the menu "
            "at the top left. Gradient norms are drawn on a log axis, where vanishing (falling "
            "towards zero) and exploding (shooting up) gradients show; orange diamonds mark "
            "evals whose training segment clipped gradients (train.clipped, hover for the "
            "share of steps). Values are as measured: after a Rewind the regression that "
            "caused it shows — hover its marker for the value restored. Left out: "
            "bookkeeping (examples counts) and metrics with one value at every eval.",
            _metrics_info(records, mode), plot_metrics),
        figure_section(
            "Stage plans", "The result of every trial, by the stage plan it ran; the best plan "
            "first. Under each plan: its trials by outcome.",
            _plans_info(records, mode), lambda info: plot_plans(info, metric)),
        figure_section(
            "Sampled parameters", "One line per trial with a result, through its sampled "
            "parameters to its result; the best trials in the brightest colour. Drag along an "
            "axis to filter.", _parallel_info(records, mode),
            lambda info: plot_parallel(info, metric)),
        figure_section(
            "Parameter importances", "How much of the variation of the result among "
            "completed trials each parameter explains (Optuna's get_param_importances; "
            "pruned and failed trials are not counted).",
            _storage_importance_info(run.storage_url, run.name), plot_importances),
        figure_section(
            "Where the compute went", "Training tokens by trial outcome and stage.",
            _compute_info(records, run.stages), plot_compute),
        *lineage_sections(records, mode),
        figure_section(
            "Timeline", "When each trial ran, coloured by outcome (hover for the reason), and "
            "how many ran at once.", _timeline_info(records, now), plot_timeline),
        _top_trials_section(run),
        Section("Failed trials", table=failed_table(_failed_info(records))),
    ]
    return out + _plugin_sections(host, records)


def _branches(records: list[TrialRecord]) -> str:
    """How curves show branched trials, for a study that has some."""
    if not branched(records):
        return ""
    return (" A branched trial's line starts where it left its parent, on the parent's curve; "
            "dotted: the prefix it inherited (hover for the trial that trained it).")


def _pareto_sections(run: StudyRun) -> list[Section]:
    """A multi-objective study's answer is its Pareto front: first, before "best" by the
    first metric. A study with one metric has a best trial, and no front to show."""
    if len(run.metrics) < 2:
        return []
    info = _pareto_info(run.records, run.metrics, run.modes)
    if "missing" in info:
        return [Section("Pareto front", note=info["missing"])]
    return [Section(
        "Pareto front", "The trials no other trial beats in every metric at once: each is a "
        f"trade-off between {', '.join(run.metrics)}. Below: every trial with a result in "
        "the first two metrics, the front connected (hover for the trial); then the front's "
        "trials, best in the first metric first.",
        figure=plot_pareto(info), table=pareto_table(info))]


def _top_trials_section(run: StudyRun) -> Section:
    info = _top_trials_info(run.records, run.metric, run.mode, run.stages)
    if "missing" in info:
        return Section("Top trials", note=info["missing"])
    return Section("Top trials", f"The best trials, with {run.metric} at the end of each stage "
                   "they ran, and their sampled parameters.",
                   table=top_trials_table(info, run.metric))


def _plugin_sections(host: Any, records: list[TrialRecord]) -> list[Section]:
    figures, notes = plugin_figures(host, records)
    out = [Section(f"From plugin {p.plugin}", figure=p.figure) for p in figures]
    out += [Section("A plugin's figures are missing", note=note) for note in notes]
    return out
