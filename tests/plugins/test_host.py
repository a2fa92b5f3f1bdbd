"""The plugin host: a broken or clashing plugin gives a PluginError that names it (never a
traceback from deep inside pluggy), and a broken third-party plugin can be switched off."""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from support import REPO

import autostage
from autostage import hookspecs
from autostage.cli import main
from autostage.components import Optimizer
from autostage.errors import PluginError
from autostage.hookspecs import hookimpl
from autostage.host import load_registry, metadata

BUILTINS = {"optimizers": "adamw", "lr_schedules": "cosine", "stage_policies": "plateau",
            "inits": "default", "samplers": "tpe", "trial_schedulers": "asha", "toy": "toy"}
INSTALLED = {ep.name for ep in metadata.entry_points(group="autostage")
             if ep.dist and ep.dist.name == "autostage"}


class Fancy(Optimizer):
    def build(self, params: Any) -> Any:
        return None


def optimizer_plugin(plugin: str, cls: Any = Fancy, name: str = "fancy",
                     **how: Any) -> SimpleNamespace:
    """A plugin object (as a module would be) registering one optimizer."""

    @hookimpl
    def register_optimizers(register):
        register(name, cls, **how)

    return SimpleNamespace(__name__=plugin, register_optimizers=register_optimizers)


def test_a_plugin_object_registers_its_components():
    registry = load_registry(entry_points=False, plugins=[optimizer_plugin("acme")])
    assert registry.get("optimizer", "fancy") is Fancy
    assert registry.entries["optimizer"]["fancy"].plugin == "acme"


def test_same_name_from_two_plugins():
    plugins = [optimizer_plugin("acme"), optimizer_plugin("globex")]
    with pytest.raises(PluginError, match="optimizer 'fancy'") as e:
        load_registry(entry_points=False, plugins=plugins)
    assert "'acme'" in str(e.value) and "'globex'" in str(e.value)


def test_reusing_a_builtins_name_is_refused_saying_how_to_replace_it_on_purpose():
    with pytest.raises(PluginError) as e:
        load_registry(plugins=[optimizer_plugin("acme", name="adamw")])
    assert str(e.value) == (
        "plugin 'acme' registered optimizer 'adamw', the name of a built-in (from "
        "'optimizers'): give yours another name, or replace the built-in on purpose with "
        "register('adamw', cls, replaces_builtin=True)")


def test_a_plugin_replaces_a_builtin_when_it_says_so():
    registry = load_registry(plugins=[optimizer_plugin("acme", name="adamw",
                                                       replaces_builtin=True)])
    assert registry.get("optimizer", "adamw") is Fancy
    assert registry.entries["optimizer"]["adamw"].plugin == "acme"
    assert registry.get("optimizer", "sgd").__module__ == "autostage_plugins.optimizers"
    owners = {p.name: p.registered.get("optimizer", []) for p in registry.plugins}
    assert owners["acme"] == ["adamw"] and "adamw" not in owners["optimizers"]


def test_replacing_is_for_builtins_only():
    plugins = [optimizer_plugin("acme"), optimizer_plugin("globex", replaces_builtin=True)]
    with pytest.raises(PluginError, match="registered by two plugins: .*AUTOSTAGE_LOAD"):
        load_registry(entry_points=False, plugins=plugins)


def test_hook_that_raises_names_plugin_and_hook():
    class Crashing:
        @hookimpl
        def register_optimizers(self, register):
            raise RuntimeError("boom")

    with pytest.raises(PluginError) as e:
        load_registry(entry_points=False, plugins=[Crashing()])
    assert "plugin 'Crashing'" in str(e.value)
    assert "register_optimizers" in str(e.value) and "boom" in str(e.value)


def test_unsupported_field_type():
    class Tabled(Fancy):
        table: dict[str, int] = {}

    with pytest.raises(PluginError, match="plugin 'acme'") as e:
        load_registry(entry_points=False, plugins=[optimizer_plugin("acme", Tabled)])
    assert "field 'table'" in str(e.value) and "not supported" in str(e.value)


def test_class_of_the_wrong_kind():
    class NotAnOptimizer:
        pass

    with pytest.raises(PluginError, match="not a subclass of autostage.components.Optimizer"):
        load_registry(entry_points=False, plugins=[optimizer_plugin("acme", NotAnOptimizer)])


def test_abstract_component():
    class Unfinished(Optimizer):
        pass

    with pytest.raises(PluginError, match="plugin 'acme'.*does not implement build"):
        load_registry(entry_points=False, plugins=[optimizer_plugin("acme", Unfinished)])


# --- entry points ------------------------------------------------------------------------


class FakeEntryPoint:
    def __init__(self, name: str, load: Any, dist: str = "autostage-fancy") -> None:
        self.name = name
        self.dist = SimpleNamespace(name=dist, version="9.9")
        self._load = load

    def load(self) -> Any:
        return self._load()


def broken_import() -> Any:
    raise ImportError("No module named 'fancy_cuda'")


@pytest.fixture
def installed(monkeypatch):
    """Install fake third-party entry points next to the real built-in ones."""
    monkeypatch.delenv("AUTOSTAGE_LOAD_PLUGINS", raising=False)
    real = metadata.entry_points

    def install(*fakes: FakeEntryPoint) -> None:
        def entry_points(**kw):
            if kw.get("group") == "autostage":  # only the built-ins: whatever else is installed
                builtins = [ep for ep in real(group="autostage")
                            if ep.dist and ep.dist.name == "autostage"]
                return [*builtins, *fakes]
            return real(**kw)

        monkeypatch.setattr(metadata, "entry_points", entry_points)

    return install


def test_builtins_come_in_through_entry_points(installed):
    installed()
    registry = load_registry()
    assert set(BUILTINS) <= INSTALLED == {p.name for p in registry.plugins}
    assert all(p.builtin and p.dist == "autostage" for p in registry.plugins)


def test_broken_third_party_plugin(installed):
    installed(FakeEntryPoint("fancy", broken_import))
    with pytest.raises(PluginError, match="plugin 'fancy'") as e:
        load_registry()
    assert "fancy_cuda" in str(e.value) and "AUTOSTAGE_LOAD_PLUGINS" in str(e.value)


def test_empty_load_plugins_skips_third_party(installed, monkeypatch):
    installed(FakeEntryPoint("fancy", broken_import))
    monkeypatch.setenv("AUTOSTAGE_LOAD_PLUGINS", "")
    registry = load_registry()
    assert {p.name for p in registry.plugins} == INSTALLED
    assert registry.has("optimizer", "adamw") and registry.has("trainer", "toy")


def test_load_plugins_selects_a_plugin(installed, monkeypatch):
    good = optimizer_plugin("autostage_fancy")
    installed(FakeEntryPoint("fancy", lambda: good), FakeEntryPoint("broken", broken_import))
    monkeypatch.setenv("AUTOSTAGE_LOAD_PLUGINS", "fancy")
    registry = load_registry()
    assert registry.entries["optimizer"]["fancy"].plugin == "fancy"
    assert "broken" not in {p.name for p in registry.plugins}


def test_load_plugins_by_distribution_name_in_any_spelling(installed, monkeypatch):
    good = optimizer_plugin("autostage_fancy")
    installed(FakeEntryPoint("fancy", lambda: good, dist="autostage-fancy"))
    monkeypatch.setenv("AUTOSTAGE_LOAD_PLUGINS", "autostage_fancy")  # as pip would accept it
    assert load_registry().has("optimizer", "fancy")


def test_load_plugins_naming_nothing_installed(installed, monkeypatch):
    installed(FakeEntryPoint("fancy", broken_import))
    monkeypatch.setenv("AUTOSTAGE_LOAD_PLUGINS", "nosuch")
    with pytest.raises(PluginError, match="nosuch") as e:
        load_registry()
    assert "fancy" in str(e.value), "the message must list the installed plugins"


# --- the `plugins` command, hook docs, tracing -------------------------------------------


def test_plugins_command_lists_builtins(capsys):
    assert main(["plugins"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    for plugin, registers in BUILTINS.items():
        row = rows[plugin]
        assert row[1:3] == ["autostage", autostage.__version__]
        assert registers in " ".join(row[3:])


def hook_names() -> list[str]:
    return [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(f, "autostage_spec")]


def test_every_hook_has_a_docstring():
    hooks = hook_names()
    assert "register_optimizers" in hooks and "report_figures" in hooks
    assert [h for h in hooks if not (getattr(hookspecs, h).__doc__ or "").strip()] == []


def test_every_hook_is_in_the_readme():
    hooks = hook_names()
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md is missing"
    text = readme.read_text(encoding="utf-8")
    assert [h for h in hooks if h not in text] == []


def test_trace_plugins_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.delenv("AUTOSTAGE_TRACE_PLUGINS", raising=False)
    load_registry(entry_points=False, plugins=[optimizer_plugin("acme")])
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("AUTOSTAGE_TRACE_PLUGINS", "1")
    load_registry(entry_points=False, plugins=[optimizer_plugin("acme")])
    err = capsys.readouterr().err
    assert "acme.register_optimizers" in err and "fancy" in err
