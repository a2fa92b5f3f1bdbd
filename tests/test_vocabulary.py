"""One meaning per word: retired names stay retired, trial statuses are TrialStatus members, and
metric/parameter keys are parsed in `autostage.keys` only (docs/vocabulary.md)."""

import ast
import subprocess
from pathlib import Path

import pytest

from autostage.records import TrialStatus

REPO = Path(__file__).resolve().parents[1]

# retired name -> what replaced it (say it in the failure, so the fix is obvious)
RETIRED = {
    "StagePlan": "StageVisit (autostage.components)",
    "StageRun": "StageVisit (autostage.components)",
    "final_value": "TrialRecord.ranked_value",
    "eval_record": "Eval.to_json / EvalRecord",
    "autostage.runs": "autostage.commands",
    "BuiltTrial": "prepare_trial -> ReadyTrial",
    "RANKED": "TrialStatus.ranked",
    "FINISHED": "TrialStatus.finished",
}


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard",
                          *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / line for line in out.stdout.splitlines() if (REPO / line).exists()]


def source_files() -> list[Path]:
    return tracked("autostage/*.py", "plugins/*.py")


@pytest.mark.parametrize("name", sorted(RETIRED))
def test_a_retired_name_does_not_come_back(name):
    skip = {Path(__file__).resolve(), (REPO / "docs" / "vocabulary.md").resolve()}
    files = [p for p in tracked("*.py", "*.md", "*.toml") if p.resolve() not in skip]
    found = [f"{p.relative_to(REPO)}:{i}" for p in files
             for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
             if _names(line, name)]
    assert not found, f"'{name}' was retired; use {RETIRED[name]}. Found at: {found}"


def _names(line: str, name: str) -> bool:
    import re

    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", line) is not None


STATUSES = {s.value for s in TrialStatus}


def test_trial_statuses_are_written_as_trial_status_members():
    """A status string compared, listed or used as a key outside autostage/records.py would
    be a second definition of what the statuses are."""
    found = []
    for path in source_files():
        if path.name == "records.py" and path.parent.name == "autostage":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            for constant in _status_uses(node):
                found.append(f"{path.relative_to(REPO)}:{constant.lineno} {constant.value!r}")
    assert not found, f"use autostage.records.TrialStatus instead of: {found}"


def _status_uses(node: ast.AST) -> list[ast.Constant]:
    if isinstance(node, ast.Compare):
        parts = [node.left, *node.comparators]
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        parts = node.elts
    elif isinstance(node, ast.Dict):
        parts = [k for k in node.keys if k is not None]
    else:
        return []
    return [p for p in parts if isinstance(p, ast.Constant) and p.value in STATUSES]


# `--set a.b=1` names a path in the TOML document, not a metric or parameter key
SPLIT_ALLOWED = {("autostage/spec.py", "apply_overrides"),
                 # `--fields KIND.NAME` names a component, not a metric or parameter key
                 ("autostage/fieldtables.py", "resolve")}


def test_keys_are_split_in_the_keys_module_only():
    found = []
    for path in source_files():
        rel = str(path.relative_to(REPO))
        if rel == "autostage/keys.py":
            continue
        for owner, node in _calls(ast.parse(path.read_text()), "<module>"):
            if _splits_on_dot(node) and (rel, owner) not in SPLIT_ALLOWED:
                found.append(f"{rel}:{node.lineno} in {owner}")
    assert not found, f"parse metric and parameter keys with autostage.keys: {sorted(set(found))}"


def _calls(node: ast.AST, owner: str):
    """(innermost enclosing function name, node) for every node under `node`."""
    for child in ast.iter_child_nodes(node):
        inner = child.name if isinstance(child, ast.FunctionDef) else owner
        yield inner, child
        yield from _calls(child, inner)


def _splits_on_dot(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("split", "rsplit", "partition", "rpartition")
            and bool(node.args) and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == ".")


def test_every_word_of_the_vocabulary_is_defined_once():
    text = (REPO / "docs" / "vocabulary.md").read_text().split("## Retired names")[0]
    rows = [line.split("|")[1].strip() for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| word") and "---" not in line]
    words = [w.strip("`* ") for w in rows]
    assert len(words) == len(set(words)), "a word defined twice"
    for word in ("stage visit", "TrialStatus", "EvalRecord", "TrialRecord", "ranked value",
                 "outcome", "run directory", "charged tokens"):
        assert word in words, f"docs/vocabulary.md does not define '{word}'"
