"""The shipped examples and the plugin guide work as written: the example package and a
package written only from docs/plugins.md are pip-installed (into a private folder, never
this environment) and found, used in a study and tested with the contract suites; broken
installed plugins give one line naming them; every hook is in the guide."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from autostage.records import TrialStatus

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"
EXAMPLE = REPO / "examples" / "autostage-example"

# Three broken plugins, each its own installed distribution: (distribution, module source).
BROKEN = {
    "autostage-crash": "import fancy_cuda_kernels  # not installed: importing the plugin fails\n",
    "autostage-dupe": textwrap.dedent("""
        from autostage.hookspecs import hookimpl
        from autostage_plugins.optimizers import AdamW

        @hookimpl
        def register_optimizers(register):
            register("adamw", AdamW)  # the built-in's name
    """),
    "autostage-badfield": textwrap.dedent("""
        from autostage.hookspecs import hookimpl
        from autostage_plugins.optimizers import SGD

        class Tabled(SGD):
            table: dict[str, float] = {}  # not a type autostage can search

        @hookimpl
        def register_optimizers(register):
            register("tabled", Tabled)
    """),
}


def guide_files() -> dict[str, str]:
    """The guide's code blocks that open with a `# <path>` comment, by path."""
    blocks = re.findall(r"```(?:python|toml)\n# (\S+)\n(.*?)```", GUIDE.read_text(), re.S)
    return dict(blocks)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return root


def broken_package(root: Path, dist: str, source: str) -> Path:
    plugin = dist.removeprefix("autostage-")
    module = f"{plugin}_plugin"
    return write_package(root / dist, {
        "pyproject.toml": textwrap.dedent(f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"
            [project]
            name = "{dist}"
            version = "0.1.0"
            [project.entry-points.autostage]
            {plugin} = "{module}"
            [tool.setuptools]
            py-modules = ["{module}"]
        """),
        f"{module}.py": source,
    })


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package, the guide's package and the broken ones, pip-installed into a
    private folder that only the subprocesses below see (PYTHONPATH)."""
    root = tmp_path_factory.mktemp("plugins")
    example = shutil.copytree(EXAMPLE, root / "example", ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".*_cache"))
    guide = write_package(root / "guide", {**guide_files(), "src/my_plugin/__init__.py": ""})
    packages = [example, guide, *(broken_package(root, d, s) for d, s in BROKEN.items())]
    site = root / "site"
    # offline: build with this environment's setuptools when it has one
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    *isolation, "--target", str(site), *map(str, packages)],
                   check=True, capture_output=True)
    return SimpleNamespace(site=site, example=example, guide=guide)


def run(installed, *command: str, load: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run `python <command>` seeing the private plugins; `load` is AUTOSTAGE_LOAD_PLUGINS."""
    env = {**os.environ, "PYTHONPATH": str(installed.site), "AUTOSTAGE_LOAD_PLUGINS": load}
    env.pop("AUTOSTAGE_TRACE_PLUGINS", None)
    return subprocess.run([sys.executable, *command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def autostage(installed, *args: str, load: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return run(installed, "-m", "autostage.cli", *args, load=load, cwd=cwd)


# --- the example package ----------------------------------------------------------------


@pytest.mark.slow
def test_the_example_package_is_found_and_listed(installed):
    done = autostage(installed, "plugins", load="example")
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("example "))
    assert row.split()[1:3] == ["autostage-example", "0.1.0"]
    assert "lr_schedule: cyclic" in row and "stage_policy: good_enough" in row


@pytest.mark.slow
def test_the_example_study_validates_and_runs_a_trial_with_its_plugins(installed):
    study = str(EXAMPLE / "study.toml")
    done = autostage(installed, "validate", study, load="example")
    assert done.returncode == 0 and done.stdout.startswith("ok:"), done.stderr
    overrides = ["--set", "search.lr_schedule={cyclic = {cycles = 2}}",
                 "--set", "search.stage_policy={good_enough = {goal = 1.0}}"]
    done = autostage(installed, "trial", study, *overrides, load="example")
    assert done.returncode == 0, done.stderr
    assert "lr_schedule = cyclic" in done.stdout and "stage_policy = good_enough" in done.stdout


@pytest.mark.slow
def test_the_example_package_tests_pass_from_its_directory(installed):
    done = run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", load="example",
               cwd=installed.example)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


# --- a package written only from the guide ---------------------------------------------


def test_the_guide_gives_a_whole_package():
    files = guide_files()
    assert set(files) == {"pyproject.toml", "src/my_plugin/policies.py", "study.toml",
                          "tests/test_policies.py"}
    plugin = files["src/my_plugin/policies.py"].strip().splitlines()
    assert len(plugin) <= 30, "the guide promises a plugin in about 25 lines"


@pytest.mark.slow
def test_a_package_written_from_the_guide_is_found_and_used_in_a_study(installed):
    done = autostage(installed, "plugins", load="my-plugin")  # by distribution name
    assert done.returncode == 0 and "stage_policy: patience" in done.stdout, done.stderr
    study = str(installed.guide / "study.toml")
    done = autostage(installed, "trial", study, "--seed", "1", load="my-plugin")
    assert done.returncode == 0, done.stderr
    assert "stage_policy.patience.evals" in done.stdout and "completed" in done.stdout


@pytest.mark.slow
def test_the_guide_packages_tests_pass(installed):
    done = run(installed, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
               load="my-plugin", cwd=installed.guide)
    assert done.returncode == 0, done.stdout[-3000:]
    assert " passed" in done.stdout


# --- broken plugins, installed ----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("plugin", "says"), [
    ("crash", ["plugin 'crash' (from autostage-crash 0.1.0) failed to import",
               "fancy_cuda_kernels", "AUTOSTAGE_LOAD_PLUGINS"]),
    ("dupe", ["plugin 'dupe' registered optimizer 'adamw', the name of a built-in",
              "'optimizers'", "replaces_builtin=True"]),
    ("badfield", ["plugin 'badfield' (hook register_optimizers)", "field 'table'",
                  "not supported"]),
])
def test_a_broken_installed_plugin_is_one_line_naming_it(installed, plugin, says):
    done = autostage(installed, "plugins", load=plugin)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert all(s in done.stderr for s in says), done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_an_empty_load_list_skips_every_broken_plugin(installed):
    done = autostage(installed, "plugins", load="")
    assert done.returncode == 0, done.stderr
    assert "crash" not in done.stdout and "autostage-example" not in done.stdout


# --- the Python API example -------------------------------------------------------------


def test_the_python_api_example_runs_a_trial_and_prints_its_evals(capsys):
    example = runpy.run_path(str(REPO / "examples" / "python_api.py"), run_name="example")
    result = example["run_one"](seed=3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("config: ") and "optimizer=" in lines[0]
    assert len(lines) == 1 + len(result.evals) and result.status == TrialStatus.COMPLETED
    assert all(" tokens " in line and "-> " in line for line in lines[1:])


# --- the guide documents every hook and the catalogue -----------------------------------


def hooks_in_hookspecs() -> list[str]:
    tree = ast.parse((REPO / "autostage" / "hookspecs.py").read_text())
    return [f.name for f in tree.body if isinstance(f, ast.FunctionDef)
            and any(isinstance(d, ast.Name) and d.id == "hookspec" for d in f.decorator_list)]


def test_every_hook_is_documented_in_the_guide():
    hooks = hooks_in_hookspecs()
    assert "register_optimizers" in hooks and "report_figures" in hooks
    text = GUIDE.read_text()
    missing = [h for h in hooks if f"### `{h}(" not in text]
    assert missing == [], "each hook gets a section: its signature and when it is called"


def test_the_guide_lists_every_built_in(registry):
    text = GUIDE.read_text()
    kinds = ("optimizer", "lr_schedule", "stage_policy", "init", "sampler", "trial_scheduler")
    missing = [(kind, name) for kind in kinds for name, entry in registry.entries[kind].items()
               if registry.host.info[entry.plugin].builtin and f"`{name}`" not in text]
    assert missing == []


def test_the_readme_links_the_guide():
    assert "(docs/plugins.md)" in (REPO / "README.md").read_text()
