"""`autostage plugins --fields KIND[.NAME]`: every component's fields — type, default, bounds,
description — as markdown tables read from the plugins' declarations, so a data user needs
no source; the README's generated blocks come from the same renderer."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Literal

import pytest
from pydantic import Field

from autostage.cli import main
from autostage.components import Init
from autostage.errors import AutostageError
from autostage.fields import fields_of
from autostage.fieldtables import refresh, render, resolve
from autostage.hookspecs import hookimpl
from autostage.host import load_registry
from autostage_plugins.datasets import CSV

#: one unescaped `|`: a cell boundary
BAR = re.compile(r"(?<!\\)\|")


def tables(out: str) -> dict[str, dict[str, list[str]]]:
    """`--fields` output as {"kind `name`": {field: [type, default, bounds, description]}}."""
    found: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in out.splitlines():
        if m := re.match(r"\*\*(\w+ `[\w-]+`)\*\*", line):
            current = found.setdefault(m[1], {})
        elif line.startswith("| `") and current is not None:
            cells = [c.strip() for c in BAR.split(line)[1:-1]]
            assert len(cells) == 5, line
            current[cells[0].strip("`")] = cells[1:]
    return found


def fields_output(capsys, *specs: str) -> str:
    assert main(["plugins", *(a for s in specs for a in ("--fields", s))]) == 0
    return capsys.readouterr().out


def test_a_datasets_fields_with_type_default_bounds_and_description(capsys):
    csv = tables(fields_output(capsys, "dataset.csv"))["dataset `csv`"]
    assert list(csv) == list(fields_of(CSV))
    assert csv["encoding"][:3] == ["string", '`"utf-8"`', ""]
    assert "byte-order mark" in csv["encoding"][3]
    assert csv["path"][1] == "required"
    assert csv["label_field"][1] == "unset"
    assert csv["val_fraction"][:3] == ["number", "`0.1`", "> 0, < 1"]


def test_a_kind_shows_every_component_and_every_field_described(capsys, registry):
    out = fields_output(capsys, "dataset", "trainer.transformers")
    shown = tables(out)
    components = [*registry.entries["dataset"].values(),
                  registry.entries["trainer"]["transformers"]]
    for entry in components:
        table = shown[f"{entry.kind} `{entry.name}`"]
        assert list(table) == list(fields_of(entry.cls)), entry.name
        if registry.host.info[entry.plugin].builtin and entry.name != "toy_task":
            # what a data user sets: each says what it does
            assert all(row[3] for row in table.values()), (entry.name, table)
    text = shown["dataset `text`"]
    assert text["keep_newlines"][:2] == ["boolean", "`false`"]
    assert text["passage_chars"][1:3] == ["`512`", ">= 32, <= 100_000"]
    trainer = shown["trainer `transformers`"]
    assert trainer["arch"][:2] == ['`"gpt2"` or `"bert"`', '`"gpt2"`']
    assert trainer["eval_batches"][1] == "`4`"


def test_a_name_alone_works_when_one_kind_has_it(capsys):
    assert fields_output(capsys, "csv") == fields_output(capsys, "dataset.csv")


@pytest.mark.parametrize(("spec", "says"), [
    ("datasets", "no kind or component named 'datasets'; did you mean 'dataset'?"),
    ("dataset.cvs", "no dataset named 'cvs'; did you mean 'csv'? installed: "),
    ("datset.csv", "no kind named 'datset'; did you mean 'dataset'? kinds: optimizer, "),
])
def test_an_unknown_kind_or_name_is_one_error_line_exit_2(capsys, spec, says):
    assert main(["plugins", "--fields", spec]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"error: --fields {spec}: ")
    assert says in err


class Piped(Init):
    """An init whose settings hold pipes."""

    sep: str = Field("a|b", description="split on | or ||")
    mode: Literal["x|y", "z"] = "z"
    widths: list[int] = Field(default_factory=lambda: [1, 20_000])
    scale: float = Field(2.0, ge=0, lt=1e6)

    def apply(self, model):
        pass


def plugin(**inits) -> SimpleNamespace:
    """A plugin (as a module would be) registering `inits`, named acme."""

    @hookimpl
    def register_inits(register):
        for name, cls in inits.items():
            register(name, cls)

    return SimpleNamespace(__name__="acme", register_inits=register_inits)


def test_pipes_in_descriptions_defaults_and_choices_are_escaped():
    registry = load_registry(entry_points=False, plugins=[plugin(piped=Piped)])
    out = render(registry, resolve(registry, "init.piped"))
    rows = {r[0]: r[1:] for r in ([c.strip() for c in BAR.split(line)[1:-1]]
                                  for line in out.splitlines() if line.startswith("| `"))}
    assert all(len(r) == 4 for r in rows.values())
    assert rows["`sep`"] == ["string", '`"a\\|b"`', "", "split on \\| or \\|\\|"]
    assert rows["`mode`"][0] == '`"x\\|y"` or `"z"`'
    assert rows["`widths`"][:2] == ["list", "`[1, 20_000]`"]
    assert rows["`scale`"][1:3] == ["`2.0`", ">= 0, < 1_000_000"]
    assert out.startswith("**init `piped`** (plugin acme: acme) — An init whose settings")


def test_a_name_several_kinds_have_must_be_qualified():
    from autostage.components import Dataset

    class Twin(Dataset):
        pass

    @hookimpl
    def register_datasets(register):
        register("twin", Twin)

    acme = plugin(twin=Piped)
    acme.register_datasets = register_datasets
    registry = load_registry(entry_points=False, plugins=[acme])
    with pytest.raises(AutostageError, match="say which: init.twin, dataset.twin"):
        resolve(registry, "twin")
    assert render(registry, resolve(registry, "dataset.twin")) == \
        "**dataset `twin`** (plugin acme: acme)\n\nNo fields.\n"


def test_a_generated_block_follows_a_changed_field(registry):
    block = f"<!-- fields: dataset.csv -->\n\n{render(registry, resolve(registry, 'csv'))}\n" \
        "<!-- /fields -->"
    text = f"# Doc\n\n{block}\n\nafter\n"
    assert refresh(text, registry) == text  # up to date: unchanged

    class Latin(CSV):
        """A CSV file with a header row."""

        encoding: str = Field("latin-1", description="the file's text encoding")

    @hookimpl
    def register_datasets(register):
        register("csv", Latin)

    changed = load_registry(entry_points=False, plugins=[SimpleNamespace(
        __name__="latin", register_datasets=register_datasets)])
    new = refresh(text, changed)
    assert new != text and '`"latin-1"`' in new and new.endswith("<!-- /fields -->\n\nafter\n")
    assert refresh(new, changed) == new
    with pytest.raises(AutostageError, match="no dataset named 'nope'"):
        refresh("<!-- fields: dataset.nope -->\n<!-- /fields -->", registry)
