"""The `hf` dataset on local folders, read offline: data files in the hub's layout (parquet)
and `save_to_disk` folders; `val_fraction` carves a held-out val split out of a source that
ships only a train split; a missing split is refused by validate, naming the field that
fixes it. Each folder is written by the test (needs the `datasets` package)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.studies import toy_study

from autostage.cli import main
from autostage.components import PreflightContext
from autostage.errors import AutostageError

datasets = pytest.importorskip("datasets")

from autostage_plugins.datasets import HF  # noqa: E402

ROWS = [{"text": f"passage number {i} of the corpus", "label": i % 3} for i in range(40)]


def parquet_folder(root: Path, *splits: str) -> Path:
    """A folder of parquet files in the hub's layout: data/<split>-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    for split in splits:
        rows = ROWS if split == "train" else ROWS[:8]
        datasets.Dataset.from_list(rows).to_parquet(
            str(root / "data" / f"{split}-00000-of-00001.parquet"))
    return root


def saved_folder(root: Path, *splits: str) -> Path:
    """What `DatasetDict.save_to_disk` writes; no splits: one Dataset's `save_to_disk`."""
    data = datasets.Dataset.from_list(ROWS)
    if splits:
        data = datasets.DatasetDict({s: data if s == "train" else data.select(range(8))
                                     for s in splits})
    data.save_to_disk(str(root))
    return root


FOLDERS = {"parquet": parquet_folder, "save_to_disk": saved_folder}


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_a_local_folder_with_both_splits_is_read_offline(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # nothing of the user's cache
    folder = FOLDERS[kind](tmp_path / "data", "train", "validation")
    hf = HF(name=str(folder), label_field="label")
    assert hf.preflight(PreflightContext()) == []
    train, val = hf.examples("train", 0), hf.examples("val", 0)
    assert [e.text for e in train] == [r["text"] for r in ROWS]
    assert [(e.text, e.label) for e in val] == [(r["text"], r["label"]) for r in ROWS[:8]]
    assert len(HF(name=str(folder), limit=5).examples("train", 0)) == 5


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_val_fraction_holds_out_a_fixed_disjoint_share_of_train(tmp_path, kind):
    folder = FOLDERS[kind](tmp_path / "data", "train")
    hf = HF(name=str(folder), val_fraction=0.25)
    assert hf.preflight(PreflightContext()) == []
    val = [e.text for e in hf.examples("val", 0)]
    train = [e.text for e in hf.examples("train", 0)]
    assert len(val) == 10 and len(train) == 30
    assert not set(val) & set(train)
    assert sorted(val + train) == sorted(r["text"] for r in ROWS)
    # the same for every seed (every trial scores the same held-out set)
    assert [e.text for e in hf.examples("val", 7)] == val
    assert [e.text for e in hf.examples("train", 7)] == train


def test_one_saved_dataset_is_a_train_split(tmp_path):
    folder = saved_folder(tmp_path / "data")  # Dataset.save_to_disk: no splits
    assert len(HF(name=str(folder), val_fraction=0.1).examples("val", 0)) == 4
    assert HF(name=str(folder), val_fraction=0.1).preflight(PreflightContext()) == []


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_val_fraction_is_unused_where_the_source_has_a_val_split(tmp_path, kind):
    folder = FOLDERS[kind](tmp_path / "data", "train", "validation")
    hf = HF(name=str(folder), val_fraction=0.5)
    assert [e.text for e in hf.examples("val", 0)] == [r["text"] for r in ROWS[:8]]
    assert len(hf.examples("train", 0)) == len(ROWS)


@pytest.mark.parametrize("kind", sorted(FOLDERS))
def test_a_missing_split_is_one_line_naming_the_field_that_fixes_it(tmp_path, kind):
    folder = FOLDERS[kind](tmp_path / "data", "train")
    problems = HF(name=str(folder)).preflight(PreflightContext())
    assert [p.path for p in problems] == ["val_split"]
    assert f"dataset hf '{folder}' has no split 'validation' (its splits: train): set " \
           "val_fraction (e.g. 0.1) to hold out a share of 'train', or val_split to one of " \
           "them" == problems[0].message
    # the trial says the same, not `Unknown split "validation"`
    with pytest.raises(AutostageError, match="has no split 'validation'.*set val_fraction"):
        HF(name=str(folder)).examples("val", 0)
    problems = HF(name=str(folder), train_split="training",
                  val_fraction=0.1).preflight(PreflightContext())
    assert [p.path for p in problems] == ["train_split"]
    assert "has no split 'training' (its splits: train): set train_split to one of them" in \
        problems[0].message


def test_validate_refuses_a_folder_without_a_val_split(tmp_path, capsys):
    parquet_folder(tmp_path / "data", "train")
    study = tmp_path / "study.toml"
    study.write_text(toy_study("data.extra.dataset=hf", 'data.extra.name="./data"',
                               'stage.target.evals=["extra"]'))
    assert main(["validate", str(study)]) == 2
    err = capsys.readouterr().err
    assert f"{study}: data.extra.val_split: dataset hf " in err
    assert "set val_fraction (e.g. 0.1)" in err
    study.write_text(toy_study("data.extra.dataset=hf", 'data.extra.name="./data"',
                               "data.extra.val_fraction=0.1", 'stage.target.evals=["extra"]'))
    assert main(["validate", str(study)]) == 0, capsys.readouterr().err
