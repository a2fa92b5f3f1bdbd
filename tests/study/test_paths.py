"""Relative paths in a study mean the same thing wherever autostage runs and wherever a trial
runs: a path in the study file is read from the file's folder, one given with --set from the
current directory. (Before, `trial` found `corpus.txt` and `search` failed every trial with
"no .txt file at corpus.txt": Ray ran trials elsewhere.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from support.studies import toy_study

from autostage.check import load_study
from autostage.cli import main
from autostage.fields import LocalPath, PathOrName, StudyPath, fields_of

STUDY = toy_study(
    "study.name=paths", 'study.warm_start=["earlier"]',
    "data.general.dataset=text", "data.general.path=data/corpus.txt",
    "stage.general.data=general", "stage.general.tokens=20_000", "stage.target.tokens=20_000",
    data=("general", "target"), stages=("general", "target"),
    drop=("study.trial_scheduler", "data.target.prerequisite"))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """studies/paths.toml beside its data (studies/data/corpus.txt); the shell elsewhere."""
    folder = tmp_path / "studies"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "corpus.txt").write_text("A study reads its own corpus. " * 100)
    earlier = folder / "earlier"
    earlier.mkdir()
    (earlier / "study.json").write_text(json.dumps({"study": {}, "overrides": []}))
    (folder / "paths.toml").write_text(STUDY)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return folder


def test_paths_in_a_study_file_are_read_from_its_folder(project, registry):
    study = load_study(project / "paths.toml", registry)
    assert study.data["general"].settings["path"] == str(project / "data" / "corpus.txt")
    assert study.study.warm_start == [str(project / "earlier")]


def test_paths_given_with_set_are_read_from_the_current_directory(project, registry):
    here = Path.cwd()
    (here / "mine.txt").write_text("Typed on the command line, relative to here. " * 100)
    study = load_study(project / "paths.toml", registry, ["data.general.path=mine.txt"])
    assert study.data["general"].settings["path"] == str(here / "mine.txt")


def test_a_hub_name_stays_a_name_and_a_folder_beside_the_study_becomes_a_path(project,
                                                                            registry):
    text = STUDY.replace('trainer = "toy"', 'trainer = "transformers"\npretrained = "gpt2"')
    assert _resolved_pretrained(project, registry, text) == "gpt2"  # a hub id: no such folder
    (project / "gpt2").mkdir()
    assert _resolved_pretrained(project, registry, text) == str(project / "gpt2")


def _resolved_pretrained(project, registry, text):
    from autostage.check import resolve_paths
    from autostage.spec import read_toml

    (project / "hub.toml").write_text(text)
    raw = read_toml(project / "hub.toml")
    resolve_paths(raw, registry, project)
    return raw["model"]["pretrained"]


def test_a_plugin_declares_a_path_field_with_its_type():
    class Settings(BaseModel):
        corpus: LocalPath = Field(description="a file")
        model: PathOrName | None = None
        name: str = "x"

    fields = fields_of(Settings)
    assert fields["corpus"].path == StudyPath() and fields["corpus"].type == "str"
    assert fields["model"].path == StudyPath(or_name=True) and fields["model"].optional
    assert fields["name"].path is None


def test_validate_and_trial_read_the_data_beside_the_study_from_anywhere(project, capsys):
    assert main(["validate", str(project / "paths.toml")]) == 0
    assert main(["trial", str(project / "paths.toml")]) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_search_reads_the_data_beside_the_study_from_anywhere(project, ray_session):
    out = Path.cwd() / "run"
    (project / "paths.toml").write_text(STUDY.replace('warm_start = ["earlier"]\n', ""))
    assert main(["search", str(project / "paths.toml"), "--out", str(out)]) == 0
    results = [json.loads(p.read_text()) for p in out.glob("trials/*/result.json")]
    assert len(results) == 2 and all(r["status"] == "completed" for r in results), results
