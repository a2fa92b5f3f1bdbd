"""The plugin authors' test kit (`autostage.testing`) depends only on the core: no module of
it imports the built-in plugins package, and the toy fake it runs trials on is core code
that needs neither Ray nor torch."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

from support import DOCS

import autostage.testing


def kit_modules() -> list[str]:
    return ["autostage.testing", *(f"autostage.testing.{m.name}"
                                   for m in pkgutil.iter_modules(autostage.testing.__path__))]


def imported_names(path: Path) -> set[str]:
    """Every module an import statement names, at any level of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_testing_kit_module_imports_the_builtin_plugins():
    modules = kit_modules()
    assert {"autostage.testing.fakes", "autostage.testing.contracts"} <= set(modules)
    for name in modules:
        module = importlib.import_module(name)
        plugins = {n for n in imported_names(Path(module.__file__))
                   if n.split(".")[0] == "autostage_plugins"}
        assert not plugins, f"{name} imports {sorted(plugins)}: use the registry instead"


def test_the_toy_fake_is_core_and_imports_neither_ray_nor_torch():
    heavy = {n.split(".")[0] for n in imported_names(Path(importlib.import_module(
        "autostage.toy").__file__))} & {"ray", "torch", "transformers", "autostage_plugins"}
    assert not heavy
    code = ("import sys, autostage.toy, autostage.testing; "
            "print(sorted(m for m in ('ray', 'torch', 'transformers', 'autostage_plugins') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_toy_plugin_registers_the_core_classes(registry):
    from autostage.toy import Toy, ToyTask

    assert registry.get("trainer", "toy") is Toy
    assert registry.get("dataset", "toy_task") is ToyTask


# --- the kit documents itself -------------------------------------------------------------

GUIDE = DOCS / "plugins.md"


def guide_testing_section() -> str:
    text = GUIDE.read_text()
    return text[text.index("## Testing a plugin"):text.index("## Debugging a plugin")]


def test_every_public_name_of_the_kit_has_a_docstring_of_its_own():
    import inspect

    undocumented = [name for name in autostage.testing.__all__
                    if callable(obj := getattr(autostage.testing, name))
                    and not (inspect.getdoc(obj) or "").strip()]
    assert undocumented == []
    helpers = [name for name in autostage.testing.__all__
               if inspect.isfunction(getattr(autostage.testing, name))]
    unannotated = [name for name in helpers
                   if inspect.signature(getattr(autostage.testing, name)).return_annotation
                   is inspect.Signature.empty]
    assert unannotated == [], "a helper's signature says what it returns"


def test_the_guide_documents_every_public_name_of_the_kit():
    section = guide_testing_section()
    missing = [name for name in autostage.testing.__all__ if f"`{name}" not in section]
    assert missing == []


def test_the_shapes_the_guide_gives_its_helpers():
    from autostage.decisions import Continue, Decision, History
    from autostage.testing import builtin, decisions, replay, run_toy_trial, script
    from autostage.trial import TrialResult

    fixed = builtin("stage_policy", "fixed")
    assert decisions(fixed, [3.0, 2.0]) == [Continue(), Continue()]  # bare decisions
    steps = replay(fixed, [("prereq", [3.0]), ("target", [2.0])])
    assert all(isinstance(h, History) and isinstance(d, Decision) for h, d in steps)
    # `decisions` scripts one stage, named "target", final; `stage=` and `final=` change it
    (history,) = script([("target", [1.0])])
    assert history.stages == ("target",) and history.final == "target"
    (history, _), = replay(fixed, [("general", [1.0])], final=False)
    assert history.final is None
    result = run_toy_trial(seed=0)
    assert isinstance(result, TrialResult) and not hasattr(result, "plan")
    assert list(dict.fromkeys(e.stage for e in result.evals)) == ["general", "prereq", "target"]
