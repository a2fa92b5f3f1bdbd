"""The fast lane (`python -m pytest -m "not slow"`) stays fast: every test that starts Ray
(through the session fixture in conftest.py, directly or through a fixture of its own module
or of a folder's conftest.py) or imports torch or transformers is marked slow — by a decorator,
its class or its module's `pytestmark`. Every test file under tests/ is read, each folder's
too, from its syntax (ast), so nothing here imports or runs them."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).parent
HEAVY_MODULES = ("torch", "transformers", "ray", "autostage_plugins.transformers_trainer")


def imports_ray(function: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names)
        or isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray"
        for node in ast.walk(function)
    )


def conftest_fixtures() -> dict[str, ast.FunctionDef]:
    """The functions of every conftest.py under tests/ (tests/conftest.py and any folder's)."""
    return {node.name: node for path in sorted(TESTS.rglob("conftest.py"))
            for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)}


def ray_fixtures() -> set[str]:
    """The conftest fixtures that start Ray."""
    return {name for name, node in conftest_fixtures().items() if imports_ray(node)}


def heavy_imports(node: ast.AST) -> list[str]:
    """Heavy modules imported anywhere inside `node`."""
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            names += [a.name for a in sub.names]
        elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
            names.append(sub.module)
    return [n for n in names if any(n == h or n.startswith(h + ".") for h in HEAVY_MODULES)]


def is_slow_mark(node: ast.AST) -> bool:
    """`pytest.mark.slow`, called or not, or a list/tuple holding one."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(is_slow_mark(e) for e in node.elts)
    if isinstance(node, ast.Call):
        node = node.func
    return isinstance(node, ast.Attribute) and node.attr == "slow" and \
        ast.unparse(node.value).endswith("mark")


def marked_slow(body: list[ast.stmt]) -> bool:
    """A `pytestmark = ...slow...` among these statements (a module's or a class's)."""
    return any(isinstance(s, ast.Assign) and any(getattr(t, "id", None) == "pytestmark"
                                                 for t in s.targets) and is_slow_mark(s.value)
               for s in body)


def decorated_slow(node: ast.FunctionDef | ast.ClassDef) -> bool:
    return any(is_slow_mark(d) for d in node.decorator_list)


def collected_tests(tree: ast.Module) -> Iterator[tuple[ast.FunctionDef, bool]]:
    """Each test function, and whether it or an enclosing class is marked slow."""
    def walk(body: list[ast.stmt], slow: bool) -> Iterator[tuple[ast.FunctionDef, bool]]:
        for node in body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                yield from walk(node.body, slow or decorated_slow(node) or marked_slow(node.body))
            elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                yield node, slow or decorated_slow(node)

    yield from walk(tree.body, marked_slow(tree.body))


def uses_ray(function: ast.FunctionDef, ray: set[str],
             fixtures: dict[str, ast.FunctionDef]) -> bool:
    """Whether `function` asks for a Ray fixture, directly or through its module's fixtures."""
    seen: set[str] = set()
    todo = [a.arg for a in function.args.args]
    while todo:
        name = todo.pop()
        if name in ray:
            return True
        if name in fixtures and name not in seen:
            seen.add(name)
            todo += [a.arg for a in fixtures[name].args.args]
    return False


def unmarked_heavy_tests() -> list[str]:
    ray = ray_fixtures()
    assert ray, "conftest.py should have a fixture that starts Ray"
    shared = conftest_fixtures()
    problems = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        fixtures = shared | {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                             and not n.name.startswith("test")}
        top = [f"imports {name} at module level" for s in tree.body
               if isinstance(s, (ast.Import, ast.ImportFrom)) for name in heavy_imports(s)]
        for function, slow in collected_tests(tree):
            if slow:
                continue
            why = list(top)
            if uses_ray(function, ray, fixtures):
                why.append("starts Ray")
            why += [f"imports {name}" for name in heavy_imports(function)]
            if why:
                problems.append(f"{path.relative_to(TESTS)}::{function.name} ({', '.join(why)})")
    return problems


def test_tests_that_start_ray_or_import_torch_are_marked_slow():
    assert unmarked_heavy_tests() == [], (
        "mark these @pytest.mark.slow (or their module: pytestmark = pytest.mark.slow), "
        "so that `pytest -m 'not slow'` stays fast")


def test_the_check_sees_a_ray_fixture_and_the_marks(tmp_path):
    tree = ast.parse(
        "import pytest\n"
        "@pytest.fixture\ndef helper(ray_session): ...\n"
        "def test_ray(ray_session): ...\n"
        "def test_through_a_fixture(helper): ...\n"
        "def test_torch():\n    import torch\n"
        "@pytest.mark.slow\ndef test_marked(ray_session): ...\n"
        "@pytest.mark.slow\nclass TestMarked:\n    def test_torch(self):\n        import torch\n"
        "def test_light(tmp_path): ...\n")
    fixtures = {n.name: n for n in tree.body
                if isinstance(n, ast.FunctionDef) and not n.name.startswith("test")}
    flagged = [f.name for f, slow in collected_tests(tree) if not slow and (
        uses_ray(f, {"ray_session"}, fixtures) or heavy_imports(f))]
    assert flagged == ["test_ray", "test_through_a_fixture", "test_torch"]
    module = ast.parse("import pytest\npytestmark = [pytest.mark.slow]\ndef test_x(): ...\n")
    assert [slow for _, slow in collected_tests(module)] == [True]
