"""The dataset contracts: what any data source must be (`DatasetContract`, for a `Dataset`),
and what the trainers that read text rely on (`TextDatasetContract`, for a `TextDataset`).

    class TestLines(TextDatasetContract):
        @pytest.fixture
        def component(self, tmp_path):
            (tmp_path / "lines.txt").write_text(...)
            return Lines(path=str(tmp_path / "lines.txt"))
"""

from __future__ import annotations

from typing import Any

import pytest

from autostage.components import (
    SPLITS,
    Dataset,
    Example,
    PreflightContext,
    TextDataset,
    read_examples,
)
from autostage.errors import Problem
from autostage.testing.contracts import ComponentContract


class DatasetContract(ComponentContract):
    """Any data source (a `Dataset`, e.g. the toy trainer's `toy_task`): a component whose
    `preflight` returns a list of problems (`Problem`s or strings) and finds none in the
    configuration under test. A dataset of text for real trainers: `TextDatasetContract`.

    Fixtures: `component` (the dataset, configured as a study would configure it: write the
    files it reads under `tmp_path`); optionally `preflight_context` (the rest of the study
    its `preflight` sees; default: a study whose one data source, "data", is this dataset).
    """

    @pytest.fixture
    def preflight_context(self, component: Dataset) -> PreflightContext:
        return PreflightContext(sources=("data",), data={"data": component})

    def test_is_a_dataset(self, component: Any) -> None:
        assert isinstance(component, Dataset), "a data source subclasses " \
            "autostage.components.Dataset (or TextDataset)"

    def test_preflight_returns_a_list_of_problems(self, component: Any,
                                                  preflight_context: PreflightContext) -> None:
        problems = component.preflight(preflight_context)
        assert isinstance(problems, list), f"preflight returned {type(problems).__name__}: " \
            "return a list of Problem(field, message)s or strings ([] when all is well)"
        assert all(isinstance(p, Problem | str) for p in problems), problems

    def test_preflight_finds_nothing_wrong_with_a_configuration_that_works(
            self, component: Any, preflight_context: PreflightContext) -> None:
        assert component.preflight(preflight_context) == []


def _inputs(examples: Any) -> set[tuple[str, str]]:
    """What a model sees of each example: its prompt and text (a label is not an input)."""
    return {(e.prompt, e.text) for e in examples}


class TextDatasetContract(DatasetContract):
    """A `TextDataset`, as the transformers trainer reads it (and any trainer of text may):

    - `examples(split, seed)` for "train" and "val" is a non-empty list of
      `Example(text, label=None, prompt="")`s: `text` and `prompt` strings, `label` None, a
      class name (str), a class id (int) or a regression target (float) — what
      `autostage.components.read_examples`, which the trainer reads through, accepts;
    - the same split and seed give the same examples, also from a copy rebuilt from its
      fields (as a Ray worker rebuilds it);
    - "val" is the same for every seed: every trial of a study is judged on the same
      held-out examples;
    - no val example (its prompt and text) is also a train example, for any seed — unless
      the `disjoint_splits` fixture says False (a dataset that draws both splits from a
      small space, as `arith` does, cannot promise it);
    - labels are on every example of both splits or on none (a classifier trains on train
      and scores val), all names, all ids or all targets;
    - any other split ("test", "validation", "Train") is a ValueError naming it
      (`autostage.components.check_split` raises it);

    and `DatasetContract`'s checks of `preflight`. Fixtures: `component`; optionally
    `preflight_context`, `disjoint_splits`.
    """

    SEEDS = (0, 1, 12345)
    UNKNOWN_SPLITS = ("test", "validation", "Train")

    @pytest.fixture
    def disjoint_splits(self) -> bool:
        return True

    @pytest.fixture(params=SPLITS)
    def split(self, request: Any) -> str:
        return request.param

    def test_is_a_text_dataset(self, component: Any) -> None:
        assert isinstance(component, TextDataset), "trainers of text read TextDatasets: " \
            "subclass autostage.components.TextDataset and give it examples(split, seed)"

    def test_each_split_is_a_non_empty_list_of_examples(self, component: Any, split: str) -> None:
        # an AutostageError naming the first item that is not an Example, as in a trial
        examples = read_examples(component, split, 0)
        assert all(isinstance(e, Example) for e in examples)

    def test_same_seed_same_examples(self, component: Any, split: str) -> None:
        rebuilt = type(component)(**component.model_dump())
        for seed in self.SEEDS[:2]:
            first = list(component.examples(split, seed))
            assert list(component.examples(split, seed)) == first, \
                f"examples({split!r}, {seed}) changed between two calls"
            assert list(rebuilt.examples(split, seed)) == first, \
                f"examples({split!r}, {seed}) changed in a copy rebuilt from its fields"

    def test_val_is_the_same_for_every_seed(self, component: Any) -> None:
        val = list(component.examples("val", self.SEEDS[0]))
        for seed in self.SEEDS[1:]:
            assert list(component.examples("val", seed)) == val, (
                f"examples('val', {seed}) differs from examples('val', {self.SEEDS[0]}): every "
                "trial of a study must be judged on the same held-out examples, so the seed "
                "may shuffle train but not choose val")

    def test_no_val_example_is_a_train_example(self, component: Any,
                                               disjoint_splits: bool) -> None:
        if not disjoint_splits:
            pytest.skip("disjoint_splits is False: this dataset cannot promise it")
        val = _inputs(component.examples("val", 0))
        for seed in self.SEEDS[:2]:
            leaked = sorted(_inputs(component.examples("train", seed)) & val)
            assert leaked == [], (
                f"{len(leaked)} val examples are also train examples (seed {seed}), e.g. "
                f"{leaked[0]!r}: the evals would score what the model trained on. (A "
                "dataset that cannot promise disjoint splits sets the disjoint_splits "
                "fixture to False.)")

    def test_labels_are_on_every_example_or_on_none(self, component: Any) -> None:
        examples = {s: list(component.examples(s, 0)) for s in SPLITS}
        labelled = {s: sum(e.label is not None for e in ex) for s, ex in examples.items()}
        everywhere = all(labelled[s] == len(examples[s]) for s in SPLITS)
        assert everywhere or not any(labelled.values()), (
            f"labelled examples per split: {labelled} of "
            f"{ {s: len(ex) for s, ex in examples.items()} }: a classifier needs a label on "
            "every example of both splits; a language-modelling source needs none")

    def test_labels_are_names_or_ids_not_both(self, component: Any) -> None:
        kinds = {type(e.label).__name__ for s in SPLITS for e in component.examples(s, 0)
                 if e.label is not None}
        assert len(kinds) <= 1, f"labels of types {sorted(kinds)}: give class names (str), " \
            "class ids (int) or regression targets (float), one kind"

    @pytest.mark.parametrize("unknown", UNKNOWN_SPLITS)
    def test_an_unknown_split_is_a_value_error_naming_it(self, component: Any,
                                                          unknown: str) -> None:
        with pytest.raises(ValueError) as caught:
            component.examples(unknown, 0)
        assert unknown in str(caught.value), "name the split asked for: check_split(split)"
