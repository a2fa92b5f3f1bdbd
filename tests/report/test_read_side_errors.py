"""The read-side commands — `report`, `best`, `--export`, `--export-model` — on bad records
and bad paths: each is one line naming the file or trial and what would work, exit 2, and
nothing written. Run directories are written by hand here (no Ray, milliseconds)."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pytest
from support.studies import toy_study

from autostage.cli import main
from autostage.decisions import Continue, Eval
from autostage.errors import AutostageError
from autostage.records import Branch, EvalRecord, TrialRecord, TrialStatus, lineage, lineage_evals
from autostage.rundir import RunDir, write_json

METRIC = "eval.target.loss"
SECTION = {"name": "hand", "metric": METRIC, "mode": "min", "trials": 3, "keep_models": 1,
           "seed": 0, "storage": None}
STUDY_TOML = toy_study(
    "study.name=hand", "study.trials=3", "study.seed=0", "stage.target.tokens=1_000",
    data=("target",), stages=("target",),
    drop=("study.parallel", "study.trial_scheduler", "data.target.prerequisite", "search"))


def ev(tokens: int, value: float) -> EvalRecord:
    return EvalRecord(Eval(stage="target", visit=0, tokens=tokens, stage_tokens=tokens,
                           stage_budget=1_000, lr=1e-3, metrics={METRIC: value}, watch=METRIC,
                           decision=Continue()))


def trial(number: int, value: float, parent: int | None = None) -> TrialRecord:
    """A completed trial; with `parent`, a branch of it at 100 tokens (its first eval)."""
    branch = None if parent is None else Branch(parent, "target", 100, 1, f"/ck/{parent}",
                                                {}, 0)
    return TrialRecord(number, TrialStatus.COMPLETED, values=(value,), tokens=100, seed=0,
                       config={"optimizer": "adamw"}, evals=(ev(200, value),), branch=branch)


def write_run(path: Path, records: list[TrialRecord], model: int | None = None) -> RunDir:
    """A run directory as a search leaves it; `model`: that trial's model is kept. Files are
    written plainly (no fsync): a long lineage is a thousand of them."""
    run = RunDir(path)
    write_json(run.study_json, {"study": {"study": SECTION, "stage": [{"name": "target"}]},
                                "overrides": []})
    run.study_toml.write_text(STUDY_TOML)
    for record in records:
        folder = run.trial_dir(record.number)
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps(record.to_json()))
        (folder / "events.jsonl").write_text(
            "".join(json.dumps(e.to_json()) + "\n" for e in record.evals))
    if model is not None:
        run.model_dir(model).mkdir(parents=True)
        (run.model_dir(model) / "toy-model.json").write_text('{"weights": [1, 2, 3]}')
    return run


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its content: what a command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_error(capsys, code: int, *words: str) -> str:
    """The command failed with exit 2 and said so in one line (nothing on stdout)."""
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "Traceback" not in out + err
    assert out == "" and err.count("\n") == 1 and err.startswith("error: "), out + err
    assert all(w in err for w in words), err
    return err


# --- lineages the records cannot follow -------------------------------------------------------

MISSING = [trial(0, 1.0, parent=7), trial(1, 2.0)]  # trial 7 has no record
CYCLE = [trial(0, 1.0, parent=1), trial(1, 2.0, parent=0)]
SELF = [trial(0, 1.0, parent=0), trial(1, 2.0)]
BAD = [pytest.param(MISSING, ["trial 0 branched from trial 7", "no record of trial 7",
                              "restore trials/7"], id="missing-parent"),
       pytest.param(CYCLE, ["loops", "trial 0 branched from trial 1, and trial 1 from trial 0",
                            "restore trials/0, trials/1"], id="two-parent-each-other"),
       pytest.param(SELF, ["loops", "trial 0 branched from trial 0"], id="its-own-parent")]


@pytest.mark.parametrize(("records", "words"), BAD)
def test_report_on_a_lineage_it_cannot_follow_is_one_line(tmp_path, capsys, records, words):
    run = write_run(tmp_path / "run", records)
    before = files(tmp_path)
    one_line_error(capsys, main(["report", str(run.path)]), str(run.path), *words)
    assert files(tmp_path) == before  # no report.html


@pytest.mark.parametrize(("records", "words"), BAD)
def test_best_export_of_a_lineage_it_cannot_follow_writes_nothing(tmp_path, capsys, records,
                                                                  words):
    """The cycle once wrote a 476 KB study of 1,000 lineage segments and exited 0."""
    run = write_run(tmp_path / "run", records, model=0)
    before = files(tmp_path)
    code = main(["best", str(run.path), "--export", str(tmp_path / "x.toml"),
                 "--export-model", str(tmp_path / "m")])
    one_line_error(capsys, code, "cannot export trial 0", *words, "--trial N")
    assert files(tmp_path) == before and not (tmp_path / "m").exists()


def test_best_without_export_still_shows_a_trial_whose_lineage_is_broken(tmp_path, capsys):
    # showing it follows no parent: only what needs the lineage refuses it
    run = write_run(tmp_path / "run", CYCLE)
    assert main(["best", str(run.path)]) == 0
    assert "best: trial 0" in capsys.readouterr().out


def test_a_long_lineage_is_exported_whole(tmp_path, capsys):
    """No cap on a lineage's depth (one once cut a chain at 1,000 trials, silently): the walk
    ends because it visits each trial once."""
    chain = [trial(0, 5.0)] + [trial(n, 5.0 - n / 1e4, parent=n - 1) for n in range(1, 1100)]
    run = write_run(tmp_path / "run", chain)
    assert main(["best", str(run.path), "--export", str(tmp_path / "x.toml")]) == 0
    import tomllib

    exported = tomllib.loads((tmp_path / "x.toml").read_text())
    assert [s["trial"] for s in exported["lineage"]] == list(range(1100))


def test_the_shared_walk_refuses_a_missing_parent_and_a_cycle():
    by_number = {r.number: r for r in CYCLE}
    with pytest.raises(AutostageError, match="loops"):
        lineage(CYCLE[0], by_number)
    with pytest.raises(AutostageError, match="loops"):  # once: the parent's evals, forever
        lineage_evals(CYCLE[0], by_number)
    with pytest.raises(AutostageError, match="no record of trial 7"):
        lineage(MISSING[0], {0: MISSING[0]})
    assert lineage(MISSING[0], {0: MISSING[0]}, partial=True) == [MISSING[0]]
    chain = [trial(0, 1.0), trial(1, 1.0, parent=0), trial(2, 1.0, parent=1)]
    assert lineage(chain[2], {r.number: r for r in chain}) == chain


# --- study.json --------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", ["study.json cannot be read as a run's settings", "JSONDecodeError"]),
    ('{"study": {"study": {"name": "x"}}}', ["study.json has no study.metric, study.mode"]),
    ('["a list"]', ["study.json cannot be read as a run's settings", "TypeError"]),
])
@pytest.mark.parametrize("command", ["report", "best"])
def test_a_damaged_study_json_is_one_line(tmp_path, capsys, content, words, command):
    run = write_run(tmp_path / "run", [trial(0, 1.0)])
    run.study_json.write_text(content)
    before = files(tmp_path)
    one_line_error(capsys, main([command, str(run.path)]), str(run.study_json), *words,
                   "restore it from a copy of the run")
    assert files(tmp_path) == before


# --- output paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["--export-model", "{file}/m"], ["--export", "{file}/x.toml"],
    ["--export", "{file}/sub/x.toml"], ["--export-model", "{file}/a/b/m"],
], ids=["model", "export", "export-deeper", "model-deeper"])
def test_best_into_a_path_under_a_regular_file_is_one_line(tmp_path, capsys, args):
    run = write_run(tmp_path / "run", [trial(0, 1.0)], model=0)
    (tmp_path / "file").write_text("a user's file")
    before = files(tmp_path)
    option, target = args[0], args[1].format(file=tmp_path / "file")
    code = main(["best", str(run.path), option, target])
    one_line_error(capsys, code, f"{option} {target}: cannot write there",
                   f"{tmp_path / 'file'} is a file, not a folder", "give a path in a folder")
    assert files(tmp_path) == before


def test_report_into_a_path_under_a_regular_file_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "run", [trial(0, 1.0)])
    (tmp_path / "file").write_text("a user's file")
    before = files(tmp_path)
    code = main(["report", str(run.path), "-o", str(tmp_path / "file" / "r.html")])
    one_line_error(capsys, code, f"-o {tmp_path / 'file' / 'r.html'}: cannot write there",
                   "is a file, not a folder")
    assert files(tmp_path) == before


def test_best_exports_into_folders_it_makes(tmp_path, capsys):
    run = write_run(tmp_path / "run", [trial(0, 1.0)], model=0)
    export, model = tmp_path / "new" / "x.toml", tmp_path / "new" / "models" / "m"
    assert main(["best", str(run.path), "--export", str(export), "--export-model",
                 str(model)]) == 0
    assert "trials = 1" in export.read_text()
    assert (model / "toy-model.json").read_text() == '{"weights": [1, 2, 3]}'
    out = capsys.readouterr().out
    assert f"wrote {export}: run it with" in out and f"wrote {model}: the model of trial 0" \
        in out


@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "empty-folder"])
def test_a_copy_that_fails_part_way_leaves_nothing(tmp_path, capsys, monkeypatch, existing):
    """What no check can foresee (a disk that fills during the copy) is one line too, and
    the files already written are removed: the study file, the model's part."""
    run = write_run(tmp_path / "run", [trial(0, 1.0)], model=0)
    target = tmp_path / "out" / "m"
    if existing:
        target.mkdir(parents=True)
    before = files(tmp_path)

    def full_disk(source, destination, **kwargs):
        Path(destination).mkdir(parents=True, exist_ok=True)
        (Path(destination) / "toy-model.json").write_text('{"weig')
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copytree", full_disk)
    code = main(["best", str(run.path), "--export", str(tmp_path / "out" / "x.toml"),
                 "--export-model", str(target)])
    one_line_error(capsys, code, f"--export-model {target}: cannot write it (no space left "
                   "on device), so nothing was written")
    assert files(tmp_path) == before
    assert target.is_dir() == existing and not (tmp_path / "out" / "x.toml").exists()
    assert (tmp_path / "out").exists() == existing


def test_read_only_folders_are_one_line_each(tmp_path, private_mounts):
    """A read-only mount: root ignores a folder's mode bits (tests run as root in CI), a
    read-only filesystem it does not."""
    run = write_run(tmp_path / "run", [trial(0, 1.0)], model=0)
    (tmp_path / "locked").mkdir()
    before = files(tmp_path)
    cli = '"$PY" -m autostage.cli'
    done = private_mounts(f"""
        mount --bind "$TMP/locked" "$TMP/locked" && mount -o remount,bind,ro "$TMP/locked" \
            || exit 99
        mount --bind "$TMP/run" "$TMP/run" && mount -o remount,bind,ro "$TMP/run" || exit 99
        {cli} best "$TMP/run" --export-model "$TMP/locked/m" 2> "$TMP/model.err"
        echo $? > "$TMP/model.rc"
        {cli} best "$TMP/run" --export "$TMP/locked/x.toml" 2> "$TMP/export.err"
        echo $? > "$TMP/export.rc"
        {cli} report "$TMP/run" -o "$TMP/locked/r.html" 2> "$TMP/o.err"; echo $? > "$TMP/o.rc"
        {cli} report "$TMP/run" 2> "$TMP/report.err"; echo $? > "$TMP/report.rc"
    """)
    # (99: the read-only mounts could not be made; CI runs where `unshare` can make them)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    read = lambda name: (tmp_path / name).read_text()  # noqa: E731
    expected = {"model": f"--export-model {tmp_path / 'locked' / 'm'}",
                "export": f"--export {tmp_path / 'locked' / 'x.toml'}",
                "o": f"-o {tmp_path / 'locked' / 'r.html'}",
                "report": f"the report {run.path / 'report.html'}"}
    for name, start in expected.items():
        assert read(f"{name}.rc").strip() == "2", read(f"{name}.err")
        err = read(f"{name}.err")
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: {start}: cannot write there, ") and \
            "is not writable (read-only)" in err, err
    assert "give -o FILE in a folder you can write" in read("report.err")
    assert {k: v for k, v in files(tmp_path).items() if not k.endswith((".err", ".rc"))} \
        == before
