"""Built-in text datasets: deterministic given a seed, no download needed except for `hf`."""

from __future__ import annotations

import csv
import json
import random
from abc import abstractmethod
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from autostage.components import Example, TextDataset
from autostage.errors import AutostageError
from autostage.hookspecs import hookimpl


def _split(items: list, split: str, val_fraction: float, seed: int) -> list:
    """A fixed train/val split (by position after a seeded shuffle)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(items) * val_fraction))
    chosen = order[:cut] if split == "val" else order[cut:]
    return [items[i] for i in sorted(chosen)]


class Pydoc(TextDataset):
    """CPython's own documentation topics (`pydoc_data.topics`, ~465k characters of English):
    real text with no download. `variant = "classify"` keeps the passages of the `classes`
    largest topics, each labelled with its topic's name (e.g. "specialnames", "compound"):
    which part of the docs a passage comes from."""

    variant: Literal["text", "classify"] = "text"
    passage_chars: int = Field(512, ge=32, le=100_000, description="characters per passage")
    classes: int = Field(4, ge=2, le=64, description="the largest topics classified (classify)")
    val_fraction: float = Field(0.1, gt=0, lt=1)

    def examples(self, split: str, seed: int) -> list[Example]:
        return list(_pydoc(self.variant, self.passage_chars, self.classes, self.val_fraction,
                           split))


@lru_cache(maxsize=16)
def _pydoc(variant: str, chars: int, classes: int, val_fraction: float,
           split: str) -> tuple[Example, ...]:
    from pydoc_data.topics import topics

    texts = {name: " ".join(text.split()) for name, text in topics.items()}  # hard-wrapped
    names = sorted(texts)
    if variant == "classify":
        # the largest topics, not groups of neighbours in name order ("assert" to "binary"):
        # such groups share no vocabulary, and neither a tiny BERT nor a bag-of-words
        # regression on 63-byte passages beat their majority class
        names = sorted(sorted(names, key=lambda n: -len(texts[n]))[:classes])
    passages = []
    for name in names:
        text = texts[name]
        for start in range(0, len(text) - chars // 4, chars):
            label = name if variant == "classify" else None
            passages.append(Example(text[start:start + chars], label))
    # the split is fixed (seed 0), whatever the trial's seed: val must be the same held-out
    # text for every trial of a study, or their evals would not compare
    return tuple(_split(passages, split, val_fraction, seed=0))


class Arith(TextDataset):
    """Seeded addition problems, e.g. `00417+03905=223400` with `reverse` answers written
    least-significant digit first (easier for a left-to-right model). Only the answer is
    scored; the prompt is context. `operand_digits` below `digits` makes an easier task in the
    same format (`00042+00017=950000`): a prerequisite whose skills sit at the target's
    positions."""

    digits: int = Field(3, ge=1, le=12, description="digits per operand (the format's width)")
    operand_digits: int | None = Field(None, ge=1, le=12,
                                       description="operands below 10**this (default: digits)")
    reverse: bool = Field(True, description="answer digits least-significant first")
    pad: bool = Field(True, description="zero-pad operands and answer to fixed width")
    train_size: int = Field(20_000, ge=10, le=10_000_000)
    val_size: int = Field(256, ge=8, le=100_000)

    @model_validator(mode="after")
    def _operands_fit(self) -> Arith:
        if (self.operand_digits or 0) > self.digits:
            raise ValueError(f"operand_digits ({self.operand_digits}) must be at most digits "
                             f"({self.digits}), the width operands are written in")
        return self

    def examples(self, split: str, seed: int) -> list[Example]:
        # val comes from its own fixed stream so every trial is scored on the same problems
        task = self.digits if self.operand_digits is None else \
            f"{self.digits}-{self.operand_digits}"
        rng = random.Random(f"arith-val-{task}" if split == "val" else f"{seed}-train")
        size = self.val_size if split == "val" else self.train_size
        return [self._problem(rng) for _ in range(size)]

    def _problem(self, rng: random.Random) -> Example:
        top = 10**(self.operand_digits or self.digits) - 1
        a, b = rng.randint(0, top), rng.randint(0, top)
        width = self.digits + 1
        answer = str(a + b).zfill(width) if self.pad else str(a + b)
        if self.reverse:
            answer = answer[::-1]
        fmt = f"0{self.digits}d" if self.pad else "d"
        return Example(text=answer, prompt=f"{a:{fmt}}+{b:{fmt}}=")


class Text(TextDataset):
    """A .txt file, or every .txt file in a folder, cut into passages."""

    path: str = Field(description="a .txt file or a folder of them")
    passage_chars: int = Field(512, ge=32, le=100_000)
    val_fraction: float = Field(0.1, gt=0, lt=1)

    def examples(self, split: str, seed: int) -> list[Example]:
        root = Path(self.path)
        files = sorted(root.rglob("*.txt")) if root.is_dir() else [root]
        if not files or not all(f.is_file() for f in files):
            raise AutostageError(f"dataset text: no .txt file at {self.path}")
        text = " ".join(" ".join(f.read_text(errors="replace").split()) for f in files)
        n = self.passage_chars
        passages = [Example(text[i:i + n]) for i in range(0, max(1, len(text) - n // 4), n)]
        return _split(passages, split, self.val_fraction, seed=0)


class _Records(TextDataset):
    """Shared by jsonl and csv: text and (optional) label fields named in the study. Labels
    are names (a JSON number becomes its text, e.g. "3")."""

    path: str
    text_field: str = "text"
    label_field: str | None = Field(None, description="set it for a classification task")
    val_fraction: float = Field(0.1, gt=0, lt=1)

    @abstractmethod
    def rows(self) -> list[dict]:
        """Every row of the file, as dicts."""

    def examples(self, split: str, seed: int) -> list[Example]:
        rows = self.rows()
        missing = [f for f in (self.text_field, self.label_field) if f and f not in rows[0]]
        if missing:
            raise AutostageError(f"{self.path}: no field {missing[0]!r}; fields: "
                                 f"{', '.join(rows[0])}")
        # label names, not ids: the trainer numbers them once for the whole study, so a class
        # keeps its id in a file that lacks another class
        examples = [Example(str(r[self.text_field]),
                            str(r[self.label_field]) if self.label_field else None)
                    for r in rows]
        return _split(examples, split, self.val_fraction, seed=0)


class JSONL(_Records):
    """One JSON object per line."""

    def rows(self) -> list[dict]:
        try:
            lines = Path(self.path).read_text().splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
        except (OSError, json.JSONDecodeError) as e:
            raise AutostageError(f"dataset jsonl: cannot read {self.path}: {e}") from None
        if not rows:
            raise AutostageError(f"dataset jsonl: {self.path} has no rows")
        return rows


class CSV(_Records):
    """A CSV file with a header row."""

    def rows(self) -> list[dict]:
        try:
            with open(self.path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            raise AutostageError(f"dataset csv: cannot read {self.path}: {e}") from None
        if not rows:
            raise AutostageError(f"dataset csv: {self.path} has no rows")
        return rows


class HF(TextDataset):
    """A dataset from the Hugging Face hub (needs `pip install datasets` and a network)."""

    name: str
    config: str | None = None
    train_split: str = "train"
    val_split: str = "validation"
    text_field: str = "text"
    label_field: str | None = None
    limit: int = Field(50_000, ge=1, description="examples read per split")

    def examples(self, split: str, seed: int) -> list[Example]:
        try:
            import datasets
        except ImportError:
            raise AutostageError("dataset hf needs the `datasets` package: "
                                 "pip install datasets") from None
        which = self.val_split if split == "val" else self.train_split
        try:
            data = datasets.load_dataset(self.name, self.config, split=f"{which}[:{self.limit}]")
        except Exception as e:  # offline, unknown name, ...: one clear line
            raise AutostageError(f"dataset hf: cannot load {self.name!r} ({which}): "
                                 f"{type(e).__name__}: {e}") from None
        return [Example(str(row[self.text_field]),
                        int(row[self.label_field]) if self.label_field else None)
                for row in data]


@hookimpl
def register_datasets(register):
    register("pydoc", Pydoc)
    register("arith", Arith)
    register("text", Text)
    register("jsonl", JSONL)
    register("csv", CSV)
    register("hf", HF)
