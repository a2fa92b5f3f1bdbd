"""The report page: sections of figures, tables and notes in one HTML file.

Plotly.js is inlined once (the file opens offline, ~5 MB) or loaded from Plotly's CDN
(`cdn=True`, a small file that needs the network). Everything we write into the page is
escaped where it is made; figure JSON is Plotly's, which escapes `<` inside scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto;
       max-width: 1400px; padding: 16px 28px 60px; color: #222; }
h1 { margin-bottom: 2px; } h2 { margin: 34px 0 4px; font-size: 1.25em; }
.sub { color: #666; margin-top: 0; font-size: .9em; }
.help { color: #555; margin: 0 0 6px; font-size: .92em; max-width: 1000px; }
.note { color: #7a5b00; background: #fff8e1; padding: 6px 10px; border-radius: 4px;
        display: inline-block; }
.partial { background: #e7f1fb; border-left: 5px solid #457b9d; padding: 8px 12px;
           margin: 10px 0; }
.chip { border: 2px solid; border-radius: 10px; padding: 0 7px; margin-left: 6px;
        font-size: .85em; }
.best { border: 2px solid #6a0dad; border-radius: 6px; padding: 4px 16px 12px;
        margin-top: 14px; }
.best h2 { margin-top: 10px; color: #6a0dad; }
table { border-collapse: collapse; font-size: .88em; margin-top: 6px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left;
         vertical-align: top; }
table.facts th, table.config th { color: #555; font-weight: 600; }
.params { font-family: ui-monospace, monospace; font-size: .9em; }
code { background: #f3f3f3; padding: 0 4px; border-radius: 3px; }
"""


@dataclass
class Section:
    """A heading, how to read what follows, then a figure, a table or a note."""

    title: str
    help: str = ""
    figure: Any = None
    table: str = ""  # HTML, escaped where it was made
    note: str | None = None


def figure_section(title: str, help: str, info: dict[str, Any], plot: Any) -> Section:
    """A figure drawn from its data; when the data says there is nothing to draw (too few
    trials, none evaluated yet), the reason instead."""
    if "missing" in info:
        return Section(title, help, note=info["missing"])
    return Section(title, help, figure=plot(info), note=info.get("note"))


def render(title: str, top: str, sections: list[Section], *, cdn: bool) -> str:
    body = [top]
    figures = 0
    for section in sections:
        body.append(f"<section><h2>{escape(section.title)}</h2>")
        if section.help:
            body.append(f"<p class='help'>{escape(section.help)}</p>")
        if section.figure is not None:
            figures += 1
            body.append(_figure_html(section.figure, f"figure-{figures}"))
        body.append(section.table)
        if section.note:
            body.append(f"<p class='note'>{escape(section.note)}</p>")
        body.append("</section>")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='autostage-figures' content='{figures}'>"
            f"<title>{escape(title)}</title><style>{CSS}</style>{_plotly_js(cdn)}</head>"
            f"<body>{''.join(body)}</body></html>\n")


def _figure_html(figure: Any, div_id: str) -> str:
    import plotly.io as pio

    return pio.to_html(figure, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=PLOTLY_CONFIG)


def _plotly_js(cdn: bool) -> str:
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    if cdn:
        return (f"<script src='https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js' "
                "charset='utf-8'></script>")
    return f"<script>{get_plotlyjs()}</script>"
