"""The table of component kinds agrees with the hooks, the base classes, the study sections
and the built-in plugins; and no autostage module imports itself round a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from autostage import components, hookspecs
from autostage.host import load_registry
from autostage.kinds import (
    DEFAULTS,
    IN_STUDY,
    KIND,
    KINDS,
    LISTED_IN_STUDY,
    PER_STAGE,
    SEARCHABLE_KINDS,
    TABLE,
)
from autostage.spec import SearchSection, StageSection, StudySection

PACKAGE = Path(components.__file__).resolve().parent


def test_names_and_hooks_are_unique():
    assert len(KINDS) == len(set(KINDS)) == len(TABLE)
    assert len({k.hook for k in TABLE}) == len(TABLE)


@pytest.mark.parametrize("kind", TABLE, ids=KINDS)
def test_every_kind_has_its_hook_and_base(kind):
    hook = getattr(hookspecs, kind.hook, None)
    assert callable(hook), f"hookspecs has no {kind.hook} for kind '{kind.name}'"
    assert hasattr(hook, "autostage_spec"), f"{kind.hook} is not marked @hookspec"
    base = getattr(components, kind.base, None)
    assert isinstance(base, type) and issubclass(base, components.Component), kind.base
    assert base.kind == kind.name
    assert components.BASES[kind.name] is base


def test_every_register_hook_is_in_the_table():
    hooks = {n for n in vars(hookspecs) if n.startswith("register_")}
    assert hooks == {k.hook for k in TABLE}


def test_every_kind_says_why_its_default():
    for kind in TABLE:
        assert kind.why.strip(), kind.name
    assert DEFAULTS == {"optimizer": "adamw", "lr_schedule": "constant",
                        "stage_policy": "fixed", "init": "default"}


def test_defaults_are_registered_by_the_builtin_plugins(monkeypatch):
    monkeypatch.setenv("AUTOSTAGE_LOAD_PLUGINS", "")  # built-ins only
    registry = load_registry()
    for kind in TABLE:
        if kind.default is None:
            continue
        assert registry.has(kind.name, kind.default), (kind.name, kind.default)
        plugin = registry.entries[kind.name][kind.default].plugin
        assert registry.host.info[plugin].builtin, (kind.name, kind.default, plugin)


def test_study_sections_follow_the_table():
    assert list(SearchSection.model_fields) == ["plan", *SEARCHABLE_KINDS]
    config = SearchSection.model_config
    assert (config["extra"], config["frozen"], config["strict"]) == ("forbid", True, True)
    assert set(PER_STAGE) <= set(StageSection.model_fields)
    for kind in IN_STUDY:
        assert StudySection.model_fields[kind].default == KIND[kind].default
        assert f"{kind}_settings" in StudySection.model_fields
    assert LISTED_IN_STUDY == ("tracker",)
    for kind in LISTED_IN_STUDY:  # a list of names, none by default; settings per name
        assert StudySection.model_fields[f"{kind}s"].default_factory() == []
        assert StudySection.model_fields[f"{kind}_settings"].default_factory() == {}


# --- import cycles --------------------------------------------------------------------------


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported: at top level, or in a
    top-level `if`/`try` — but not under `if TYPE_CHECKING:`, nor in any function or class."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                found += _top_level_imports(node.body)
            found += _top_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody,
                          *(h.body for h in node.handlers)):
                found += _top_level_imports(block)
    return found


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom,
             known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:
        here = module.split(".") if is_package else module.split(".")[:-1]
        here = here[: len(here) - (node.level - 1)]
        base = ".".join([*here, base] if base else here)
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.add(sub if sub in known else base)  # `from pkg import submodule` imports it
    return out & known


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = set().union(*(_targets(name, is_package, node, known)
                                    for node in _top_level_imports(tree.body))) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_sees_the_known_edges():
    graph = import_graph()
    assert "autostage.kinds" in graph["autostage.components"]
    assert "autostage.space" in graph["autostage.check"]
    assert graph["autostage.kinds"] == set()
    assert "autostage.hookspecs" in graph["autostage.host"]  # `from autostage import hookspecs`


def test_no_module_level_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_nothing_outside_the_search_package_imports_it_at_import_time():
    # the house is layered: the pure modules (branching, trial_identity, records, ...) sit
    # below autostage.search and never reach up into it; a search starts from search_start,
    # which imports it where the search runs
    graph = import_graph()
    up = {m: sorted(t for t in targets if t.startswith("autostage.search."))
          for m, targets in graph.items()
          if m != "autostage.search" and not m.startswith("autostage.search.")}
    assert {m: t for m, t in up.items() if t} == {}
