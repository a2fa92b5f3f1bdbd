"""`validate` catches everything a trial would trip on as it starts (issue 14): a missing data
file or folder, a text too short for its passages, a field a CSV or JSONL file lacks, a missing
pretrained or tokenizer directory, a prerequisite naming no data source, `device = "cuda"`
without CUDA — through the trainer's and the data sources' `preflight`, the one function a
trial calls again as it starts. And how the `text`, `csv` and `jsonl` datasets decode files."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import STUDIES
from support.studies import tiny_lm_study

from autostage.check import load_study
from autostage.cli import main
from autostage.components import Dataset, PreflightContext, TextDataset
from autostage.errors import AutostageError, Problem, StudyError
from autostage.hookspecs import hookimpl
from autostage.host import load_registry
from autostage.spec import DataSection

TOY = str(STUDIES / "quickstart-toy.toml")
TOY_GENERAL = '[data.general]\ndataset = "toy_task"\ndifficulty = 0.5'

# A small transformers study (never trained here: validate builds no model). `general` reads
# corpus.txt and `rows` rows.csv, both written in the test's folder (its working directory).
LM = tiny_lm_study(
    "data.general.dataset=text", "data.general.path=corpus.txt",
    "data.rows.dataset=csv", "data.rows.path=rows.csv", "data.rows.label_field=label",
    'stage.target.evals=["rows"]',
    data=("general", "rows", "target"),
    drop=("model.batch_size", "model.eval_batches", "search"))
CORPUS = "The quick brown fox jumps over the lazy dog. " * 60  # 2,700 characters


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The test's working directory, holding the LM study and its (valid) data files."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.toml").write_text(LM)
    (tmp_path / "corpus.txt").write_text(CORPUS)
    (tmp_path / "rows.csv").write_text("text,label\n" + "".join(
        f"row {i},{'ab'[i % 2]}\n" for i in range(20)))
    return tmp_path


def validate(capsys, study: str, *overrides: str, command: str = "validate"
             ) -> tuple[int, str, str]:
    code = main([command, study, *[a for o in overrides for a in ("--set", o)]])
    out, err = capsys.readouterr()
    return code, out, err


def latin1(folder: Path) -> None:
    (folder / "latin.txt").write_bytes(("Un café au lait. " * 100).encode("latin-1"))


def make(name: str, content: str | bytes = ""):
    def write(folder: Path) -> None:
        path = folder / name
        if name.endswith("/"):
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return write


def pretrained(name: str, vocab: int, tokenizer: bool = False):
    def write(folder: Path) -> None:
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(json.dumps({"model_type": "gpt2",
                                                                "vocab_size": vocab}))
        if tokenizer:
            (folder / name / "tokenizer_config.json").write_text("{}")
    return write


def nothing(folder: Path) -> None:
    pass


# (study, overrides, files to write first, where the problem is, words its line holds)
CASES = [
    pytest.param(TOY, ["data.target.prerequisite='prereq2'"], nothing,
                 "data.target.prerequisite", ["no data source named 'prereq2'",
                                              "defined: general, prereq, target"],
                 id="toy-unknown-prerequisite"),
    pytest.param("study.toml", ["data.general.path='nosuch.txt'"], nothing, "data.general.path",
                 ["no such file or folder: /", "/nosuch.txt"], id="text-missing-file"),
    pytest.param("study.toml", ["data.general.path='empty'"], make("empty/"),
                 "data.general.path", ["the folder /", "/empty holds no .txt file", "any case"],
                 id="text-empty-folder"),
    pytest.param("study.toml", ["data.general.path='short.txt'"], make("short.txt", "x" * 400),
                 "data.general.passage_chars",
                 ["short.txt holds 400 characters", "two passages of 512", "more than 640",
                  "set passage_chars = 319 or less"], id="text-shorter-than-a-passage"),
    pytest.param("study.toml", ["data.general.passage_chars=5000"], nothing,
                 "data.general.passage_chars",
                 ["corpus.txt holds 2,69", "two passages of 5,000", "set passage_chars = 2"],
                 id="passage-chars-larger-than-the-file"),
    pytest.param("study.toml", ["data.general.path='latin.txt'"], latin1,
                 "data.general.encoding",
                 ["latin.txt is not valid utf-8", "byte 0xe9 at offset 6", "line 1",
                  'encoding = "latin-1"'], id="text-not-utf-8"),
    pytest.param("study.toml", ["data.general.encoding='utf-9'"], nothing,
                 "data.general.encoding", ["no text encoding named 'utf-9'"],
                 id="unknown-encoding"),
    pytest.param("study.toml", ["data.rows.path='nosuch.csv'"], nothing, "data.rows.path",
                 ["no such file: /", "/nosuch.csv"], id="csv-missing-file"),
    pytest.param("study.toml", ["data.rows.text_field='txt'"], nothing, "data.rows.text_field",
                 ["no field 'txt' in /", "/rows.csv;", "did you mean 'text'?",
                  "fields: text, label"],
                 id="csv-missing-text-field"),
    pytest.param("study.toml", ["data.rows.label_field='labels'"], nothing,
                 "data.rows.label_field", ["no field 'labels' in /", "/rows.csv;"],
                 id="csv-missing-label-field"),
    pytest.param("study.toml", ["data.rows={dataset='jsonl', path='rows.jsonl', "
                                "label_field='label'}"],
                 make("rows.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n'),
                 "data.rows.label_field", ["rows.jsonl line 2 has no 'label'"],
                 id="jsonl-row-missing-label-field"),
    pytest.param("study.toml", ["data.rows={dataset='jsonl', path='rows.jsonl'}"],
                 make("rows.jsonl", '{"text": "only one"}\n'), "data.rows.path",
                 ["holds 1 rows", "at least 2"], id="jsonl-one-row"),
    pytest.param("study.toml", ["data.target={dataset='toy_task'}"], nothing, "model.trainer",
                 ["the transformers trainer reads text datasets", "target (ToyTask)"],
                 id="transformers-with-a-toy-dataset"),
    pytest.param("study.toml", ["data.target={dataset='hf', name='imdb'}"], nothing,
                 "data.target", ["needs the `datasets` package: pip install datasets"],
                 id="hf-without-datasets",
                 marks=pytest.mark.skipif(importlib.util.find_spec("datasets") is not None,
                                          reason="the datasets package is installed")),
    pytest.param("study.toml", ["model.pretrained='nosuch'"], nothing, "model.pretrained",
                 ["cannot load nosuch", "no such directory; a hub name needs a network: "
                  "org/name"], id="pretrained-bare-name-not-a-directory"),
    pytest.param("study.toml", ["model.pretrained='/nonexistent/models/tiny'"], nothing,
                 "model.pretrained", ["cannot load /nonexistent/models/tiny: no such directory"],
                 id="pretrained-missing-absolute-directory"),
    pytest.param("study.toml", ["model.pretrained='empty'"], make("empty/"), "model.pretrained",
                 ["holds no config.json"], id="pretrained-directory-without-a-model"),
    pytest.param("study.toml", ["model.tokenizer='tok'"], nothing, "model.tokenizer",
                 ["cannot load tok", "no such directory", '"byte", "bpe"'],
                 id="tokenizer-missing-directory"),
    pytest.param("study.toml", ["model.tokenizer='bytes'"], nothing, "model.tokenizer",
                 ['did you mean "byte"?'], id="tokenizer-misspelled"),
    pytest.param("study.toml", ["model.pretrained='gpt'"], pretrained("gpt", 50257),
                 "model.tokenizer", ["the pretrained directory /", "/gpt holds no tokenizer",
                                     "none is named"],
                 id="pretrained-without-its-tokenizer"),
]


@pytest.mark.parametrize(("study", "overrides", "files", "where", "words"), CASES)
def test_validate_refuses_what_a_trial_would_trip_on(folder, capsys, study, overrides, files,
                                                     where, words):
    files(folder)
    before = snapshot(folder)
    for command in ("validate", "search"):  # a search checks first: no run directory, no Ray
        code, out, err = validate(capsys, study, *overrides, command=command)
        assert code == 2, out + err
        assert "Traceback" not in out + err and out == ""
        lines = [line.removeprefix("error: ") for line in err.splitlines()]  # (one, by search)
        lines = [line for line in lines if line.startswith(f"{study}: {where}: ")]
        assert len(lines) == 1, err
        assert all(w in lines[0] for w in words), lines[0]
        assert snapshot(folder) == before  # nothing written


def test_every_such_problem_is_reported_at_once(folder, capsys):
    assert validate(capsys, "study.toml")[:3:2] == (0, "")  # the study as it is: fine
    code, _, err = validate(capsys, "study.toml", "model.tokenizer='tok'",
                            "data.general.path='nosuch.txt'", "data.rows.text_field='txt'")
    assert code == 2
    assert [line.split(": ")[1] for line in err.splitlines()] == [
        "model.tokenizer", "data.general.path", "data.rows.text_field"]


def test_the_tokenizer_defaults_to_the_pretrained_models_own(folder, registry):
    Transformers = registry.get("trainer", "transformers")  # noqa: N806 (a class)
    pretrained("tiny", 260)(folder)
    pretrained("gpt", 50257, tokenizer=True)(folder)
    assert Transformers().tokenizer_source() == "byte"
    assert Transformers(pretrained="gpt").tokenizer_source() == "gpt"
    assert Transformers(pretrained="org/name").tokenizer_source() == "org/name"
    assert Transformers(pretrained="tiny").tokenizer_source() == "byte"  # autostage's bytes
    assert Transformers(pretrained="gpt", tokenizer="bpe").tokenizer_source() == "bpe"


@pytest.mark.parametrize("overrides", [
    ["model.pretrained='someorg/some-model'"],  # a hub name: the network is not validate's
    ["model.pretrained='tiny'"],  # a directory without a tokenizer, of byte vocabulary
    ["model.pretrained='gpt'"],  # with its own tokenizer
    ["model.pretrained='gpt'", "model.tokenizer='gpt'"],
], ids=["hub-name", "byte-vocabulary", "own-tokenizer", "named-tokenizer"])
def test_pretrained_settings_that_can_work_validate(folder, capsys, registry, overrides):
    Transformers = registry.get("trainer", "transformers")  # noqa: N806 (a class)
    pretrained("tiny", 260)(folder)
    pretrained("gpt", 50257, tokenizer=True)(folder)
    code, _, err = validate(capsys, "study.toml", *overrides)
    assert (code, err) == (0, "")
    settings = dict(o.removeprefix("model.").replace("'", "").split("=") for o in overrides)
    assert Transformers(**settings).tokenizer_source() == \
        {"someorg/some-model": "someorg/some-model", "tiny": "byte", "gpt": "gpt"}[
            settings["pretrained"]]


@pytest.mark.slow
def test_device_cuda_without_cuda_is_refused_by_validate(folder, capsys):
    import torch

    if torch.cuda.is_available():
        code, _, err = validate(capsys, "study.toml", "model.device='cuda'")
        assert (code, err) == (0, "")
        return
    code, _, err = validate(capsys, "study.toml", "model.device='cuda'")
    assert code == 2 and "Traceback" not in err
    assert err.splitlines() == [
        "study.toml: model.device: 'cuda', but torch sees no CUDA device here (torch "
        f"{torch.__version__}, " + ("built without CUDA" if torch.version.cuda is None else
                                    f"built for CUDA {torch.version.cuda}") +
        '); use device = "auto" (CUDA where there is one) or "cpu"']


# --- the same function at trial start ------------------------------------------------------


def count_preflights(monkeypatch) -> list[int]:
    import autostage.build

    calls = []
    real = autostage.build.preflight

    def counted(context):
        problems = real(context)
        calls.append(len(problems))
        return problems

    monkeypatch.setattr(autostage.build, "preflight", counted)
    return calls


@pytest.mark.parametrize(("study", "lose", "message"), [
    ("study.toml", "corpus.txt", "data.general.path: no such file or folder: {}"),
    ("study.toml", "rows.csv", "data.rows.path: no such file: {}"),
    ("toy.toml", "corpus.txt", "data.general.path: no such file or folder: {}"),
])
def test_a_file_deleted_after_validate_fails_the_trial_start_with_one_clear_error(
        folder, registry, monkeypatch, study, lose, message):
    from autostage import prepare_trial, sample_config

    (folder / "toy.toml").write_text(Path(TOY).read_text().replace(
        TOY_GENERAL, '[data.general]\ndataset = "text"\npath = "corpus.txt"'))
    calls = count_preflights(monkeypatch)
    loaded = load_study(study, registry)  # validates: nothing wrong yet
    (folder / lose).unlink()
    with pytest.raises(AutostageError) as caught:
        prepare_trial(loaded, registry, sample_config(loaded, registry, 0), 0)
    assert str(caught.value).startswith(message.format(folder / lose))  # where it looked
    assert "\n" not in str(caught.value)
    assert calls == [0, 1]  # validate's check and the trial's start: one function


def test_trial_start_checks_again_a_prerequisite_the_study_lost(registry, monkeypatch):
    from autostage import prepare_trial, sample_config

    calls = count_preflights(monkeypatch)
    study = load_study(TOY, registry)
    target = study.data["target"]  # as if the study had changed after it was checked
    study.data["target"] = DataSection(dataset=target.dataset,
                                       **{**target.settings, "prerequisite": "gone"})
    with pytest.raises(AutostageError, match="^data.target.prerequisite: no data source named "
                       "'gone'; defined: general, prereq, target$"):
        prepare_trial(study, registry, sample_config(study, registry, 0), 0)
    assert calls == [0, 1]


# --- a third-party component's preflight ---------------------------------------------------


class Shelf(Dataset):
    """A dataset whose preflight reports what its `complaint` says."""

    complaint: str = "none"

    def preflight(self, context: PreflightContext) -> list[Problem | str]:
        if self.complaint == "field":
            return [Problem("complaint", "a field's problem"), "the table's problem"]
        if self.complaint == "raise":
            raise KeyError("oops")
        if self.complaint == "others":
            return [f"sources: {', '.join(context.sources)}; configured: "
                    f"{', '.join(context.data)}; trainer: {type(context.trainer).__name__}; "
                    f"objectives: {dict(context.objectives)}"]
        return []


def shelf_registry():
    @hookimpl
    def register_datasets(register):
        register("shelf", Shelf)

    return load_registry(plugins=[SimpleNamespace(register_datasets=register_datasets)])


@pytest.mark.parametrize(("complaint", "problems"), [
    ("field", ["data.general.complaint: a field's problem", "data.general: the table's problem"]),
    ("raise", ["data.general: Shelf.preflight raised KeyError: 'oops'"]),
    ("others", ["data.general: sources: broken, general, prereq, target; configured: general, "
                "prereq, target; trainer: Toy; objectives: {'general': 'causal_lm', 'prereq': "
                "'causal_lm', 'target': 'causal_lm'}"]),
])
def test_a_plugins_preflight_problems_are_placed_under_its_table(tmp_path, complaint,
                                                                 problems):
    study = tmp_path / "study.toml"
    study.write_text(Path(TOY).read_text().replace(
        TOY_GENERAL, f'[data.broken]\ndataset = "shelf"\nnofield = 1\n'
        f'[data.general]\ndataset = "shelf"\ncomplaint = "{complaint}"'))
    with pytest.raises(StudyError) as caught:
        load_study(study, shelf_registry())
    got = [str(p) for p in caught.value.problems]
    assert got[0].startswith("data.broken.nofield: ")  # its settings: no preflight for it
    assert got[1:] == problems


def test_the_base_preflight_finds_nothing():
    from autostage_plugins.datasets import Arith

    assert Arith().preflight(PreflightContext()) == []  # the base class's: nothing to check
    assert TextDataset.preflight is Dataset.preflight


# --- how text is read -----------------------------------------------------------------------


def texts(dataset) -> str:
    return "".join(e.text for split in ("train", "val") for e in dataset.examples(split, 0))


def test_a_byte_order_mark_is_not_text(tmp_path):
    from autostage_plugins.datasets import CSV, Text

    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + b"Hello there. " * 20)
    passages = Text(path=str(tmp_path / "bom.txt"), passage_chars=64).examples("train", 0)
    assert not any("\ufeff" in e.text for e in passages)
    assert passages[0].text.startswith("Hello")
    # a spreadsheet's CSV export: its BOM would glue itself to the first column's name
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbftext,label\r\nyes,a\r\nno,b\r\n")
    rows = CSV(path=str(tmp_path / "bom.csv"), label_field="label")
    assert rows.preflight(PreflightContext()) == []
    assert sorted((e.text, e.label) for s in ("train", "val") for e in rows.examples(s, 0)) == \
        [("no", "b"), ("yes", "a")]


def test_latin_1_is_refused_then_read_with_its_encoding(folder, capsys):
    from autostage_plugins.datasets import Text

    latin1(folder)
    code, _, err = validate(capsys, "study.toml", "data.general.path='latin.txt'")
    assert code == 2 and 'encoding = "latin-1"' in err
    code, _, err = validate(capsys, "study.toml", "data.general.path='latin.txt'",
                            "data.general.encoding='latin-1'")
    assert (code, err) == (0, "")
    assert "Un café au lait." in texts(Text(path="latin.txt", encoding="latin-1"))
    with pytest.raises(AutostageError, match="byte 0xe9 at offset 6"):
        Text(path="latin.txt").examples("train", 0)  # read directly: the same error


def test_a_folder_reads_txt_in_any_case_and_skips_hidden_files(tmp_path):
    from autostage_plugins.datasets import Text

    (tmp_path / "sub").mkdir()
    (tmp_path / "A.TXT").write_text("upper " * 100)
    (tmp_path / "sub" / "b.txt").write_text("lower " * 100)
    (tmp_path / "c.Txt").write_text("mixed " * 100)
    (tmp_path / "notes.md").write_text("markdown " * 100)
    (tmp_path / "._b.txt").write_bytes(b"\x00\x05\x16\x07 resource fork")
    dataset = Text(path=str(tmp_path), passage_chars=64)
    assert [f.name for f in dataset.files()] == ["A.TXT", "c.Txt", "b.txt"]
    text = texts(dataset)
    assert all(w in text for w in ("upper", "lower", "mixed")) and "markdown" not in text
    # a file named itself is read whatever its extension
    assert "markdown" in texts(Text(path=str(tmp_path / "notes.md"), passage_chars=64))


def test_keep_newlines_keeps_the_text_as_written(tmp_path):
    from autostage_plugins.datasets import Text

    poem = "Roses are red,\r\n  violets are blue;\r\n\r\nsugar is sweet.\n" * 60
    (tmp_path / "poem.txt").write_text(poem, newline="")
    path = str(tmp_path / "poem.txt")
    collapsed = Text(path=path, passage_chars=200).examples("train", 0)
    assert "red, violets are blue; sugar" in collapsed[0].text
    assert not any("\n" in e.text for e in collapsed)
    kept = Text(path=path, passage_chars=200, keep_newlines=True).examples("train", 0)
    assert kept[0].text.startswith("Roses are red,\n  violets are blue;\n\nsugar is sweet.\n")
    assert not any("\r" in e.text for e in kept)
    # the files read are cached for a trial's several reads; a file changed since is read again
    (tmp_path / "poem.txt").write_text(poem.replace("Roses", "Tulips"), newline="")
    stat = (tmp_path / "poem.txt").stat()
    os.utime(tmp_path / "poem.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = Text(path=path, passage_chars=200, keep_newlines=True).examples("train", 0)
    assert again[0].text.startswith("Tulips are red,\n")


# --- a real model --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_pretrained_directory_trains_with_its_own_saved_tokenizer(folder, registry):
    from transformers import GPT2Config, GPT2LMHeadModel

    from autostage import prepare_trial, sample_config
    from autostage_plugins.tokenize import bpe_tokenizer, for_transformers

    GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=32, n_embd=32, n_layer=1,
                               n_head=2)).save_pretrained(folder / "tiny")
    # a bpe tokenizer: a saved byte one is read back as autostage's byte tokenizer, ids alike
    bpe = bpe_tokenizer(["the docs of the standard library"] * 20, 300, str(folder))
    for_transformers(bpe, "causal_lm").save_pretrained(folder / "tiny")
    study = load_study("study.toml", registry, [
        "model.pretrained='tiny'", "search.plan={order='target'}", "stage.target.tokens=512"])
    trial = prepare_trial(study, registry, sample_config(study, registry, 0), 0)
    assert trial.trainer.tok.kind == "pretrained"  # not byte ids into the model, silently
    assert trial.run().status.value == "completed"
