"""The README's examples work as written."""

import re
import types
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_plugin_example_registers_and_works():
    from autostage.host import load_registry

    block = re.search(r"```python\n# my_package/schedules.py\n(.*?)```", README.read_text(),
                      re.S).group(1)
    module = types.ModuleType("my_schedules")
    exec(compile(block, "README.md", "exec"), module.__dict__)
    registry = load_registry(plugins=[module])
    step = registry.create("lr_schedule", "step_halving", {"steps": 1, "gamma": 0.5})
    assert [step.multiplier(d, 100) for d in (0, 49, 50, 99)] == [1.0, 1.0, 0.5, 0.5]
    assert "my_schedules" in [p.name for p in registry.plugins]


def test_the_readme_commands_match_ci():
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    text = README.read_text()
    assert "python -m pytest -q" in text and "python -m pytest -q" in ci
    assert "pip install torch==2.13.0" in text and "torch==2.13.0" in ci


def test_the_readme_field_tables_match_the_plugins_declarations():
    from autostage.fieldtables import REFRESH, blocks, builtin_registry, refresh

    text = README.read_text(encoding="utf-8")
    specs = [spec for spec, _ in blocks(text)]
    assert {"dataset", "trainer.transformers"} <= set(specs), specs
    fresh = refresh(text, builtin_registry())
    stale = [spec for (spec, body), (_, new) in zip(blocks(text), blocks(fresh), strict=True)
             if body != new]
    assert not stale, (f"README.md's field tables ({', '.join(stale)}) differ from the "
                       f"plugins' field declarations: run `{REFRESH}` and commit the result")
    assert fresh == text
