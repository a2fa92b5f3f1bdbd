"""Built-in text datasets: deterministic given a seed, no download needed except for `hf`."""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import json
import math
import os
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from autostage.components import (
    Example,
    LocalPath,
    PathOrName,
    PreflightContext,
    TextDataset,
    check_split,
)
from autostage.errors import AutostageError, Problem
from autostage.hookspecs import hookimpl


def label_number(label: object) -> float | None:
    """A label as a regression target: a finite number, or a name that reads as one ("3.5",
    " -2e3 " — a csv gives every label as text); None for anything else (a bool too)."""
    if isinstance(label, bool) or not isinstance(label, int | float | str):
        return None
    try:
        number = float(label)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _regressed(dataset: TextDataset, context: PreflightContext) -> bool:
    """Whether a regression stage trains on or evaluates `dataset` (it is the study's data
    source of the names it is configured under)."""
    names = [n for n, d in context.data.items() if d is dataset]
    return any(context.objectives.get(n) == "regression" for n in names)


def _split(items: list, split: str, val_fraction: float, seed: int) -> list:
    """A fixed train/val split (by position after a seeded shuffle)."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(items) * val_fraction))
    chosen = order[:cut] if split == "val" else order[cut:]
    return [items[i] for i in sorted(chosen)]


def _examples_split(examples: list[Example], split: str, val_fraction: float) -> list[Example]:
    """`_split` with a fixed seed (0), so val is the same held-out set for every trial; train
    leaves out an example whose prompt and text a val example also has (a passage or row that
    the data holds twice), so the evals never score what was trained on."""
    val = _split(examples, "val", val_fraction, seed=0)
    if split == "val":
        return val
    held_out = {(e.prompt, e.text) for e in val}
    return [e for e in _split(examples, "train", val_fraction, seed=0)
            if (e.prompt, e.text) not in held_out]


class Pydoc(TextDataset):
    """CPython's own documentation topics (`pydoc_data.topics`, ~465k characters of English):
    real text with no download. `variant = "classify"` keeps the passages of the `classes`
    largest topics, each labelled with its topic's name (e.g. "specialnames", "compound"):
    which part of the docs a passage comes from."""

    variant: Literal["text", "classify"] = Field("text", description="\"classify\": the "
                                                 "passages of the `classes` largest topics, "
                                                 "labelled by topic")
    passage_chars: int = Field(512, ge=32, le=100_000, description="characters per passage")
    classes: int = Field(4, ge=2, le=64, description="the largest topics classified (classify)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the share held out: the "
                                "val split evals score (the same for every trial)")

    def examples(self, split: str, seed: int) -> list[Example]:
        check_split(split)
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
    # text for every trial of a study, or their evals would not compare. Topics repeat
    # passages (the "if" statement is in two of them): train leaves out val's.
    return tuple(_examples_split(passages, split, val_fraction))


class Arith(TextDataset):
    """Seeded addition problems, e.g. `00417+03905=223400` with `reverse` answers written
    least-significant digit first (easier for a left-to-right model). Only the answer is
    scored; the prompt is context. `operand_digits` below `digits` makes an easier task in the
    same format (`00042+00017=950000`): a prerequisite whose skills sit at the target's
    positions. Train and val problems are drawn independently, so a few coincide (with 1-digit
    operands there are only 100 problems): it cannot promise disjoint splits.
    `variant = "regression"`: the problem as the text (`00417+03905`), labelled with its sum
    over 10**digits (`0.4322`): a number a small model reads off the digits, for a
    regression stage."""

    variant: Literal["text", "regression"] = Field(
        "text", description="\"regression\": the problem as the text, labelled with its sum "
        "over 10**digits (0 to 2)")
    digits: int = Field(3, ge=1, le=12, description="digits per operand (the format's width)")
    operand_digits: int | None = Field(None, ge=1, le=12,
                                       description="operands below 10**this (default: digits)")
    reverse: bool = Field(True, description="answer digits least-significant first")
    pad: bool = Field(True, description="zero-pad operands and answer to fixed width")
    train_size: int = Field(20_000, ge=10, le=10_000_000,
                            description="problems to train on (drawn from the trial's seed)")
    val_size: int = Field(256, ge=8, le=100_000,
                          description="held-out problems (the same for every trial)")

    @model_validator(mode="after")
    def _operands_fit(self) -> Arith:
        if (self.operand_digits or 0) > self.digits:
            raise ValueError(f"operand_digits ({self.operand_digits}) must be at most digits "
                             f"({self.digits}), the width operands are written in")
        return self

    def examples(self, split: str, seed: int) -> list[Example]:
        check_split(split)
        # val comes from its own fixed stream so every trial is scored on the same problems
        task = self.digits if self.operand_digits is None else \
            f"{self.digits}-{self.operand_digits}"
        rng = random.Random(f"arith-val-{task}" if split == "val" else f"{seed}-train")
        size = self.val_size if split == "val" else self.train_size
        return [self._problem(rng) for _ in range(size)]

    def _problem(self, rng: random.Random) -> Example:
        top = 10**(self.operand_digits or self.digits) - 1
        a, b = rng.randint(0, top), rng.randint(0, top)
        fmt = f"0{self.digits}d" if self.pad else "d"
        if self.variant == "regression":
            # scaled to 0-2 whatever the width: a regression head starts near that scale
            return Example(text=f"{a:{fmt}}+{b:{fmt}}", label=(a + b) / 10**self.digits)
        width = self.digits + 1
        answer = str(a + b).zfill(width) if self.pad else str(a + b)
        if self.reverse:
            answer = answer[::-1]
        return Example(text=answer, prompt=f"{a:{fmt}}+{b:{fmt}}=")


class _Bad(AutostageError):
    """Problems with fields of a dataset's own table: what `preflight` returns and `examples`
    raises — one reading of the files for both."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _all_held_out(dataset: TextDataset) -> list[Problem]:
    """A problem when the train split is empty: every example repeats a held-out one."""
    if dataset.examples("train", 0):
        return []
    return [Problem("path", f"{dataset.path}: every example repeats a held-out (val) one, "
                    "and train leaves those out, so nothing is left to train on: give it more "
                    "distinct text")]


def _bad(field: str, message: str) -> _Bad:
    return _Bad([Problem(field, message)])


def _relative(path: str) -> str:
    """`path`, and for a relative one where it was looked for."""
    return path if Path(path).is_absolute() else f"{path} (relative to {os.getcwd()})"


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _bad("encoding", f"no text encoding named {encoding!r}; e.g. \"utf-8\", "
                   "\"latin-1\", \"cp1252\", \"utf-16\"") from None


def _decode(path: Path, encoding: str) -> str:
    """The text of `path` in `encoding`, strictly: a byte that is not valid in it is one error
    naming the file and the byte's offset. A leading byte-order mark is dropped."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise _bad("path", f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _bad("encoding", f"{path} is not valid {encoding}: byte 0x{data[e.start]:02x} "
                   f"at offset {e.start} (line {line}); name the file's encoding, e.g. "
                   "encoding = \"latin-1\" (or \"cp1252\" for Windows text)") from None
    return text.removeprefix("\ufeff")  # a BOM marks the encoding; it is not text


def _stamp(files: list[Path]) -> tuple:
    """What the cached reading of `files` is keyed by: a file changed since is read again."""
    try:
        return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except OSError as e:
        raise _bad("path", f"cannot read {e.filename}: {e.strerror or e}") from None


class Text(TextDataset):
    """A text file (any extension), or every `.txt` file in a folder and its subfolders (the
    extension in any case; hidden files skipped), cut into passages of `passage_chars`
    characters. Whitespace runs become one space unless `keep_newlines`."""

    path: LocalPath = Field(description="a text file, or a folder of .txt files (relative: "
                            "to the study file's folder)")
    passage_chars: int = Field(512, ge=32, le=100_000, description="characters per passage")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the share held out: the "
                                "val split evals score (the same for every trial)")
    encoding: str = Field("utf-8", description="the files' text encoding (strict: a byte "
                          "not valid in it is an error); a leading byte-order mark is dropped")
    keep_newlines: bool = Field(False, description="keep the text as written (line breaks, "
                                "indentation); default: every run of whitespace becomes one "
                                "space")

    def preflight(self, context: PreflightContext) -> list[Problem]:
        try:
            self._passages()
        except _Bad as e:
            return e.problems
        return _all_held_out(self)

    def examples(self, split: str, seed: int) -> list[Example]:
        check_split(split)
        return _examples_split(self._passages(), split, self.val_fraction)

    def files(self) -> list[Path]:
        """The files read, in order."""
        root = Path(self.path)
        if not root.exists():
            raise _bad("path", f"no such file or folder: {_relative(self.path)}")
        if not root.is_dir():
            return [root]
        files = sorted(f for f in root.rglob("*") if f.suffix.lower() == ".txt" and
                       f.is_file() and not any(part.startswith(".") for part in
                                               f.relative_to(root).parts))
        if not files:
            raise _bad("path", f"the folder {_relative(self.path)} holds no .txt file (read "
                       "in it and its subfolders: *.txt, the extension in any case); name a "
                       "file of another extension itself")
        return files

    def _passages(self) -> list[Example]:
        _check_encoding(self.encoding)
        files = self.files()
        text = _read_text(_stamp(files), self.encoding, self.keep_newlines)
        n = self.passage_chars
        passages = [Example(text[i:i + n]) for i in range(0, max(1, len(text) - n // 4), n)]
        if len(passages) < 2:  # one to train on, one held out
            raise _bad("passage_chars", self._too_short(len(text)))
        return passages

    def _too_short(self, length: int) -> str:
        n = self.passage_chars
        what = f"{self.path} holds {length:,} characters" + \
            ("" if self.keep_newlines else " (whitespace collapsed)")
        fits = min(100_000, length)
        while fits >= 32 and fits + fits // 4 >= length:
            fits -= 1
        fix = f"set passage_chars = {fits} or less, or give more text" if fits >= 32 else \
            "give it more than 40 characters of text (passage_chars is at least 32)"
        return (f"{what}: too few for two passages of {n:,} (one to train on, one held "
                f"out), which need more than {n + n // 4:,}; {fix}")


@lru_cache(maxsize=4)
def _read_text(stamp: tuple, encoding: str, keep_newlines: bool) -> str:
    """The files of `stamp`, decoded and joined: whitespace runs one space each, or (with
    `keep_newlines`) as written, line endings made "\\n"."""
    texts = [_decode(Path(name), encoding) for name, _, _ in stamp]
    if not keep_newlines:
        return " ".join(" ".join(t.split()) for t in texts)
    texts = [t.replace("\r\n", "\n").replace("\r", "\n") for t in texts]
    return "".join(t if t.endswith("\n") else t + "\n" for t in texts)


class _Records(TextDataset):
    """Shared by jsonl and csv: text and (optional) label fields named in the study. Labels
    are names (a JSON number becomes its text, e.g. "3"), which a regression stage reads as
    numbers. Texts are kept as written."""

    path: LocalPath = Field(description="the file (relative: to the study file's folder)")
    text_field: str = Field("text", description="the field (csv: column) holding the text")
    label_field: str | None = Field(None, description="the field holding the label: a class "
                                    "name, or for a regression stage a number; set it for a "
                                    "classification or regression task")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the share held out: the "
                                "val split evals score (the same for every trial)")
    encoding: str = Field("utf-8", description="the file's text encoding (strict); a "
                          "leading byte-order mark is dropped")

    format: ClassVar[str] = ""  # "jsonl" or "csv": how the file is parsed

    def rows(self) -> list[dict]:
        """Every row of the file, as dicts, checked: at least two, each with the fields."""
        _check_encoding(self.encoding)
        path = Path(self.path)
        if not path.exists():
            raise _bad("path", f"no such file: {_relative(self.path)}")
        if path.is_dir():
            raise _bad("path", f"{self.path} is a folder; name a .{self.format} file")
        rows = _read_rows(self.format, _stamp([path])[0], self.encoding)
        if len(rows) < 2:
            raise _bad("path", f"{self.path} holds {len(rows)} rows; a data source needs at "
                       "least 2 (one to train on, one held out)")
        problems = [Problem(key, why) for key, field in
                    (("text_field", self.text_field), ("label_field", self.label_field))
                    if field and (why := self._missing(field, rows)) is not None]
        if problems:
            raise _Bad(problems)
        return [row for _, row in rows]

    def _missing(self, field: str, rows: list[tuple[int, dict]]) -> str | None:
        """What is wrong with `field` in `rows`: in none of them, missing (or, in csv, empty
        for want of columns) in one; None when every row has it."""
        known = list(dict.fromkeys(k for _, row in rows for k in row if k is not None))
        if not any(field in row for _, row in rows):
            hint = difflib.get_close_matches(field, [str(k) for k in known], n=1)
            did = f"did you mean {hint[0]!r}? " if hint else ""
            return f"no field {field!r} in {self.path}; {did}fields: {', '.join(known)}"
        line = next((n for n, row in rows if row.get(field) is None), None)
        if line is not None:
            return f"{self.path} line {line} has no {field!r}"
        return None

    def preflight(self, context: PreflightContext) -> list[Problem]:
        try:
            self.rows()
        except _Bad as e:
            return e.problems
        if self.label_field and _regressed(self, context) and (why := self._not_a_number()):
            return [Problem("label_field", why)]
        return _all_held_out(self)

    def _not_a_number(self) -> str | None:
        """The first row whose label is no number, for a regression stage (None: all are)."""
        stamp = _stamp([Path(self.path)])[0]
        for line, row in _read_rows(self.format, stamp, self.encoding):
            if label_number(value := row.get(self.label_field)) is None:
                return (f"{self.path} line {line}: {self.label_field!r} is {value!r}, not a "
                        "finite number; a regression stage needs a number in every row "
                        "(e.g. 3.5)")
        return None

    def examples(self, split: str, seed: int) -> list[Example]:
        check_split(split)
        rows = self.rows()
        # label names, not ids: the trainer numbers them once for the whole study, so a class
        # keeps its id in a file that lacks another class
        examples = [Example(str(r[self.text_field]),
                            str(r[self.label_field]) if self.label_field else None)
                    for r in rows]
        return _examples_split(examples, split, self.val_fraction)


@lru_cache(maxsize=8)
def _read_rows(format: str, stamp: tuple, encoding: str) -> list[tuple[int, dict]]:
    """The rows of the file of `stamp`, as (line number, dict)."""
    name = stamp[0]
    return _PARSE[format](_decode(Path(name), encoding), name)


def _parse_jsonl(text: str, name: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise _bad("path", f"{name} line {n} is not JSON: {e.msg} (column {e.colno})") \
                from None
        if not isinstance(row, dict):
            raise _bad("path", f"{name} line {n} is not a JSON object ({{\"text\": ...}})")
        rows.append((n, row))
    return rows


def _parse_csv(text: str, name: str) -> list[tuple[int, dict]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as e:
        raise _bad("path", f"{name} line {reader.line_num}: {e}") from None
    return rows


_PARSE = {"jsonl": _parse_jsonl, "csv": _parse_csv}


class JSONL(_Records):
    """One JSON object per line."""

    format: ClassVar[str] = "jsonl"


class CSV(_Records):
    """A CSV file with a header row."""

    format: ClassVar[str] = "csv"


#: a hub dataset's id: a name, or org/name (letters, digits, `-`, `_`, `.`)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
#: names ending so are data files, never hub ids
_DATA_FILE = (".parquet", ".arrow", ".csv", ".json", ".jsonl", ".txt")


def _local_dataset(name: str) -> bool:
    """Whether an `hf` name is a path here, so validate can check it exists (a hub id is
    checked only by loading it, which needs the network validate never uses): whatever is
    no hub id — it starts with /, ./, ../ or ~, has more than one /, a space or a \\ — or
    ends like a data file (.parquet, .arrow, .csv, .json, .jsonl, .txt)."""
    return _HUB_ID.fullmatch(name) is None or name.lower().endswith(_DATA_FILE)


class HF(TextDataset):
    """A dataset from the Hugging Face hub, or a local folder read offline: data files
    (parquet, arrow, csv, json) in the hub's layout, or what `save_to_disk` wrote (needs
    `pip install datasets`; the hub needs a network)."""

    name: PathOrName = Field(description="the hub dataset, e.g. \"imdb\" or \"org/name\"; or "
                             "a local folder (./data, /data, ~/data: checked to exist)")
    config: str | None = Field(None, description="its configuration, for one that has several")
    train_split: str = Field("train", description="the split trained on")
    val_split: str = Field("validation", description="the split evals score")
    val_fraction: float | None = Field(
        None, gt=0, lt=1, description="for a source without `val_split`: the share of "
        "`train_split` held out as the val split (the same for every trial; unused where "
        "the source has a `val_split`)")
    text_field: str = Field("text", description="the field holding the text")
    label_field: str | None = Field(None, description="the field holding the label: a class "
                                    "id (an integer), or for a regression stage a number; set "
                                    "it for a classification or regression task")
    limit: int = Field(50_000, ge=1, description="examples read per split")

    def preflight(self, context: PreflightContext) -> list[Problem]:
        import importlib.util

        problems = [Problem("name", why)] if (why := self._missing_folder()) else []
        if importlib.util.find_spec("datasets") is None:  # the network is not checked
            problems.append(Problem("", "dataset hf needs the `datasets` package: pip "
                                    "install datasets"))
        # a local folder's splits, from its file names (a hub dataset's: only the hub knows)
        if problems or (splits := self._local_splits()) is None:
            return problems
        if self.train_split not in splits:
            problems.append(Problem("train_split", self._no_split(self.train_split, splits)))
        if self.val_split not in splits and self.val_fraction is None:
            problems.append(Problem("val_split", self._no_split(self.val_split, splits)))
        return problems

    def _missing_folder(self) -> str | None:
        """Why `name`, a path here, names nothing (None: it exists, or is a hub id)."""
        if not _local_dataset(self.name) or Path(self.name).expanduser().exists():
            return None
        where = self.name if Path(self.name).is_absolute() else \
            f"{self.name} (relative: to the study file's folder, or with --set to {os.getcwd()})"
        return (f"no such file or folder: {where}; a name that is no hub id (a name or "
                "org/name of letters, digits, -, _ and ., e.g. \"imdb\") is a local path — "
                "./data, ../data, /data, ~/data, a/b/c — and so is one ending in .parquet, "
                ".arrow, .csv, .json(l) or .txt: give a folder that exists, or a hub id")

    def _no_split(self, split: str, splits: list[str]) -> str:
        """A split the source lacks, in one line naming the fields that fix it."""
        which = "val_split" if split == self.val_split else "train_split"
        fix = (f"set val_fraction (e.g. 0.1) to hold out a share of {self.train_split!r}, or "
               f"{which} to one of them") if which == "val_split" else \
            f"set {which} to one of them"
        return (f"dataset hf {self.name!r} has no split {split!r} (its splits: "
                f"{', '.join(splits) or 'none'}): {fix}")

    def _folder(self) -> Path | None:
        """`name` as a local folder (None: a hub id, or a file)."""
        path = Path(self.name).expanduser()
        return path if _local_dataset(self.name) and path.is_dir() else None

    def _saved(self) -> Path | None:
        """The folder, where `save_to_disk` wrote it (a DatasetDict or one Dataset)."""
        folder = self._folder()
        saved = folder is not None and any(
            (folder / f).is_file() for f in ("dataset_dict.json", "state.json"))
        return folder if saved else None

    def _local_splits(self) -> list[str] | None:
        """The splits of a local folder, read from its file names: no data is loaded (None:
        a hub dataset or a file, whose splits only loading tells). A `save_to_disk` folder
        of one Dataset holds one split: train."""
        if (saved := self._saved()) is not None:
            if (saved / "dataset_dict.json").is_file():
                try:
                    return list(json.loads((saved / "dataset_dict.json").read_text())["splits"])
                except (OSError, ValueError, KeyError, TypeError):
                    return None
            return ["train"]
        if (folder := self._folder()) is None:
            return None
        from datasets.data_files import get_data_patterns

        try:
            return [str(s) for s in get_data_patterns(str(folder))]
        except Exception:  # no data files in it: loading says so in its own words
            return None

    def examples(self, split: str, seed: int) -> list[Example]:
        """`split`'s examples; a source without `val_split` where `val_fraction` is set: its
        `train_split` cut into val and train (seed 0: the same for every trial, disjoint)."""
        check_split(split)
        try:
            import datasets
        except ImportError:
            raise AutostageError("dataset hf needs the `datasets` package: "
                                 "pip install datasets") from None
        if self.val_fraction is not None and not self._has(self.val_split, datasets):
            rows = self._rows(datasets, self.train_split)
            examples = [Example(str(row[self.text_field]), self._label(row, i, "train"))
                        for i, row in enumerate(rows)]
            return _examples_split(examples, split, self.val_fraction)
        which = self.val_split if split == "val" else self.train_split
        return [Example(str(row[self.text_field]), self._label(row, i, split))
                for i, row in enumerate(self._rows(datasets, which))]

    def _has(self, split: str, datasets: Any) -> bool:
        """Whether the source has `split` (a hub dataset: asked of the hub)."""
        splits = self._local_splits()
        if splits is None and self._folder() is None and not _local_dataset(self.name):
            try:
                splits = list(datasets.get_dataset_split_names(self.name, self.config))
            except Exception:  # offline, ...: loading the split says why
                return True
        return splits is None or split in splits

    def _rows(self, datasets: Any, which: str) -> Any:
        """The first `limit` rows of split `which`, in one clear line where that fails."""
        try:
            if (saved := self._saved()) is not None:
                data = datasets.load_from_disk(str(saved))
                if isinstance(data, datasets.DatasetDict):
                    if which not in data:
                        raise AutostageError(self._no_split(which, list(data)))
                    data = data[which]
                elif which != "train":
                    raise AutostageError(self._no_split(which, ["train"]))
                return data.select(range(min(self.limit, len(data))))
            return datasets.load_dataset(self.name, self.config, split=f"{which}[:{self.limit}]")
        except AutostageError:
            raise
        except Exception as e:  # offline, unknown name, ...: one clear line
            if (m := re.match(r'Unknown split "(.*)"\. Should be one of \[(.*)\]', str(e))):
                known = [s.strip(" '\"") for s in m.group(2).split(",") if s.strip()]
                raise AutostageError(self._no_split(which, known)) from None
            raise AutostageError(f"dataset hf: cannot load {self.name!r} ({which}): "
                                 f"{type(e).__name__}: {e}") from None

    def _label(self, row: dict, i: int, split: str) -> int | float | None:
        """A class id (an integral number) or a regression target (any other finite
        number) — never a float cut to an int, as int() did to 3.8."""
        if not self.label_field:
            return None
        value = row[self.label_field]
        number = label_number(value)
        if number is None:
            which = self.val_split if split == "val" else self.train_split
            raise AutostageError(f"dataset hf {self.name!r} ({which} split) row {i}: "
                                 f"{self.label_field!r} is {value!r}, not a number; "
                                 "label_field names a column of class ids or numbers")
        return int(number) if number.is_integer() and not isinstance(value, float) else number


@hookimpl
def register_datasets(register):
    register("pydoc", Pydoc)
    register("arith", Arith)
    register("text", Text)
    register("jsonl", JSONL)
    register("csv", CSV)
    register("hf", HF)
