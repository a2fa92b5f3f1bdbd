"""How autostage is installed and what CI installs: the user's install has no test tooling;
every dependency range stops before a release CI has not tested; CI runs the suite with the
versions pinned in .ci/constraints.txt, then tests the newest releases the ranges allow and
fails loudly when they break (a release that breaks autostage is seen in CI, not by users)."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from support import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
CI = (REPO / ".ci" / "run").read_text()


def pins() -> dict[str, Version]:
    lines = (REPO / ".ci" / "constraints.txt").read_text().splitlines()
    return {(r := Requirement(line)).name.lower(): Version(next(iter(r.specifier)).version)
            for line in lines if line.strip() and not line.startswith("#")}


def quick_start() -> list[str]:
    """The shell blocks of README's Quick start section."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_users_install_has_no_test_tooling_and_the_tests_install_it():
    blocks = quick_start()
    install = next(b for b in blocks if "pip install" in b)
    assert "pip install -e ." in install and "[dev]" not in install, install
    tests = [b for b in blocks if "pytest" in b]
    assert tests and any('pip install -e ".[dev]"' in b for b in tests), blocks


def test_every_dependency_range_stops_before_an_untested_major():
    requirements = [Requirement(r) for r in PYPROJECT["dependencies"]]
    requirements += [Requirement(r) for extra in ("hf", "trackers", "bench")
                     for r in PYPROJECT["optional-dependencies"][extra]]
    unbounded = [str(r) for r in requirements
                 if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert not unbounded, f"give these an upper bound: {unbounded}"


def test_the_ci_pins_lie_in_the_ranges_and_cover_every_dependency():
    """A pin outside its range would test a version users cannot install; a dependency
    without a pin would be tested at whatever version the day's install picks."""
    pinned = pins()
    requirements = [Requirement(r) for r in PYPROJECT["dependencies"]] + \
        [Requirement(r) for r in PYPROJECT["optional-dependencies"]["dev"]]
    missing = [r.name for r in requirements if r.name.lower() not in pinned]
    assert not missing, f"pin these in .ci/constraints.txt: {missing}"
    outside = [f"{r.name}=={pinned[r.name.lower()]} (range {r.specifier})" for r in requirements
               if not r.specifier.contains(pinned[r.name.lower()], prereleases=True)]
    assert not outside, outside
    assert pinned["torch"] == Version("2.13.0")  # the README's `pip install torch==2.13.0`


def test_ci_installs_the_pins_before_the_suite_and_the_newest_releases_after():
    install = CI.index('pip install --quiet -e ".[dev]" -c .ci/constraints.txt')
    suite = CI.index("python -m pytest -q    # the README's test command")
    newest = CI.index("--upgrade --upgrade-strategy eager")
    assert install < suite < newest
    assert CI.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in CI


def newest_step() -> str:
    """The last step of .ci/run: upgrade, list what is newer, test."""
    return "set -euo pipefail\n" + CI[CI.index('tested="$(mktemp)"'):]


@pytest.mark.parametrize("pytest_rc", [0, 1])
def test_the_newest_release_step_fails_loudly(tmp_path, pytest_rc):
    """Run the step with a stand-in `python` (pip upgrades optuna 5.1.0 to 5.2.0; pytest
    passes or fails): a failure ends CI with a line saying what to do."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f"""#!/usr/bin/env bash
case "$*" in
  *"pip freeze"*) [ -e {tmp_path}/upgraded ] && echo optuna==5.2.0 || echo optuna==5.1.0
                  echo rich==15.0.0 ;;
  *"pip install"*) touch {tmp_path}/upgraded ;;
  *pytest*) echo "pytest $*" >> {tmp_path}/ran; exit {pytest_rc} ;;
esac
""")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", newest_step()], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "optuna==5.2.0" in done.stdout and "rich" not in done.stdout, done.stdout
    ran = (tmp_path / "ran").read_text()
    if pytest_rc:
        assert done.returncode == 1
        assert "CI FAILED: the newest releases the ranges in pyproject.toml allow" in done.stderr
        assert len(ran.splitlines()) == 1  # the first failure ends the step
    else:
        assert done.returncode == 0, done.stderr
        assert '-m pytest -q -m not slow' in ran and "tests/search/test_internals.py" in ran
