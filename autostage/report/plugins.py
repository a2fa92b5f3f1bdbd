"""Figures from plugins, through the `report_figures(records)` hook.

`records` is the run's trials as typed `autostage.records.TrialRecord`s, with their evals —
the same records the built-in figures are drawn from (`record.to_json()` and `ev.to_json()`
give plain dicts to a plugin that wants them).

Each plugin is called on its own: one that raises, or returns something that is not a list
of Plotly figures, becomes a note in the report naming the plugin — a report written at the
end of a long search is not lost to one broken plugin, and the other plugins' figures stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autostage.records import TrialRecord


@dataclass(frozen=True)
class PluginFigure:
    plugin: str
    figure: Any  # a plotly.graph_objects.Figure


def plugin_figures(host: Any, records: list[TrialRecord]
                   ) -> tuple[list[PluginFigure], list[str]]:
    """The figures of every plugin implementing `report_figures`, in plugin load order, and
    a note per plugin that failed."""
    import plotly.graph_objects as go

    figures: list[PluginFigure] = []
    notes: list[str] = []
    for impl in host.hook.report_figures.get_hookimpls():
        name = impl.plugin_name
        try:
            returned = impl.function(records=records)
        except Exception as e:
            notes.append(f"plugin '{name}' raised in hook report_figures: "
                         f"{type(e).__name__}: {e}")
            continue
        if returned is None:
            continue
        items = returned if isinstance(returned, list | tuple) else [returned]
        wrong = [type(f).__name__ for f in items if not isinstance(f, go.Figure)]
        if wrong:
            notes.append(f"plugin '{name}' returned {', '.join(wrong)} from report_figures, "
                         "not plotly.graph_objects.Figure: left out")
        figures += [PluginFigure(name, f) for f in items if isinstance(f, go.Figure)]
    return figures, notes
