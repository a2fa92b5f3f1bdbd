"""The study files the tests write, each built from one base study instead of a pasted copy.

    toy_study(*sets, stages=None, data=None, drop=())          the toy FAKE trainer (ms a trial)
    tiny_lm_study(...)          a one-layer GPT-2 on CPU: general (pydoc) then target (arith)
    tiny_classifier_study(...)  a one-layer BERT classifying the rows of a CSV (plays)

A test states where its study differs from the base, at the call site:

- `sets`: `--set`-style overrides, `section.key=value` — the value read as TOML (`3`,
  `1e-3`, `true`, `["prereq"]`, `{ low = 1e-3, high = 1e-2, log = true }`) and kept as
  written; text that is not TOML is a string (`study.sampler=random`), as `autostage --set`
  reads it. Stages by name: `stage.target.tokens=80_000`. `{}` is an empty table
  (`search.lr_schedule.constant={}`).
- `stages`, `data`: the stages and data sources, in order, by name (default: the base's); a
  name the base lacks starts empty (a stage with only its `name`) and takes its keys from
  `sets`; a name left out is left out of the study.
- `drop`: keys or tables to leave out (`study.trial_scheduler`, `data.target.prerequisite`,
  `search`).

The text is written in one fixed layout (a blank line before each table, keys in the order
they were first set, values as written: `8_192` stays `8_192`), so a test that edits the text
(a syntax error, a duplicated key) finds what it set.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable

import tomli_w

TOY = """\
[study]
name = "toy"
metric = "eval.target.loss"
trials = 2
parallel = 2
trial_scheduler = "fifo"

[model]
trainer = "toy"

[data.prereq]
dataset = "toy_task"

[data.target]
dataset = "toy_task"
prerequisite = "prereq"

[[stage]]
name = "prereq"
data = "prereq"
tokens = 20_000

[[stage]]
name = "target"
data = "target"
tokens = 40_000
final = true

[search.optimizer.adamw]
lr = { low = 1e-3, high = 1e-2, log = true }
"""

TINY_LM = """\
[study]
name = "lm"
metric = "eval.target.loss"

[model]
trainer = "transformers"
n_layer = 1
n_embd = 32
n_head = 2
context = 32
batch_size = 8
eval_batches = 4

[data.general]
dataset = "pydoc"

[data.target]
dataset = "arith"
digits = 2

[[stage]]
name = "general"
data = "general"
tokens = 4096

[[stage]]
name = "target"
data = "target"
tokens = 4096
final = true

[search.optimizer.adamw]
lr = 3e-3
"""

TINY_CLASSIFIER = """\
[study]
name = "plays"
metric = "eval.plays.accuracy"
mode = "max"

[model]
trainer = "transformers"
arch = "bert"
n_layer = 1
n_embd = 32
n_head = 2
context = 32
batch_size = 16
eval_batches = 2

[data.plays]
dataset = "csv"
path = "plays.csv"
label_field = "label"

[[stage]]
name = "classify"
data = "plays"
objective = "classify"
tokens = 512
final = true
"""


def toy_study(*sets: str, stages: Iterable[str] | None = None,
              data: Iterable[str] | None = None, drop: Iterable[str] = ()) -> str:
    """The toy study (trainer `toy`, the FAKE): two data sources, prereq and target (which
    has prereq as its prerequisite), a stage on each (20,000 and 40,000 tokens, the target's
    final), two trials at a time under the fifo trial scheduler, adamw's LR searched."""
    return study(TOY, *sets, stages=stages, data=data, drop=drop)


def tiny_lm_study(*sets: str, stages: Iterable[str] | None = None,
                  data: Iterable[str] | None = None, drop: Iterable[str] = ()) -> str:
    """A one-layer GPT-2 (32 wide, 32 tokens of context) trained in seconds on CPU: 4,096
    tokens of Python docs (pydoc), then 4,096 of two-digit sums (arith); adamw at 3e-3."""
    return study(TINY_LM, *sets, stages=stages, data=data, drop=drop)


def tiny_classifier_study(*sets: str, stages: Iterable[str] | None = None,
                          data: Iterable[str] | None = None, drop: Iterable[str] = ()) -> str:
    """A one-layer BERT classifying the rows of a CSV (`data.plays.path`: set it) in one
    stage of 512 tokens, judged by accuracy; evals of 2 batches of 16."""
    return study(TINY_CLASSIFIER, *sets, stages=stages, data=data, drop=drop)


# --- building the text ---------------------------------------------------------------------

# A study as it is built: tables are dicts, the stages a list of dicts, and every value the
# TOML text it was written as.
Table = dict[str, "str | Table | list[Table]"]


def study(base: str, *sets: str, stages: Iterable[str] | None = None,
          data: Iterable[str] | None = None, drop: Iterable[str] = ()) -> str:
    """`base` (a study's text in the layout `render` writes) with these changes."""
    tree = parse(base)
    if data is not None:
        sources = tree.setdefault("data", {})
        tree["data"] = {name: sources.get(name, {}) for name in data}
    if stages is not None:
        by_name = {_stage_name(s): s for s in tree.get("stage", [])}
        tree["stage"] = [by_name.get(name, {"name": _toml(name)}) for name in stages]
    for item in sets:
        key, eq, value = item.partition("=")
        assert eq and key.strip(), f"expected section.key=value, not {item!r}"
        _set(tree, key.strip().split("."), _toml(value.strip()))
    for key in drop:
        _drop(tree, key.split("."))
    text = render(tree)
    tomllib.loads(text)  # what a test writes is TOML, unless it edits it not to be
    return text


def parse(text: str) -> Table:
    """The tables of a study's text: `[a.b]` and `[[stage]]` headers, `key = value` lines."""
    tree: Table = {}
    table = tree
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            table = {}
            tree.setdefault(line.strip("[]"), []).append(table)
        elif line.startswith("["):
            table = tree
            for part in line.strip("[]").split("."):
                table = table.setdefault(part, {})
        else:
            key, eq, value = line.partition(" = ")
            assert eq, f"not a key = value line: {line!r}"
            table[key] = value
    return tree


def render(tree: Table) -> str:
    """The text: each table's keys under its header, a blank line before each header."""
    blocks: list[str] = []

    def table(path: list[str], node: Table) -> None:
        keys = [f"{k} = {v}" for k, v in node.items() if isinstance(v, str)]
        subs = [(k, v) for k, v in node.items() if not isinstance(v, str)]
        if path and (keys or not subs):
            blocks.append("\n".join([f"[{'.'.join(path)}]", *keys]))
        for key, sub in subs:
            if isinstance(sub, list):
                for item in sub:
                    blocks.append("\n".join([f"[[{'.'.join([*path, key])}]]",
                                             *(f"{k} = {v}" for k, v in item.items())]))
            else:
                table([*path, key], sub)

    table([], tree)
    return "\n\n".join(blocks) + "\n"


def _toml(text: str) -> str | Table:
    """A value as TOML text: kept as written if it is TOML, else a string; `{}`, a table."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return tomli_w.dumps({"v": text}).removeprefix("v = ").rstrip("\n")
    return {} if value == {} else text


def _stage_name(stage: Table) -> str:
    return tomllib.loads(f"v = {stage['name']}")["v"]


def _node(tree: Table, path: list[str], create: bool) -> Table:
    """The table `path` names (stages by name), made if `create`."""
    node = tree
    for i, part in enumerate(path):
        if isinstance(node, list):
            named = [s for s in node if _stage_name(s) == part]
            assert named, (f"no stage named {part!r} at {'.'.join(path[:i + 1])}: "
                           "name it in stages=")
            node = named[0]
        elif create:
            node = node.setdefault(part, {})
        else:
            assert part in node, f"nothing at {'.'.join(path[:i + 1])} to drop"
            node = node[part]
    return node


def _set(tree: Table, path: list[str], value: str | Table) -> None:
    _node(tree, path[:-1], create=True)[path[-1]] = value


def _drop(tree: Table, path: list[str]) -> None:
    parent = _node(tree, path[:-1], create=False)
    assert path[-1] in parent, f"nothing at {'.'.join(path)} to drop"
    del parent[path[-1]]
