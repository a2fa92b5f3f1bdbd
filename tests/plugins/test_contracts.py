"""Every built-in passes the contract suite of its kind (autostage.testing): the same suites
a third-party plugin's tests inherit."""

from __future__ import annotations

import importlib.machinery
import json
import random
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from autostage.components import (
    Example,
    PreflightContext,
    TextDataset,
    TrialSetup,
    check_split,
    read_examples,
)
from autostage.errors import AutostageError
from autostage.host import load_registry
from autostage.testing import (
    BrancherContract,
    DatasetContract,
    InitContract,
    LRScheduleContract,
    OptimizerContract,
    SamplerContract,
    StagePolicyContract,
    TextDatasetContract,
    TrainerContract,
    TrialSchedulerContract,
    toy_setup,
)
from autostage.toy import ToyTask
from autostage_plugins.inits import Default

REGISTRY = load_registry()


def builtins(kind: str) -> list[str]:
    """Names the built-in plugins register (third-party plugins installed beside them are
    their authors' to test)."""
    return sorted(name for name, entry in REGISTRY.entries[kind].items()
                  if REGISTRY.host.info[entry.plugin].builtin)


# Built-ins whose contract tests train with torch (the transformers trainer; optuna's GP
# sampler fits a torch model): in the slow lane only.
SLOW = {("trainer", "transformers"), ("sampler", "gp")}


def params(kind: str) -> list[Any]:
    """`builtins(kind)` as fixture params, the SLOW ones marked slow."""
    return [pytest.param(name, marks=pytest.mark.slow) if (kind, name) in SLOW else name
            for name in builtins(kind)]


def every_builtin(kind: str) -> Any:
    """A `component` fixture that is each built-in of `kind` in turn, with default fields."""

    @pytest.fixture(params=params(kind))
    def component(self, request):
        return REGISTRY.create(kind, request.param, {})

    return component


def test_the_catalogue_is_complete():
    expected = {
        "optimizer": ["adafactor", "adagrad", "adam", "adamw", "lion", "rmsprop", "sgd"],
        "lr_schedule": ["constant", "cosine", "exponential", "inverse_sqrt", "linear",
                        "one_cycle", "step", "wsd"],
        "stage_policy": ["bandit", "budget_split", "fixed", "plateau", "rewind"],
        "init": ["default", "kaiming", "normal", "scaled_residual", "xavier_uniform"],
    }
    assert {kind: builtins(kind) for kind in expected} == expected


class TestOptimizers(OptimizerContract):
    component = every_builtin("optimizer")


class TestLRSchedules(LRScheduleContract):
    component = every_builtin("lr_schedule")


class TestStagePolicies(StagePolicyContract):
    component = every_builtin("stage_policy")


class TestInits(InitContract):
    component = every_builtin("init")

    @pytest.fixture
    def changes_parameters(self, component):
        return not isinstance(component, Default)


def tiny_gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                      n_positions=32))


@pytest.mark.slow
class TestInitsOnGPT2(TestInits):
    """The same suite on transformers' GPT-2 (Conv1D layers, a tied output head)."""

    @pytest.fixture
    def model_factory(self):
        return tiny_gpt2


class TestSamplers(SamplerContract):
    component = every_builtin("sampler")


class TestTrialSchedulers(TrialSchedulerContract):
    component = every_builtin("trial_scheduler")


BRANCHING = [n for n in builtins("trial_scheduler")
             if REGISTRY.create("trial_scheduler", n, {}).branching("m", "min") is not None]


class TestBranchers(BrancherContract):
    @pytest.fixture(params=BRANCHING)
    def component(self, request):
        return REGISTRY.create("trial_scheduler", request.param, {})


# --- datasets -------------------------------------------------------------------------------

# Built-in text dataset -> its configurations under the contract: (id, settings). A "path" is
# a file or folder `write_data` writes; `hf` reads a fake `datasets` module (no network).
TEXT_CASES: dict[str, list[tuple[str, dict]]] = {
    "pydoc": [("text", {}), ("classify", {"variant": "classify", "passage_chars": 200})],
    "arith": [("default", {}), ("small", {"digits": 1, "train_size": 50, "val_size": 8}),
              ("easier", {"digits": 4, "operand_digits": 2, "reverse": False, "pad": False}),
              ("regression", {"variant": "regression", "digits": 2, "train_size": 50})],
    "text": [("file", {"path": "corpus.txt", "passage_chars": 64}),
             ("folder", {"path": "corpus", "passage_chars": 64, "keep_newlines": True})],
    "jsonl": [("lm", {"path": "rows.jsonl"}),
              ("labelled", {"path": "rows.jsonl", "label_field": "label"})],
    "csv": [("labelled", {"path": "rows.csv", "label_field": "label", "val_fraction": 0.3})],
    "hf": [("lm", {"name": "fake/reviews"}),
           ("labelled", {"name": "fake/reviews", "label_field": "label"})],
}
# Built-in datasets that are no TextDataset (a trainer of their own reads them): id, settings,
# the data sources of the study around them.
OTHER_CASES: dict[str, list[tuple[str, dict, tuple[str, ...]]]] = {
    "toy_task": [("default", {}, ("data",)),
                 ("with a prerequisite", {"prerequisite": "prereq"}, ("prereq", "data"))],
}


def write_data(folder: Path) -> None:
    """The files the text, jsonl and csv cases read: distinct lines, so no passage repeats."""
    rng = random.Random(0)
    words = ["the", "a", "small", "large", "model", "reads", "writes", "every", "stage",
             "token", "learns", "fast", "slow"]
    lines = [f"Line {i}: " + " ".join(rng.choices(words, k=9)) + "." for i in range(120)]
    (folder / "corpus.txt").write_text("\n".join(lines))
    (folder / "corpus" / "more").mkdir(parents=True)
    (folder / "corpus" / "a.txt").write_text("\n".join(lines[:60]))
    (folder / "corpus" / "more" / "b.TXT").write_text("\n".join(lines[60:]))
    rows = [{"text": line, "label": ["comedy", "history", "tragedy"][i % 3]}
            for i, line in enumerate(lines[:40])]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "rows.csv").write_text("text,label\n" + "".join(f'"{r["text"]}",{r["label"]}\n'
                                                              for r in rows))


def fake_hf_datasets() -> types.ModuleType:
    """A stand-in for the `datasets` package: `load_dataset(name, config, split="train[:N]")`
    gives N rows of a made-up review set, its train and validation splits disjoint."""
    module = types.ModuleType("datasets")
    module.__spec__ = importlib.machinery.ModuleSpec("datasets", None)  # find_spec finds it

    def load_dataset(name: str, config: str | None = None, split: str = "train") -> list:
        which, _, limit = split.partition("[:")
        size = {"train": 30, "validation": 10}[which]
        rows = [{"text": f"{which} review {i}: {'good' if i % 2 else 'bad'} film",
                 "label": i % 2} for i in range(size)]
        return rows[:int(limit.rstrip("]"))] if limit else rows

    module.load_dataset = load_dataset
    return module


def test_every_builtin_dataset_has_contract_cases():
    text = [n for n in builtins("dataset") if issubclass(REGISTRY.get("dataset", n), TextDataset)]
    assert sorted(TEXT_CASES) == text, "add the built-in's configurations to TEXT_CASES"
    assert sorted(OTHER_CASES) == sorted(set(builtins("dataset")) - set(text))


class TestTextDatasets(TextDatasetContract):
    @pytest.fixture(params=[pytest.param((name, settings), id=f"{name}-{case}")
                            for name, cases in TEXT_CASES.items() for case, settings in cases])
    def case(self, request):
        return request.param

    @pytest.fixture
    def component(self, case, tmp_path, monkeypatch):
        name, settings = case
        write_data(tmp_path)
        if "path" in settings:
            settings = {**settings, "path": str(tmp_path / settings["path"])}
        if name == "hf":
            monkeypatch.setitem(sys.modules, "datasets", fake_hf_datasets())
        return REGISTRY.create("dataset", name, settings)

    @pytest.fixture
    def disjoint_splits(self, case):
        # arith draws train and val problems independently: a few coincide (with 1 digit,
        # there are only 100 problems)
        return case[0] != "arith"


def test_arith_splits_do_overlap_so_its_case_rightly_skips_that_check():
    from autostage_plugins.datasets import Arith

    small = Arith(digits=1, train_size=50, val_size=8)
    val = {(e.prompt, e.text) for e in small.examples("val", 0)}
    assert val & {(e.prompt, e.text) for e in small.examples("train", 0)}


def test_train_leaves_out_what_val_holds_and_preflight_says_when_nothing_is_left(tmp_path):
    from autostage_plugins.datasets import CSV, Pydoc

    # pydoc's topics repeat a passage (the "if" statement is in two): it was in both splits
    tiny = Pydoc(passage_chars=32)
    val = {e.text for e in tiny.examples("val", 0)}
    assert val and not val & {e.text for e in tiny.examples("train", 0)}
    (tmp_path / "rows.csv").write_text("text\nsame\nsame\nother\n")
    rows = CSV(path=str(tmp_path / "rows.csv"), val_fraction=0.3)
    assert [e.text for e in rows.examples("val", 0)] == ["same"]
    assert [e.text for e in rows.examples("train", 0)] == ["other"]
    (tmp_path / "rows.csv").write_text("text\nsame\nsame\n")
    assert [str(p) for p in rows.preflight(PreflightContext())] == [
        f"path: {tmp_path / 'rows.csv'}: every example repeats a held-out (val) one, and "
        "train leaves those out, so nothing is left to train on: give it more distinct text"]


class TestOtherDatasets(DatasetContract):
    @pytest.fixture(params=[pytest.param(c, id=f"{name}-{c[0]}")
                            for name, cases in OTHER_CASES.items() for c in cases])
    def case(self, request):
        return request.param

    @pytest.fixture
    def component(self, case):
        name = next(n for n, cases in OTHER_CASES.items() if case in cases)
        return REGISTRY.create("dataset", name, case[1])

    @pytest.fixture
    def preflight_context(self, case, component):
        return PreflightContext(sources=case[2], data={"data": component})


def test_toy_task_is_no_text_dataset_and_the_toy_trainer_needs_none():
    # the toy trainer reads only the curve's shape; TextDatasetContract is for text readers
    assert not isinstance(ToyTask(), TextDataset)


# --- the dataset contract catches what a trainer of text would trip on --------------------


class Fine(TextDataset):
    """A dataset that keeps the contract; the ones below break one rule each."""

    size: int = 20

    def examples(self, split: str, seed: int) -> list[Example]:
        check_split(split)
        start = 0 if split == "val" else 4
        items = [Example(f"text {i}", label=["a", "b"][i % 2]) for i in range(start, self.size)]
        items = items[:4] if split == "val" else items
        if split == "train":
            random.Random(seed).shuffle(items)
        return items


class Strings(Fine):
    def examples(self, split: str, seed: int) -> list:
        return [e.text for e in super().examples(split, seed)]


class Empty(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        return [] if split == "val" else super().examples(split, seed)


class Generated(Fine):
    def examples(self, split: str, seed: int) -> Any:
        return iter(super().examples(split, seed))


class SeededVal(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        items = super().examples("train" if split == "train" else "val", 0)
        return items if split == "train" else [Example(f"text {seed % 4}", "a")]


class Leaky(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        return super().examples("train", seed)  # val is train


class Unseeded(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        return super().examples(split, random.randrange(10**9))


class HalfLabelled(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        items = super().examples(split, seed)
        return [*items[:-1], Example(items[-1].text)]


class MixedLabels(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        items = super().examples(split, seed)
        return items if split == "train" else [Example(e.text, 1) for e in items]


class AnySplit(Fine):
    def examples(self, split: str, seed: int) -> list[Example]:
        return super().examples("val" if split == "val" else "train", seed)


class NoProblemList(Fine):
    def preflight(self, context: PreflightContext) -> Any:
        return None


CONTRACT = TextDatasetContract()
CONTEXT = PreflightContext(sources=("data",))


def test_a_dataset_keeping_the_contract_passes_every_check():
    ds = Fine()
    for split in ("train", "val"):
        CONTRACT.test_each_split_is_a_non_empty_list_of_examples(ds, split)
        CONTRACT.test_same_seed_same_examples(ds, split)
    CONTRACT.test_val_is_the_same_for_every_seed(ds)
    CONTRACT.test_no_val_example_is_a_train_example(ds, True)
    CONTRACT.test_labels_are_on_every_example_or_on_none(ds)
    CONTRACT.test_labels_are_names_or_ids_not_both(ds)
    CONTRACT.test_an_unknown_split_is_a_value_error_naming_it(ds, "test")
    CONTRACT.test_preflight_returns_a_list_of_problems(ds, CONTEXT)


@pytest.mark.parametrize(("dataset", "check", "says"), [
    (Strings(), "test_each_split_is_a_non_empty_list_of_examples",
     "examples() item 0 is a str ('text"),
    (Empty(), "test_each_split_is_a_non_empty_list_of_examples", "returned no examples"),
    (Generated(), "test_each_split_is_a_non_empty_list_of_examples",
     "returned a list_iterator"),
    (Unseeded(), "test_same_seed_same_examples", "changed between two calls"),
    (SeededVal(), "test_val_is_the_same_for_every_seed", "same held-out examples"),
    (Leaky(), "test_no_val_example_is_a_train_example", "val examples are also train"),
    (HalfLabelled(), "test_labels_are_on_every_example_or_on_none", "labelled examples"),
    (MixedLabels(), "test_labels_are_names_or_ids_not_both", "['int', 'str']"),
    (AnySplit(), "test_an_unknown_split_is_a_value_error_naming_it", "DID NOT RAISE"),
    (NoProblemList(), "test_preflight_returns_a_list_of_problems", "preflight returned"),
])
def test_a_dataset_breaking_the_contract_fails_the_check_that_says_so(dataset, check, says):
    args = {"test_each_split_is_a_non_empty_list_of_examples": ("val",),
            "test_same_seed_same_examples": ("train",),
            "test_no_val_example_is_a_train_example": (True,),
            "test_an_unknown_split_is_a_value_error_naming_it": ("test",),
            "test_preflight_returns_a_list_of_problems": (CONTEXT,)}.get(check, ())
    with pytest.raises((AssertionError, AutostageError, pytest.fail.Exception)) as caught:
        getattr(CONTRACT, check)(dataset, *args)
    assert says in str(caught.value)


def test_check_split_names_the_split_and_the_ones_there_are():
    assert check_split("train") == "train" and check_split("val") == "val"
    with pytest.raises(ValueError, match=r"no split 'test': a TextDataset's splits are "
                                         r"'train' and 'val'"):
        check_split("test")


@pytest.mark.parametrize(("example", "says"), [
    ("plain text", "item 0 is a str ('plain text'), not an Example: return "
                   "Example(text, label=None, prompt=\"\") from autostage.components"),
    ({"text": "x"}, "item 0 is a dict ({'text': 'x'}), not an Example"),
    (Example(b"bytes"), "item 0 has a text that is a bytes (b'bytes'), not a str"),
    (Example("x", prompt=None), "item 0 has a prompt that is a NoneType (None), not a str"),
    (Example("x", label=[1]), "item 0 has a label that is a list ([1]): give None, a class "
                              "name (str), a class id (int) or a regression target (float)"),
    (Example("x", label=True), "item 0 has a label that is a bool (True)"),
])
def test_read_examples_names_the_source_the_split_and_the_first_wrong_item(example, says):
    class Wrong(Fine):
        def examples(self, split: str, seed: int) -> list:
            return [example, *super().examples(split, seed)]

    with pytest.raises(AutostageError) as caught:
        read_examples(Wrong(), "train", 0, source="mail")
    assert str(caught.value).startswith("data source 'mail' (dataset Wrong, train split): "
                                        "examples() item 0 ")
    assert says in str(caught.value)


def test_read_examples_returns_a_list_of_what_a_good_dataset_gives():
    assert read_examples(Fine(), "val", 0) == list(Fine().examples("val", 0))
    with pytest.raises(AutostageError, match=r"^dataset Empty \(val split\): examples\(\) "
                                              r"returned no examples"):
        read_examples(Empty(), "val", 0)


def transformers_case() -> tuple[dict, TrialSetup, int]:
    from autostage_plugins.datasets import Arith

    # small data (tokenized at every start) and 4 steps of 8 x 32 tokens per training call
    model = {"n_layer": 1, "n_embd": 32, "n_head": 2, "context": 32, "batch_size": 8,
             "eval_batches": 2}
    data = {"prereq": Arith(digits=1, train_size=500), "target": Arith(digits=2, train_size=500)}
    setup = TrialSetup(seed=0, data=data, init=Default(),
                       objectives=dict.fromkeys(data, "causal_lm"))
    return model, setup, 1024


# trainer -> (its settings, a setup with data it reads, tokens per training call). The toy's
# eval noise is off: the contract needs evaluation to be a function of the weights.
TRAINER_CASES = {
    "toy": lambda: ({"noise": 0.0}, toy_setup(seed=0), 4096),
    "transformers": transformers_case,
}


class TestTrainers(TrainerContract):
    @pytest.fixture(params=params("trainer"))
    def case(self, request):
        assert request.param in TRAINER_CASES, (
            f"add a contract case for the built-in trainer '{request.param}' to TRAINER_CASES")
        settings, setup, tokens = TRAINER_CASES[request.param]()
        return REGISTRY.create("trainer", request.param, settings), setup, tokens

    @pytest.fixture
    def component(self, case):
        return case[0]

    @pytest.fixture
    def setup(self, case):
        return case[1]

    @pytest.fixture
    def train_tokens(self, case):
        return case[2]
