"""Which parameters mattered: the sampled parameters of every trial with a result, coloured by
that result, and Optuna's parameter importances."""

from __future__ import annotations

import math
import warnings
from typing import Any

from autostage.keys import PLAN_KEY
from autostage.records import TrialRecord
from autostage.report.study_run import searched_params
from autostage.report.style import esc, short

UNUSED = "unused"  # a conditional parameter the trial did not have (sgd's momentum for adamw)


def _parallel_info(records: list[TrialRecord], mode: str) -> dict[str, Any]:
    """One line per trial with a result; one axis per sampled parameter (numeric, log-scaled,
    or categorical), a trial without that parameter marked as such."""
    ranked = [r for r in records if r.ranked_value is not None]
    if len(ranked) < 2:
        return {"missing": f"not enough trials: {len(ranked)} with a result, the plot needs 2"}
    # the stage plan first: its long tick labels have the left margin to themselves
    keys = sorted(searched_params(ranked), key=lambda k: k != PLAN_KEY)
    if not keys:
        return {"missing": "every trial with a result has the same configuration"}
    return {"mode": mode, "trials": [r.number for r in ranked],
            "values": [r.ranked_value for r in ranked],
            "axes": [_axis(key, [r.config.get(key) for r in ranked]) for key in keys]}


def _axis(key: str, values: list[Any]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    if not numeric:
        categories = sorted({short(v) for v in present})
        return {"key": key, "kind": "category", "values": [None if v is None else short(v)
                                                           for v in values],
                "categories": categories}
    positive = [v for v in present if v > 0]
    log = len(positive) == len(present) and max(positive) / min(positive) >= 20
    return {"key": key, "kind": "log" if log else "number", "values": values}


def plot_parallel(info: dict[str, Any], metric: str) -> Any:
    import plotly.graph_objects as go

    dims = [_dimension(axis) for axis in info["axes"]]
    dims.append({"label": esc(metric), "values": info["values"]})
    fig = go.Figure(go.Parcoords(
        dimensions=dims, labelangle=-20, labelside="top",
        line={"color": info["values"], "colorscale": "Viridis",
              "reversescale": info["mode"] == "min",  # the best trials in the bright colour
              "showscale": True, "colorbar": {"title": {"text": esc(metric)}}}))
    fig.update_layout(height=520, margin={"t": 120, "l": 150, "r": 90})
    return fig


def _dimension(axis: dict[str, Any]) -> dict[str, Any]:
    """A Plotly parcoords axis. Plotly has no categorical or log axes there: categories become
    positions, log values their log10 — both with the real values as tick labels. A trial
    without the parameter sits on an extra tick below the range. (Tick labels are the one
    place Plotly draws as plain text: escaping them would show the entities.)"""
    label = esc(axis["key"])
    if axis["kind"] == "category":
        ticks = [UNUSED] * any(v is None for v in axis["values"]) + axis["categories"]
        position = {c: i for i, c in enumerate(ticks)}
        return {"label": label, "values": [position[UNUSED if v is None else v]
                                           for v in axis["values"]],
                "tickvals": list(range(len(ticks))), "ticktext": ticks}
    log = axis["kind"] == "log"
    scaled = [None if v is None else (math.log10(v) if log else float(v))
              for v in axis["values"]]
    present = [v for v in scaled if v is not None]
    low, high = min(present), max(present)
    span = (high - low) or 1.0
    unused = low - 0.15 * span
    values = [unused if v is None else v for v in scaled]
    tickvals = [low + span * i / 4 for i in range(5)] if high > low else [low]
    ticktext = [short(10 ** t if log else t) for t in tickvals]
    if any(v is None for v in scaled):
        tickvals, ticktext = [unused, *tickvals], [UNUSED, *ticktext]
    return {"label": label, "values": values, "tickvals": tickvals, "ticktext": ticktext,
            "range": [min(values), high if high > low else high + 1e-9]}


# --- importances -------------------------------------------------------------------------------


def _storage_importance_info(storage_url: str, name: str) -> dict[str, Any]:
    """Importances of the study in its Optuna storage; a storage that cannot be opened (a
    database server that is down) is a note, not a report that fails."""
    try:
        study = load_optuna_study(storage_url, name)
    except Exception as e:
        return {"missing": f"could not open the Optuna storage: {type(e).__name__}: {e}"}
    return _importance_info(study)


def load_optuna_study(storage_url: str, name: str) -> Any:
    """The run's Optuna study, or None when its storage holds none (a search killed before
    its first trial). Never creates a database file that is not there."""
    import optuna

    if storage_url.startswith("sqlite:///"):
        from pathlib import Path

        if not Path(storage_url.removeprefix("sqlite:///")).exists():
            return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage_url)
    except KeyError:
        return None


def _importance_info(study: Any) -> dict[str, Any]:
    """Optuna's parameter importances over the study's completed trials (the first objective
    of a multi-objective study). Conditional parameters are fine: Optuna's default
    evaluator (PED-ANOVA) assesses every parameter that appears in a completed trial."""
    import optuna

    if study is None:
        return {"missing": "no Optuna study in the run directory's storage"}
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        return {"missing": f"not enough trials: parameter importances need at least 2 "
                f"completed trials, this study has {len(done)}"}
    if len({t.values[0] for t in done}) < 2:
        return {"missing": f"all {len(done)} completed trials have the same value: "
                "no parameter explains a difference"}
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    try:
        with warnings.catch_warnings():  # "some regimes have less than 2 trials": we say so
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study, target=target)
    except (ValueError, RuntimeError) as e:
        return {"missing": f"Optuna could not compute parameter importances: {e}"}
    if not importances:
        return {"missing": "the completed trials have no sampled parameters"}
    few = len(done) < 10
    return {"params": list(importances), "importance": list(importances.values()),
            "trials": len(done),
            "note": (f"from {len(done)} completed trials"
                     + (" — few: read it as a hint, not a measurement" if few else ""))}


def plot_importances(info: dict[str, Any]) -> Any:
    import plotly.graph_objects as go

    params = [esc(p) for p in info["params"]][::-1]  # the most important at the top
    fig = go.Figure(go.Bar(
        x=info["importance"][::-1], y=params, orientation="h", marker_color="#2a9d8f",
        hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(height=140 + 28 * len(params), margin={"t": 20},
                      xaxis_title="importance (sums to 1)", yaxis={"automargin": True})
    return fig
