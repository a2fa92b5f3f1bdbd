"""Markdown tables of components' fields — name, type, default, bounds, description — read
from the plugins' own field declarations, so a document showing them cannot drift from the
code: `autostage plugins --fields KIND[.NAME]` prints them, and the README's generated blocks

    <!-- fields: dataset -->
    ...
    <!-- /fields -->

are rewritten from the built-ins by `python -m autostage.fieldtables README.md` (a test fails
when they are stale)."""

from __future__ import annotations

import difflib
import inspect
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autostage.errors import AutostageError
from autostage.fields import FieldInfo, fields_of
from autostage.kinds import KINDS

#: a generated block: its opening marker names what it shows (the --fields argument)
BLOCK = re.compile(r"(<!-- fields: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)(<!-- /fields -->)",
                   re.S)
REFRESH = "python -m autostage.fieldtables README.md"


def resolve(registry: Any, spec: str) -> list[Any]:
    """The registry entries `spec` names: KIND (all of the kind, in the order `autostage
    plugins` lists them), KIND.NAME (one), or a NAME only one kind has. AutostageError (one
    line) when it names nothing."""
    spec = spec.strip()
    kind, dot, name = spec.partition(".")
    if dot:
        if kind not in KINDS:
            raise AutostageError(f"--fields {spec}: no kind named '{kind}'; "
                                 f"{_hint(kind, KINDS)}kinds: {', '.join(KINDS)}")
        names = _names(registry, kind)
        if name not in names:
            raise AutostageError(f"--fields {spec}: no {kind} named '{name}'; "
                                 f"{_hint(name, names)}installed: {', '.join(names)}")
        return [registry.entries[kind][name]]
    if spec in KINDS:
        return [registry.entries[spec][n] for n in _names(registry, spec)]
    owners = [k for k in KINDS if spec in registry.entries[k]]
    if len(owners) == 1:
        return [registry.entries[owners[0]][spec]]
    if owners:
        raise AutostageError(f"--fields {spec}: components of several kinds are named "
                             f"'{spec}'; say which: {', '.join(f'{k}.{spec}' for k in owners)}")
    known = [*KINDS, *(n for k in KINDS for n in registry.entries[k])]
    raise AutostageError(f"--fields {spec}: no kind or component named '{spec}'; "
                         f"{_hint(spec, known)}give KIND or KIND.NAME, kinds: "
                         f"{', '.join(KINDS)}")


def _names(registry: Any, kind: str) -> list[str]:
    """The components of `kind`, plugin by plugin as `autostage plugins` lists them, each
    plugin's in the order it registered them."""
    listed = [n for p in registry.plugins for n in p.registered.get(kind, [])]
    return listed + [n for n in registry.entries[kind] if n not in listed]


def _hint(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def render(registry: Any, entries: list[Any]) -> str:
    """One markdown section per entry: its name and docstring, then its fields' table."""
    return "\n".join(_component(registry, entry) for entry in entries)


def _component(registry: Any, entry: Any) -> str:
    info = registry.host.info.get(entry.plugin)
    origin = "" if info is None or info.builtin else \
        f" (plugin {entry.plugin}: {f'{info.dist} {info.version}'.strip()})"
    doc = " ".join(inspect.cleandoc(entry.cls.__dict__.get("__doc__") or "").split())
    head = f"**{entry.kind} `{entry.name}`**{origin}" + (f" — {doc}" if doc else "")
    fields = fields_of(entry.cls)
    if not fields:
        return f"{head}\n\nNo fields.\n"
    rows = ["| field | type | default | bounds | description |", "|---|---|---|---|---|"]
    for f in fields.values():
        cells = [_code(f.name), _type(f), _default(f), _bounds(f), _oneline(f.description)]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return f"{head}\n\n" + "\n".join(rows) + "\n"


def _type(f: FieldInfo) -> str:
    if f.type == "choice":
        return " or ".join(_code(_toml(c)) for c in f.choices)
    return {"int": "integer", "float": "number", "bool": "boolean", "str": "string",
            "list": "list"}[f.type]


def _default(f: FieldInfo) -> str:
    if f.required:
        return "required"
    if f.default is None:
        return "unset"
    return _code(_toml(f.default))


def _bounds(f: FieldInfo) -> str:
    parts = [f"{op} {_number(getattr(f, attr))}" for attr, op in
             (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if getattr(f, attr) is not None]
    return ", ".join(parts)


def _toml(value: Any) -> str:
    """`value` as a study file writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value, toml=True)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _number(value: float, toml: bool = False) -> str:
    """A number, long integers grouped (`20_000`, as TOML may write them); as a TOML value a
    whole float keeps its `.0`, saying the field is a float."""
    if isinstance(value, float) and not (value.is_integer() and abs(value) < 1e15):
        return repr(value)
    whole = int(value)
    text = f"{whole:_}" if abs(whole) >= 10_000 else str(whole)
    return f"{text}.0" if toml and isinstance(value, float) else text


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _cell(text: str) -> str:
    """`text` safe in a markdown table cell: a `|` (in code spans too) is escaped."""
    return text.replace("|", "\\|")


def refresh(text: str, registry: Any) -> str:
    """`text` with every generated block rewritten from `registry`."""
    def block(m: re.Match) -> str:
        body = render(registry, resolve(registry, m["spec"]))
        return f"{m.group(1)}\n{body}\n{m.group(4)}"  # blank lines: the table ends

    return BLOCK.sub(block, text)


def blocks(text: str) -> Iterator[tuple[str, str]]:
    """(spec, body) of every generated block of `text`."""
    for m in BLOCK.finditer(text):
        yield m["spec"], m["body"]


@contextmanager
def _builtins_only() -> Iterator[None]:
    """Load only the built-in plugins: what the README documents, whatever is installed."""
    saved = os.environ.get("AUTOSTAGE_LOAD_PLUGINS")
    os.environ["AUTOSTAGE_LOAD_PLUGINS"] = ""
    try:
        yield
    finally:
        if saved is None:
            del os.environ["AUTOSTAGE_LOAD_PLUGINS"]
        else:
            os.environ["AUTOSTAGE_LOAD_PLUGINS"] = saved


def builtin_registry() -> Any:
    from autostage.host import load_registry

    with _builtins_only():
        return load_registry()


def main(argv: list[str] | None = None) -> int:
    """Rewrite the generated blocks of the files named (default README.md) from the
    built-ins; print which changed."""
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)] or [Path("README.md")]
    registry = builtin_registry()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            new = refresh(text, registry)
        except AutostageError as e:
            print(f"{path}: {e}", file=sys.stderr)
            return 2
        if new != text:
            path.write_text(new, encoding="utf-8")
        print(f"{'rewrote' if new != text else 'up to date:'} {path} "
              f"({len(list(blocks(new)))} field tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
