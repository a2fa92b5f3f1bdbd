"""Study-file mistakes: `autostage validate` exits 2 with one plain line per problem, each
naming the TOML path and what would work; never a traceback, never a file written."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import REPO
from support.studies import toy_study

from autostage.check import load_study, resolve_paths
from autostage.cli import main
from autostage.errors import StudyError
from autostage.host import load_registry

# A valid minimal study; each case below edits it.
TOY_STUDY = toy_study(
    "study.name=mini", "study.trials=4", "study.parallel=1", "study.sampler=tpe",
    "data.general.dataset=toy_task", "data.target.difficulty=2.0",
    "stage.general.data=general", "stage.general.tokens=10_000", "stage.target.tokens=20_000",
    "search.optimizer.adamw.lr={ low = 1e-4, high = 1e-2, log = true }",
    "search.stage_policy.plateau.patience={ low = 1, high = 3 }",
    data=("general", "target"), stages=("general", "target"),
    drop=("study.trial_scheduler", "data.target.prerequisite"))

LR = "lr = { low = 1e-4, high = 1e-2, log = true }"
SYNTAX_LINE = TOY_STUDY.splitlines().index("trials = 4") + 1


def write_study(directory: Path, *edits: tuple[str, str], name: str = "study.toml") -> Path:
    text = TOY_STUDY
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} must occur exactly once"
        text = text.replace(old, new)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def validate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


MISTAKES = [
    pytest.param([("trials = 4", "trials 4")], "", ["TOML syntax error", f"line {SYNTAX_LINE}"],
                 id="toml-syntax"),
    pytest.param([("trials = 4", "trails = 4")], "study.trails", ["did you mean 'trials'"],
                 id="misspelled-key"),
    pytest.param([("parallel = 1", 'parallel = "two"')], "study.parallel",
                 ["expected an integer", "'two'"], id="wrong-type"),
    pytest.param([("tokens = 20_000", 'tokens = "lots"')], "stage.target.tokens",
                 ["expected an integer"], id="wrong-type-in-stage"),
    pytest.param([(LR, "lr = { low = 1e-2, high = 1e-4 }")], "search.optimizer.adamw.lr",
                 ["`low < high` must hold"], id="low-not-below-high"),
    pytest.param([(LR, "beta1 = { low = 0.5, high = 1.5 }")],
                 "search.optimizer.adamw.beta1.high", ["outside the plugin's bounds", "< 1"],
                 id="outside-plugin-bounds"),
    pytest.param([(LR, "weight_decay = { low = 0.0, high = 0.1, log = true }")],
                 "search.optimizer.adamw.weight_decay", ["`log = true` needs low > 0"],
                 id="log-with-nonpositive-low"),
    pytest.param([('sampler = "tpe"', 'sampler = "tpee"')], "study.sampler",
                 ["did you mean 'tpe'", "installed:", "random"], id="unknown-plugin"),
    pytest.param([('data = "general"', 'data = "genral"')], "stage.general.data",
                 ["no data source named 'genral'", "defined: general, target"],
                 id="missing-data-source"),
    pytest.param([('name = "target"', 'name = "general"')], "stage.general.name",
                 ["duplicate stage name", "unique"], id="duplicate-stage-names"),
    pytest.param([("final = true\n", ""), ("tokens = 10_000", "tokens = 10_000\nfinal = true")],
                 "stage.general.final", ["must be the last", "move it to the end"],
                 id="final-stage-not-last"),
    pytest.param([("metric = \"eval.target.loss\"", "metric = \"eval.nosuch.loss\"")],
                 "study.metric", ["no data source named 'nosuch'", "defined: general, target"],
                 id="metric-nothing-evaluates"),
    pytest.param([("patience = { low = 1, high = 3 }", "patience = { low = 1.5, high = 3 }")],
                 "search.stage_policy.plateau.patience.low", ["integer", "1.5"],
                 id="int-field-float-range"),
]


@pytest.mark.parametrize(("edits", "toml_path", "hints"), MISTAKES)
def test_mistake_exits_2_with_path_and_hint(tmp_path, capsys, edits, toml_path, hints):
    study = write_study(tmp_path, *edits)
    code, out, err = validate(capsys, str(study))
    assert code == 2
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith(f"{study}: {toml_path}")]
    assert lines, f"no line for {toml_path!r} in:\n{err}"
    assert any(all(h in line for h in hints) for line in lines), err


def test_toy_study_is_valid(tmp_path, capsys):
    code, out, err = validate(capsys, str(write_study(tmp_path)))
    assert (code, err) == (0, "")
    assert out.startswith("ok: ")


def test_every_problem_in_one_run(tmp_path, capsys):
    study = write_study(
        tmp_path,
        ("trials = 4", "trails = 4"),
        ('trainer = "toy"', 'trainer = "toy"\nlr_optimm = 3e-3'),
        ('data = "general"', 'data = "genral"'),
        (LR, "beta1 = { low = 0.5, high = 1.5 }"),
    )
    code, _, err = validate(capsys, str(study))
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 4, err
    for path in ("study.trails", "model.lr_optimm", "stage.general.data",
                 "search.optimizer.adamw.beta1.high"):
        assert sum(line.startswith(f"{study}: {path}:") for line in lines) == 1, err


def test_set_with_unknown_stage(tmp_path, capsys):
    study = write_study(tmp_path)
    code, out, err = validate(capsys, str(study), "--set", "stage.nosuch.tokens=5")
    assert code == 2
    assert "Traceback" not in out + err
    assert "--set stage.nosuch.tokens" in err
    assert "stages: general, target" in err


def test_set_reaches_the_study(tmp_path):
    study = load_study(write_study(tmp_path), load_registry(), ["study.trials=3"])
    assert study.study.trials == 3


def test_set_value_is_checked_like_the_file(tmp_path):
    with pytest.raises(StudyError, match="study.trials: must be >= 1"):
        load_study(write_study(tmp_path), load_registry(), ["study.trials=0"])


def test_validate_writes_nothing(tmp_path, monkeypatch, capsys):
    good = write_study(tmp_path, name="good.toml")
    bad = write_study(tmp_path, ("trials = 4", "trails = 4"), name="bad.toml")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert validate(capsys, good.name)[0] == 0
    assert validate(capsys, bad.name)[0] == 2
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_console_path_in_a_subprocess(tmp_path):
    study = write_study(tmp_path, ("trials = 4", "trails = 4"))
    proc = subprocess.run(
        [sys.executable, "-m", "autostage.cli", "validate", str(study)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{study}: study.trails: unknown key 'trails'; did you mean 'trials'?" in proc.stderr


def test_shipped_studies_validate(capsys):
    studies = sorted(str(p) for p in (REPO / "studies").glob("*.toml"))
    assert studies, "studies/ holds no study files"
    code, out, err = validate(capsys, *studies)
    assert (code, err) == (0, "")
    assert sum(line.startswith("ok: ") for line in out.splitlines()) == len(studies)


def test_broken_data_table_is_not_also_reported_as_undefined(tmp_path, capsys):
    # The user did define data.target; only its table is wrong. One problem, at its place.
    study = write_study(tmp_path, ('[data.target]\ndataset = "toy_task"',
                                   '[data.target]\ndatset = "toy_task"'))
    code, _, err = validate(capsys, str(study))
    assert code == 2
    assert err.splitlines() == [f"{study}: data.target.dataset: required; add `dataset = ...`"]


def test_broken_stage_is_not_also_reported_as_missing_from_the_plan(tmp_path, capsys):
    study = write_study(tmp_path, ("tokens = 10_000", "tokns = 10_000"),
                        (LR, f'{LR}\n\n[search.plan]\nskip = ["general"]'))
    code, _, err = validate(capsys, str(study))
    assert code == 2
    assert "stage.general.tokns: unknown key 'tokns'; did you mean 'tokens'?" in err
    assert "search.plan" not in err, err


@pytest.mark.parametrize(("edit", "toml_path", "hints"), [
    pytest.param((LR, "weight_decay = { low = -1, high = 2 }"),
                 "search.optimizer.adamw.weight_decay", ("outside the plugin's bounds",),
                 id="both-outside-bounds"),
    pytest.param(("patience = { low = 1, high = 3 }", "patience = { low = 1.5, high = 2.5 }"),
                 "search.stage_policy.plateau.patience", ("the field is an integer",),
                 id="both-not-integers"),
    pytest.param((LR, 'lr = { low = "small", high = inf }'),
                 "search.optimizer.adamw.lr", ("expected a finite number",),
                 id="both-not-numbers"),
])
def test_a_range_reports_both_bad_ends(tmp_path, capsys, edit, toml_path, hints):
    study = write_study(tmp_path, edit)
    code, _, err = validate(capsys, str(study))
    assert code == 2
    lines = err.splitlines()
    for end in ("low", "high"):
        assert sum(line.startswith(f"{study}: {toml_path}.{end}:") and
                   all(h in line for h in hints) for line in lines) == 1, err
    assert len(lines) == 2, err  # and no `low < high` on top of two unusable ends


@pytest.mark.parametrize(("content", "words"), [
    (b"\xa5\x00garbage", ["not UTF-8 text", "byte 0xa5 at offset 0"]),
    ("[study]\nname = 'caf\xe9'\n".encode("latin-1"), ["not UTF-8 text", "byte 0xe9 at offset 19"]),
    (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", ["nested too deeply"]),
], ids=["binary", "latin-1", "nested-5000-deep"])
def test_an_unreadable_study_file_is_one_line_not_a_traceback(tmp_path, capsys, content, words):
    study = tmp_path / "bad.toml"
    study.write_bytes(content)
    code, out, err = validate(capsys, str(study))
    assert code == 2 and "Traceback" not in out + err
    assert len(err.splitlines()) == 1 and err.startswith(f"{study}: ")
    assert all(w in err for w in words), err


@pytest.mark.parametrize("seed", ["-1", "1e18", str(2**32)])
def test_a_seed_the_samplers_cannot_take_is_refused(tmp_path, capsys, seed):
    study = write_study(tmp_path)
    code, _, err = validate(capsys, str(study), "--set", f"study.seed={seed}")
    assert code == 2 and "study.seed" in err, err


def test_a_broken_study_name_does_not_hide_the_other_problems_of_study(tmp_path, registry):
    text = TOY_STUDY.replace('name = "mini"', 'name = "bad name!"')
    (tmp_path / "s.toml").write_text(text.replace('sampler = "tpe"', 'sampler = "nope"'))
    with pytest.raises(StudyError) as caught:
        load_study(tmp_path / "s.toml", registry)
    assert [p.path for p in caught.value.problems] == ["study.name", "study.sampler"]


# --- an `hf` dataset read from a local folder ---------------------------------------------------

HF_SOURCE = 'difficulty = 2.0\n\n[data.extra]\ndataset = "hf"\nname = {name}\n'


def hf_study(directory: Path, name: str) -> Path:
    return write_study(directory, ("difficulty = 2.0\n", HF_SOURCE.format(name=f'"{name}"')))


@pytest.mark.parametrize("name", ["./nosuch", "../nosuch", "/nonexistent/autostage/data",
                                  "~/nonexistent-autostage-data", "data/train/part",
                                  "train.parquet", "org/train.jsonl", "my data"])
def test_an_hf_local_folder_that_is_not_there_is_refused(tmp_path, capsys, name):
    """A name that is clearly a path is checked like every dataset's path (a trial would
    fail to load it); the line says how a name is told from a hub id."""
    study = hf_study(tmp_path, name)
    code, out, err = validate(capsys, str(study))
    assert code == 2 and "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.startswith(f"{study}: data.extra.name: ")]
    assert len(lines) == 1, err
    assert "no such file or folder: " in lines[0]
    assert "is a local path" in lines[0] and 'hub id (a name or org/name' in lines[0]
    assert "give a folder that exists, or a hub id" in lines[0]


@pytest.mark.parametrize("name", ["imdb", "org/name", "wikitext", "user/my-data.v2"])
def test_an_hf_hub_id_is_left_to_the_trial(tmp_path, capsys, name):
    # a hub id needs the network to check, which validate never uses
    _, out, err = validate(capsys, str(hf_study(tmp_path, name)))
    assert "data.extra.name" not in err and "Traceback" not in out + err


def test_an_hf_local_folder_is_read_from_the_study_files_folder(tmp_path, monkeypatch,
                                                                capsys, registry):
    (tmp_path / "project" / "data").mkdir(parents=True)
    study = hf_study(tmp_path / "project", "./data")
    monkeypatch.chdir(tmp_path)  # not the study's folder
    _, out, err = validate(capsys, str(study))
    assert "data.extra.name" not in err and "Traceback" not in out + err
    raw = tomllib.loads(study.read_text())
    resolve_paths(raw, registry, study.parent)  # what a trial is given: the folder, absolute
    assert raw["data"]["extra"]["name"] == str(tmp_path / "project" / "data")
