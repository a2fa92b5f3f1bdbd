"""The plugin host: load plugins (entry-point group `autostage`), collect what they register.

Built-ins are entry points of the `autostage` distribution itself, so they come in through the
same door as third-party plugins. `AUTOSTAGE_LOAD_PLUGINS=a,b` loads only those third-party
plugins (by entry-point or distribution name; empty: built-ins only), so a broken plugin can
always be switched off. `AUTOSTAGE_TRACE_PLUGINS=1` prints every hook call to stderr.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from autostage import hookspecs
from autostage.components import BASES, Component
from autostage.errors import PluginError
from autostage.fields import FieldTypeError, fields_of
from autostage.kinds import KINDS, REGISTER_HOOKS

GROUP = "autostage"
BUILTIN_DIST = "autostage"
NAME = re.compile(r"^[a-z][a-z0-9_\-]*$")


@dataclass
class PluginInfo:
    """One loaded plugin: where it comes from and what it registered."""

    name: str
    dist: str
    version: str
    builtin: bool
    registered: dict[str, list[str]] = field(default_factory=dict)  # kind -> names


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    cls: type[Component]
    plugin: str
    replaces_builtin: bool = False


class Host(pluggy.PluginManager):
    """A pluggy manager that remembers which distribution each plugin came from."""

    def __init__(self) -> None:
        super().__init__(GROUP)
        self.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}

    def add(self, plugin: Any, name: str, dist: str = "", version: str = "") -> None:
        self.register(plugin, name=name)
        self.info[name] = PluginInfo(name, dist or name, version, dist == BUILTIN_DIST)


def plugin_manager(entry_points: bool = True, plugins: Iterable[Any] = ()) -> Host:
    """Build the host: `plugins` (modules or objects) first, then the installed entry points.

    Tests pass `entry_points=False` and exactly the plugins they need.
    """
    host = Host()
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        host.add(plugin, name=name, dist=name)
    if entry_points:
        _load_entry_points(host, _wanted_plugins())
    return host


def _wanted_plugins() -> set[str] | None:
    raw = os.environ.get("AUTOSTAGE_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_normalise(p.strip()) for p in raw.split(",") if p.strip()}


def _load_entry_points(host: Host, wanted: set[str] | None) -> None:
    seen: set[str] = set()
    third_party: list[str] = []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else "?"
        version = ep.dist.version if ep.dist else "?"
        names = {_normalise(ep.name), _normalise(dist)}
        builtin = _normalise(dist) == BUILTIN_DIST
        seen.update(names)
        if not builtin:
            third_party.append(f"{ep.name} ({dist})")
        if not builtin and wanted is not None and not (names & wanted):
            continue
        try:
            plugin = ep.load()
        except Exception as e:
            raise PluginError(
                f"plugin '{ep.name}' (from {dist} {version}) failed to import: "
                f"{type(e).__name__}: {e}. Uninstall or fix it, or skip it with "
                f"AUTOSTAGE_LOAD_PLUGINS=<the plugins you want> (empty: built-ins only)"
            ) from e
        if host.is_registered(plugin):  # two entry points naming one module
            continue
        host.add(plugin, name=ep.name, dist=dist, version=version)
    missing = sorted((wanted or set()) - seen)
    if missing:
        raise PluginError(
            f"AUTOSTAGE_LOAD_PLUGINS names {', '.join(missing)}, which no installed plugin is; "
            f"installed third-party plugins: {', '.join(third_party) or 'none'}"
        )


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


class Registry:
    """Every named component, per kind, and the plugin that registered it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.plugins = list(host.info.values())
        trace = os.environ.get("AUTOSTAGE_TRACE_PLUGINS", "") not in ("", "0")
        for kind in KINDS:
            hook_name = REGISTER_HOOKS[kind]
            for impl in reversed(getattr(host.hook, hook_name).get_hookimpls()):
                self._call(impl, kind, hook_name, trace)
        for kind, entries in self.entries.items():  # whose each name is, once settled
            for name, entry in sorted(entries.items()):
                host.info[entry.plugin].registered.setdefault(kind, []).append(name)

    def _call(self, impl: Any, kind: str, hook_name: str, trace: bool) -> None:
        plugin = impl.plugin_name
        names: list[str] = []

        def register(name: str, cls: type, *, replaces_builtin: bool = False) -> None:
            self._add(kind, name, cls, plugin, hook_name, replaces_builtin)
            names.append(name)

        try:
            impl.function(register=register)
        except PluginError:
            raise
        except Exception as e:
            raise PluginError(
                f"plugin '{plugin}' raised in hook {hook_name}: {type(e).__name__}: {e}"
            ) from e
        if trace:
            print(f"[autostage trace] {plugin}.{hook_name} -> {names}", file=sys.stderr)

    def _add(self, kind: str, name: str, cls: type, plugin: str, hook_name: str,
             replaces_builtin: bool = False) -> None:
        where = f"plugin '{plugin}' (hook {hook_name})"
        base = BASES[kind]
        if not isinstance(name, str) or not NAME.match(name):
            raise PluginError(
                f"{where} registered {kind} {name!r}: a name is lowercase letters, digits, "
                "'_' or '-', starting with a letter"
            )
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise PluginError(
                f"{where} registered {kind} '{name}' as {cls!r}, which is not a subclass of "
                f"autostage.components.{base.__name__}"
            )
        if inspect.isabstract(cls):
            missing = ", ".join(sorted(cls.__abstractmethods__))
            raise PluginError(f"{where}: {kind} '{name}' does not implement {missing}")
        try:
            fields_of(cls)
        except FieldTypeError as e:
            raise PluginError(f"{where}: {kind} '{name}' {e}") from None
        entry = Entry(kind, name, cls, plugin, replaces_builtin)
        if name in self.entries[kind]:
            entry = self._settle(self.entries[kind][name], entry)
        self.entries[kind][name] = entry

    def _settle(self, have: Entry, new: Entry) -> Entry:
        """Two registrations of one name: a third-party plugin may replace a built-in when it
        says so (`replaces_builtin=True`), whichever registered first; anything else is an
        error whose advice can be followed."""
        builtin = {e.plugin: self.host.info[e.plugin].builtin for e in (have, new)}
        if sum(builtin.values()) == 1:
            ours, theirs = (have, new) if builtin[have.plugin] else (new, have)
            if theirs.replaces_builtin:
                return theirs
            raise PluginError(
                f"plugin '{theirs.plugin}' registered {new.kind} '{new.name}', the name of a "
                f"built-in (from '{ours.plugin}'): give yours another name, or replace the "
                f"built-in on purpose with register('{new.name}', cls, replaces_builtin=True)")
        raise PluginError(
            f"{new.kind} '{new.name}' is registered by two plugins: '{have.plugin}' and "
            f"'{new.plugin}'; uninstall one, or skip one with AUTOSTAGE_LOAD_PLUGINS")

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def has(self, kind: str, name: str) -> bool:
        return name in self.entries[kind]

    def get(self, kind: str, name: str) -> type[Component]:
        try:
            return self.entries[kind][name].cls
        except KeyError:
            raise PluginError(
                f"no {kind} named '{name}'; installed: {', '.join(self.names(kind))}"
            ) from None

    def create(self, kind: str, name: str, params: dict[str, Any] | None = None) -> Any:
        """An instance of the named component with `params` (validated by its fields)."""
        return self.get(kind, name)(**(params or {}))


def load_registry(entry_points: bool = True, plugins: Iterable[Any] = ()) -> Registry:
    """Build the host and collect everything its plugins register."""
    return Registry(plugin_manager(entry_points=entry_points, plugins=plugins))
