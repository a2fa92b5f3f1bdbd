"""The plugin guide's dataset example works as written: docs/plugins.md's `LabelledLines`
plugin registers, its own tests (the `TextDatasetContract` suite among them) are collected
and run here, and its study runs a trial through `autostage trial`."""

from __future__ import annotations

import random
import re
import sys
import types
from pathlib import Path

import pytest
from support.studies import tiny_lm_study

from autostage.cli import main
from autostage.components import TextDataset, check_split
from autostage.hookspecs import hookimpl
from autostage.host import load_registry
from autostage.testing import BrancherContract, made_up_points

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def guide_example(path: str) -> str:
    """The guide's code block that opens with `# Example: <path>`."""
    found = re.findall(r"```(?:python|toml)\n# Example: " + re.escape(path) + r"\n(.*?)```",
                       GUIDE.read_text(), re.S)
    assert len(found) == 1, f"docs/plugins.md has {len(found)} blocks '# Example: {path}'"
    return found[0]


def guide_module(name: str, path: str) -> types.ModuleType:
    """The guide's block for `path`, run as the module `name`."""
    module = types.ModuleType(name)
    module.__file__ = str(GUIDE)
    exec(compile(guide_example(path), f"docs/plugins.md: {path}", "exec"), module.__dict__)
    return module


# The plugin, importable as its tests import it (`from my_datasets.plugin import ...`).
PLUGIN = guide_module("my_datasets.plugin", "src/my_datasets/plugin.py")
_PACKAGE = types.ModuleType("my_datasets")
_PACKAGE.__path__ = []
_PACKAGE.plugin = PLUGIN
sys.modules.setdefault("my_datasets", _PACKAGE)
sys.modules.setdefault("my_datasets.plugin", PLUGIN)

# Its tests, as written: pytest collects the contract class and the functions from here.
GUIDE_TESTS = guide_module("test_labelled_lines", "tests/test_labelled_lines.py")
globals().update({k: v for k, v in vars(GUIDE_TESTS).items() if k.startswith(("Test", "test_"))})


def test_the_guides_tests_are_collected_here():
    from autostage.testing import TextDatasetContract

    assert issubclass(TestLabelledLines, TextDatasetContract)  # noqa: F821 (from the guide)
    assert callable(globals()["test_a_line_without_a_tab_is_a_problem_of_its_path"])


def registry_with_the_plugin():
    return load_registry(plugins=[PLUGIN])


def test_the_guides_dataset_plugin_registers(tmp_path):
    registry = registry_with_the_plugin()
    assert "my_datasets.plugin" in [p.name for p in registry.plugins]
    dataset = registry.create("dataset", "labelled_lines",
                              {"path": GUIDE_TESTS.write_mail(tmp_path / "mail.tsv")})
    assert isinstance(dataset, PLUGIN.LabelledLines)
    assert {e.label for e in dataset.examples("train", 0)} == {"spam", "ham"}


def trial(monkeypatch, tmp_path, study: str, *args: str) -> int:
    """`autostage trial` of `study` (written into `tmp_path`, run from there, beside the
    guide's mail.tsv), the guide's plugin installed."""
    registry = registry_with_the_plugin()
    monkeypatch.setattr("autostage.load_registry", lambda: registry, raising=False)
    monkeypatch.setattr("autostage.host.load_registry", lambda *a, **k: registry)
    monkeypatch.chdir(tmp_path)
    GUIDE_TESTS.write_mail(tmp_path / "mail.tsv")
    (tmp_path / "study.toml").write_text(study)
    return main(["trial", "study.toml", *args])


def test_a_toy_trial_reads_the_guides_study_with_its_dataset(monkeypatch, tmp_path, capsys):
    # the toy trainer reads no text (a default curve per source): this checks the study
    # file, the dataset's fields and preflight as a trial starts, in milliseconds
    study = guide_example("mail-study.toml")
    toy = re.sub(r"\[model\]\n.*?\n\n", '[model]\ntrainer = "toy"\n\n', study, flags=re.S)
    toy = toy.replace('metric = "eval.mail.accuracy"\nmode = "max"',
                      'metric = "eval.mail.loss"')
    assert trial(monkeypatch, tmp_path, toy) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "completed" in out and "eval.mail.loss" in out


def test_a_missing_file_is_the_guides_preflight_problem(monkeypatch, tmp_path, capsys):
    study = guide_example("mail-study.toml").replace('"mail.tsv"', '"post.tsv"')
    assert trial(monkeypatch, tmp_path, study) == 2
    assert f"data.mail.path: no such file: {tmp_path / 'post.tsv'}" in capsys.readouterr().err


@pytest.mark.slow
def test_the_guides_study_trains_a_classifier_on_its_dataset(monkeypatch, tmp_path, capsys):
    assert trial(monkeypatch, tmp_path, guide_example("mail-study.toml"), "--seed", "1") == 0, \
        capsys.readouterr()
    out = capsys.readouterr().out
    assert "optimizer.adamw.lr" in out and "eval.mail.accuracy" in out
    assert re.search(r"^completed — eval\.mail\.accuracy = [0-9.]+, ", out, re.M), out


class Strings(TextDataset):
    """A mistaken third-party dataset: plain strings where Examples belong."""

    def examples(self, split, seed):
        check_split(split)
        return [f"plain text {i}" for i in range(20)]


@hookimpl
def register_datasets(register):
    register("strings", Strings)


@pytest.mark.slow
def test_a_dataset_returning_strings_is_one_line_naming_it_not_an_attribute_error(
        monkeypatch, tmp_path, capsys):
    registry = load_registry(plugins=[sys.modules[__name__]])
    monkeypatch.setattr("autostage.load_registry", lambda: registry, raising=False)
    monkeypatch.setattr("autostage.host.load_registry", lambda *a, **k: registry)
    (tmp_path / "study.toml").write_text(tiny_lm_study(
        "study.name=strings", "study.metric=eval.words.loss",
        "model.n_embd=16", "model.context=16", "model.batch_size=2",
        "data.words.dataset=strings",
        "stage.words.data=words", "stage.words.tokens=64", "stage.words.final=true",
        data=("words",), stages=("words",), drop=("model.eval_batches", "search")))
    assert main(["trial", str(tmp_path / "study.toml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "AttributeError" not in err
    assert err.startswith("error: data source 'words' (dataset Strings, train split): "
                          "examples() item 0 is a str ('plain text 0'), not an Example")


# The guide's brancher: it holds the protocol, and registers as a trial scheduler.
BRANCHERS = guide_module("my_branchers.plugin", "src/my_branchers/plugin.py")


class TestTheGuidesBrancher(BrancherContract):
    @pytest.fixture
    def component(self):
        return BRANCHERS.Leader()


def test_the_guides_brancher_registers_as_a_trial_scheduler():
    registry = load_registry(plugins=[BRANCHERS])
    leader = registry.create("trial_scheduler", "leader", {"fresh": 0.0})
    brancher = leader.branching("eval.target.loss", "min")
    points = made_up_points()
    for p in points:
        brancher.see(p)
    best = brancher.propose(lambda p: True, random.Random(0))
    furthest = [p for p in points if p.final_evals == 3]
    assert best is min(furthest, key=lambda p: p.ev.current["eval.target.loss"])
