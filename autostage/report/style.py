"""How the report looks: one colour per trial status, one marker per policy decision, and the
escaping every user-given string goes through before it reaches a figure or the page."""

from __future__ import annotations

import html
from typing import Any

from autostage.decisions import Advance, Continue, Decision, Rewind, ScaleLR, Stop
from autostage.records import TrialStatus

STATUS_COLOURS: dict[TrialStatus, str] = {
    TrialStatus.COMPLETED: "#2a9d8f",
    TrialStatus.STOPPED: "#8ab17d",
    TrialStatus.PRUNED: "#e9c46a",
    TrialStatus.FAILED: "#e76f51",
    TrialStatus.RUNNING: "#457b9d",
    TrialStatus.INTERRUPTED: "#adb5bd",
}
BEST_COLOUR = "#6a0dad"
#: statuses in the order a reader thinks about them: results first, then what was cut short
STATUS_ORDER = tuple(STATUS_COLOURS)

#: a stage policy's decision, by its type, as the word a reader sees in a legend
DECISION_KINDS: dict[type, str] = {
    Continue: "continue",
    ScaleLR: "scale_lr",
    Rewind: "rewind",
    Advance: "advance",
    Stop: "stop",
}
#: a kind of decision as a Plotly marker symbol
DECISION_SYMBOLS = {
    "scale_lr": "triangle-down",
    "rewind": "circle-x",
    "advance": "triangle-right",
    "stop": "square-x",
}


def esc(value: Any) -> str:
    """A user-given string made inert in figure text: Plotly renders a subset of HTML tags
    there and decodes `&lt;`, `&gt;` and `&amp;` back to the characters (not `&quot;`, so
    quotes stay as they are: without a `<` they cannot open a tag). Names and parameter values
    from a study file show as written, never as markup. The page escapes its own HTML."""
    return html.escape(str(value), quote=False)


def status_colour(status: TrialStatus) -> str:
    return STATUS_COLOURS.get(status, "#6c757d")


def status_legend(status: TrialStatus, drawn: int, total: int, not_drawn: str) -> str:
    """A status's legend entry, counting what the page's header counts — every trial of that
    status, a figure's best one too — and saying how many the figure cannot draw and why
    (`not_drawn`: "without evals")."""
    if total <= drawn:
        return f"{status} ({drawn})"
    return f"{status} ({total}; {total - drawn} {not_drawn}, not drawn)"


def decision_kind(decision: Decision) -> str:
    """The kind of a decision, from its type: ScaleLR(0.5) -> `scale_lr`, Advance("target")
    -> `advance`, Stop(...) -> `stop` (a type this table does not know: its class name)."""
    return DECISION_KINDS.get(type(decision), type(decision).__name__)


def short(value: Any) -> str:
    """A parameter value as a reader wants it: 4 significant digits for floats."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def tokens(n: float | int | None) -> str:
    """Token counts the way people say them: 401k, 2.52M."""
    if n is None:
        return "-"
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{int(n)}"
