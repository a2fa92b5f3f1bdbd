"""Bad input and faults: `validate` catches what a trial or a search would trip on, and
every mistake is one `error: ...` (or `<study>: <path>: ...`) line naming the field, plugin or
file and what would work — exit 2, never a traceback, nothing written (no run directory, no
optuna.db, no study.toml copy). A trial that raises is a failed trial, as in a search."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import STUDIES
from support.studies import tiny_lm_study, toy_study

from autostage.cli import main
from autostage.keys import eval_metric, mix_key, parse_metric, parse_mix_key

QUICKSTART = str(STUDIES / "quickstart-toy.toml")

# A small valid toy study (the FAKE trainer: milliseconds); each case below edits it.
STUDY = toy_study(
    "study.name=bad-input", "study.parallel=1",
    "stage.general.data=prereq", "stage.general.tokens=8_192",
    "stage.prereq.tokens=8_192",
    "stage.target.data={ target = 1.0, prereq = { low = 0.0, high = 0.5 } }",
    "stage.target.tokens=16_384",
    'search.plan.skip=["prereq"]',
    stages=("general", "prereq", "target"))

MIX = "data = { target = 1.0, prereq = { low = 0.0, high = 0.5 } }"
LONG = "n" * 300


def edit(*edits: tuple[str, str]) -> str:
    text = STUDY
    for old, new in edits:
        assert text.count(old) == 1, f"edit target {old!r} must occur exactly once"
        text = text.replace(old, new)
    return text


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with the content of its files: what "nothing written" keeps."""
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
            for p in sorted(root.rglob("*"))}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# (study text, extra arguments, commands, words the message must hold)
BAD = [
    pytest.param(edit(('trials = 2', 'trials = 2\nstorage = "foo://x"')), [],
                 ["validate", "search"], ["study.storage", "dialect 'foo'", "sqlite:///"],
                 id="storage-unknown-dialect"),
    pytest.param(edit(('trials = 2', 'trials = 2\nstorage = "sqlite:////nonexistent/dir/o.db"')),
                 [], ["validate", "search"],
                 ["study.storage", "/nonexistent/dir", "does not exist"],
                 id="storage-sqlite-missing-folder"),
    pytest.param(edit(('trials = 2', 'trials = 2\nstorage = "postgresql+nosuchdriver://h/db"')),
                 [], ["validate", "search"], ["study.storage", "nosuchdriver"],
                 id="storage-unknown-driver"),
    pytest.param(edit(('name = "bad-input"', f'name = "{LONG}"')), [], ["validate", "search"],
                 ["study.name", "300 characters", "at most 100", "run directory"],
                 id="study-name-too-long"),
    pytest.param(edit((MIX, "data = { target = 0, prereq = 0.0 }")), [], ["validate", "search"],
                 ["stage.target.data", "every weight of the mixture is 0"],
                 id="mixture-all-zero"),
    pytest.param(edit(('skip = ["prereq"]', 'skip = ["prereq"]\norder = "prereq>target"')), [],
                 ["validate", "search"], ["search.plan.order", "fixes the stage plan", "skip"],
                 id="plan-order-with-skip"),
    pytest.param(edit(('skip = ["prereq"]', 'reorder = ["general", "prereq", "general"]')), [],
                 ["validate"], ["search.plan.reorder", "'general' is listed twice"],
                 id="plan-reorder-twice"),
    pytest.param(edit(('skip = ["prereq"]', 'skip = ["prereq", "prereq"]')), [], ["validate"],
                 ["search.plan.skip", "'prereq' is listed twice"], id="plan-skip-twice"),
    pytest.param(edit(('metric = "eval.target.loss"',
                       'metric = ["eval.target.loss", "eval.target.loss"]')), [], ["validate"],
                 ["study.metric", "'eval.target.loss' is listed twice"], id="metric-twice"),
    pytest.param("", [], ["validate"], ["stage", "[[stage]]"], id="empty-file"),
    pytest.param(edit(("[data.prereq]", '[data."pre/req"]')), [], ["validate", "search"],
                 ["data.pre/req", "not a valid name", "'/'"], id="slash-in-data-source-name"),
    pytest.param(STUDY, ["--set", "study.resources.cpus=100000"], ["search"],
                 ["study.resources.cpus", "no trial could ever start"],
                 id="more-cpus-than-the-machine"),
    pytest.param(STUDY, ["--set", "study.resources.workers=2"], ["validate", "search"],
                 ["study.resources.workers", "Toy trains a trial in one process",
                  "workers = 1"], id="data-parallel-toy"),
    pytest.param(tiny_lm_study(), ["--set", "study.resources.workers=3"], ["validate", "search"],
                 ["study.resources.workers", "model.batch_size = 8 does not split among 3 "
                  "workers", "multiple of 3"], id="data-parallel-batch-not-split"),
    pytest.param(tiny_lm_study(), ["--set", "study.resources.workers=2", "--set",
                                   "study.resources.gpus=0.5"], ["validate", "search"],
                 ["study.resources.gpus", "0.5", "a whole GPU each", "gpus = 1"],
                 id="data-parallel-gpu-fraction"),
    pytest.param(tiny_lm_study(), ["--set", "study.resources.workers=4096", "--set",
                                   "model.batch_size=8192"], ["search"],
                 ["study.resources.workers = 4096", "4096 CPUs", "no trial could ever start"],
                 id="data-parallel-more-cpus-than-the-machine"),
]


@pytest.mark.parametrize(("text", "extra", "commands", "words"), BAD)
def test_bad_study_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys, text,
                                                         extra, commands, words):
    monkeypatch.chdir(tmp_path)  # a search without --out would write runs/<name> here
    (tmp_path / "study.toml").write_text(text, encoding="utf-8")
    before = snapshot(tmp_path)
    for command in commands:
        code, out, err = run_cli(capsys, command, "study.toml", *extra)
        assert code == 2, (command, out, err)
        assert "Traceback" not in out + err
        lines = [line for line in err.splitlines() if all(w in line for w in words)]
        assert lines, f"{command}: no line with {words} in:\n{err}"
        assert snapshot(tmp_path) == before, f"{command} wrote files"


def test_two_final_stages_are_one_problem_reported_alone(tmp_path, capsys):
    study = tmp_path / "study.toml"
    study.write_text(edit(("tokens = 8_192\n\n[[stage]]\nname = \"prereq\"",
                           "tokens = 8_192\nfinal = true\n\n[[stage]]\nname = \"prereq\"")))
    code, _, err = run_cli(capsys, "validate", str(study))
    assert code == 2
    assert err.splitlines() == [f"{study}: stage: only one stage may be final (it ends every "
                                "trial); these are: general, target"]


def test_a_storage_that_cannot_be_opened_stops_the_search_before_anything_is_written(
        tmp_path, capsys):
    not_a_db = tmp_path / "elsewhere.db"
    not_a_db.write_text("not a database")
    study = tmp_path / "study.toml"
    study.write_text(edit(('trials = 2', f'trials = 2\nstorage = "sqlite:///{not_a_db}"')))
    assert run_cli(capsys, "validate", str(study))[0] == 0  # validate never connects
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "search", str(study), "--out", str(tmp_path / "run"))
    assert code == 2 and "Traceback" not in out + err
    assert "error: study.storage: cannot open" in err and "not a database" in err
    assert snapshot(tmp_path) == before


# --- the run directory (--out) -------------------------------------------------------------


def out_cases(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "study.toml").write_text("# my own notes")
    (mine / "report.html").write_text("<p>my report</p>")
    (tmp_path / "a-file").write_text("x")
    return {
        "user-files": (mine, ["mine holds study.toml, report.html", "overwrite", "--out DIR"]),
        "a-file": (tmp_path / "a-file", ["a-file is a file", "--out DIR"]),
        "under-a-file": (tmp_path / "a-file" / "run", ["a-file is a file", "--out DIR"]),
        "name-too-long": (tmp_path / "x" / LONG, ["File name too long", "--out DIR"]),
    }


@pytest.mark.parametrize("case", ["user-files", "a-file", "under-a-file", "name-too-long"])
def test_an_out_directory_autostage_cannot_use_is_one_line_and_nothing_is_overwritten(
        tmp_path, capsys, case):
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    out, words = out_cases(tmp_path)[case]
    before = snapshot(tmp_path)
    code, stdout, err = run_cli(capsys, "search", str(study), "--out", str(out))
    assert code == 2 and "Traceback" not in stdout + err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert all(w in err for w in words), err
    assert snapshot(tmp_path) == before


def test_user_files_survive_a_search_that_fails_to_start(tmp_path, capsys):
    # a dead --address: the user's study.toml beside another study file is never replaced
    (tmp_path / "study.toml").write_text("# mine")
    study = tmp_path / "other.toml"
    study.write_text(STUDY)
    code, _, err = run_cli(capsys, "search", str(study), "--out", str(tmp_path), "--address",
                           "127.0.0.1:1")
    assert code == 2 and "study.toml" in err
    assert (tmp_path / "study.toml").read_text() == "# mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.toml", "study.toml"]


def test_an_earlier_runs_directory_and_the_study_files_own_folder_are_accepted(tmp_path):
    from autostage.rundir import RunDir, write_json
    from autostage.search_start import check_run_dir, is_run_dir

    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    check_run_dir(RunDir(tmp_path), study)  # --out is the study's own folder
    earlier = tmp_path / "earlier"
    write_json(earlier / "study.json", {"study": {}, "overrides": [], "source": "x"})
    (earlier / "study.toml").write_text(STUDY)
    (earlier / "report.html").write_text("<p>its report</p>")
    assert is_run_dir(earlier)
    check_run_dir(RunDir(earlier), study)
    (earlier / "study.json").write_text("{not json")
    assert not is_run_dir(earlier)


def test_a_read_only_out_directory_is_one_line(tmp_path, private_mounts):
    # a read-only mount: not writable even for root, which ignores a directory's mode bits
    (tmp_path / "study.toml").write_text(STUDY)
    (tmp_path / "locked").mkdir()
    done = private_mounts("""
        mount --bind "$TMP/locked" "$TMP/locked" && mount -o remount,bind,ro "$TMP/locked" \
            || exit 99
        "$PY" -m autostage.cli search "$TMP/study.toml" --out "$TMP/locked/run"
    """)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "not writable" in done.stderr
    assert list((tmp_path / "locked").iterdir()) == []


# --- resources a local Ray never has; which Ray a search joins ----------------------------


def test_resources_a_local_ray_never_has_are_refused_naming_the_field_and_the_machine():
    from autostage.search_start import resources_problems
    from autostage.spec import Resources

    def no_gpu() -> float:
        return 0.0

    gpu = resources_problems(Resources(gpus=1), 2, no_gpu)
    assert len(gpu) == 1 and "study.resources.gpus = 1" in gpu[0] and "no GPU" in gpu[0]
    assert "study.resources.gpus=0" in gpu[0] and "--address" in gpu[0]
    cpu = resources_problems(Resources(cpus=64), 2, no_gpu)
    assert len(cpu) == 1 and "study.resources.cpus = 64" in cpu[0] and "2 CPUs" in cpu[0]
    assert resources_problems(Resources(cpus=2, gpus=0.5), 2, lambda: 1.0) == []

    def never() -> float:
        raise AssertionError("GPUs are counted only when a trial asks for some")

    assert resources_problems(Resources(cpus=1), 2, never) == []
    workers = resources_problems(Resources(workers=4), 2, never)
    assert len(workers) == 1 and "study.resources.workers = 4 with cpus = 1 each" in workers[0]
    assert "at most 2 workers" in workers[0]
    gpus = resources_problems(Resources(workers=4, gpus=1), 8, lambda: 2.0)
    assert len(gpus) == 1 and "asks every trial for 4 GPUs" in gpus[0]
    assert "at most 2 workers" in gpus[0]


def test_a_search_asking_for_gpus_the_machine_lacks_exits_2_before_writing(tmp_path, capsys,
                                                                          monkeypatch):
    import autostage.search

    # whatever this host (or a Ray this test session runs) has: 2 CPUs, no GPU
    monkeypatch.setattr(autostage.search, "local_resources", lambda: (2.0, lambda: 0.0))
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "search", str(study), "--out", str(tmp_path / "run"),
                             "--set", "study.resources.gpus=1000")
    assert code == 2 and "Traceback" not in out + err
    assert "error: study.resources.gpus = 1000 per trial" in err
    assert snapshot(tmp_path) == before


@pytest.mark.slow
def test_without_address_a_search_starts_its_own_ray_whatever_ray_address_says(tmp_path):
    # RAY_ADDRESS names a cluster that is not there: Ray's default would try to join it
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "autostage.cli", "search", str(study), "--out",
         str(tmp_path / "run"), "--trials", "1"],
        capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run" / "trials" / "0" / "result.json").exists()


# --- a trial that raises; an LR of 0 ------------------------------------------------------


def test_trial_reports_a_trial_that_raises_as_failed_not_a_traceback(capsys):
    crash = ["trial", QUICKSTART, "--set", "model.crash_at_tokens=30000"]
    code, out, err = run_cli(capsys, *crash)
    assert code == 1
    assert "Traceback" not in out + err
    last = out.splitlines()[-1]
    # the reason a search records for the same trial: the exception's line
    assert last.startswith("failed: RuntimeError: injected crash after"), last
    code, out, err = run_cli(capsys, *crash, "-v")
    assert code == 1 and "Traceback" in err and "failed: RuntimeError" in out


def test_a_schedule_starting_at_lr_0_trains_instead_of_crashing(capsys):
    code, out, _ = run_cli(capsys, "trial", QUICKSTART, "--set",
                           "search.lr_schedule={one_cycle = {start_ratio = 0.0}}")
    assert code == 0, out
    assert out.splitlines()[-1].startswith("completed")


def test_the_toy_trainer_learns_nothing_at_lr_0():
    from autostage.toy import Toy, ToyRun, ToyTask

    run = ToyRun(Toy(noise=0.0), {"a": ToyTask()}, seed=0, workdir=None)
    run.begin_stage(SimpleNamespace(name="s", mix={"a": 1.0}))
    before = run.evaluate(["a"])["a"]["loss"]
    result = run.train(8192, lambda t: 0.0)
    assert result.tokens == 8192 and math.isfinite(result.metrics["loss"])
    assert run.evaluate(["a"])["a"]["loss"] == pytest.approx(before)
    run.train(8192, lambda t: 3e-3)
    assert run.evaluate(["a"])["a"]["loss"] < before


class _Zero:
    def multiplier(self, done: int, total: int) -> float:
        return 0.0


class _Negative:
    def multiplier(self, done: int, total: int) -> float:
        return -0.1 if done else 1.0


class _NaN:
    def multiplier(self, done: int, total: int) -> float:
        return math.nan


def test_the_lr_schedule_contract_allows_0_and_refuses_negative_or_non_finite_anywhere():
    from pydantic import Field

    from autostage.components import LRSchedule
    from autostage.testing.contracts import LRScheduleContract

    class ZeroAtItsBound(LRSchedule):  # one_cycle's start_ratio = 0: an LR of 0, allowed
        start: float = Field(0.5, ge=0, le=1)

        def multiplier(self, done: int, total: int) -> float:
            return self.start if done == 0 else 1.0

    class DipsBelowZero(ZeroAtItsBound):  # fine at its default, negative at start = 0
        def multiplier(self, done: int, total: int) -> float:
            return self.start - 0.1 if done == 0 else 1.0

    contract = LRScheduleContract()
    contract.test_multiplier_is_a_number_between_0_and_1(_Zero())
    contract.test_multiplier_stays_between_0_and_1_at_its_fields_bounds(ZeroAtItsBound())
    for bad in (_Negative(), _NaN()):
        with pytest.raises(AssertionError):
            contract.test_multiplier_is_a_number_between_0_and_1(bad)
    contract.test_multiplier_is_a_number_between_0_and_1(DipsBelowZero())
    with pytest.raises(AssertionError, match="bound"):
        contract.test_multiplier_stays_between_0_and_1_at_its_fields_bounds(DipsBelowZero())


# --- names: what a name may hold, and why -------------------------------------------------


@pytest.mark.parametrize(("source", "stage"), [
    ("letters", "letters"), ("Digits123", "Digits123"), ("9lives", "9lives"),
    ("under_score", "under_score"), ("dash-ed", "dash-ed"), ("dot.ted", "plain"),
    ("all_of-it.v2", "all_of-it2"),
])
def test_every_character_a_name_may_hold_validates_and_round_trips_its_keys(
        tmp_path, capsys, registry, source, stage):
    from autostage.check import load_study
    from autostage.space import compile_space

    text = edit(("[data.prereq]", f'[data."{source}"]'),
                ('data = "prereq"\ntokens = 8_192\n\n[[stage]]\nname = "target"',
                 f'data = "{source}"\ntokens = 8_192\n\n[[stage]]\nname = "target"'),
                ('name = "general"\ndata = "prereq"', f'name = "{stage}"\ndata = "{source}"'),
                ('prerequisite = "prereq"', f'prerequisite = "{source}"'),
                ("prereq = { low", f'"{source}" = {{ low'))
    path = tmp_path / "study.toml"
    path.write_text(text)
    code, out, err = run_cli(capsys, "validate", str(path))
    assert code == 0, err
    study = load_study(path, registry, [f"stage.{stage}.tokens=4096"])
    assert study.stage_named(stage).tokens == 4096
    keys = [p.key for p in compile_space(study, registry).mixes]
    assert mix_key("target", source) in keys
    assert all("/" not in k for k in keys)  # Ray splits its config keys on "/"
    assert parse_mix_key(mix_key(stage, source)) == (stage, source)
    parsed = parse_metric(eval_metric(source, "loss"))
    assert (parsed.source, parsed.name) == (source, "loss")
    # the same name with a "/" is refused: a search would read it as nesting (weight 0)
    path.write_text(text.replace(f'[data."{source}"]', f'[data."{source}/x"]'))
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and f"data.{source}/x: '{source}/x' is not a valid name" in err, err


@pytest.mark.parametrize(("section", "name"), [
    ("data", "a/b"), ("data", "a b"), ("data", "_hidden"), ("data", "[/x]"), ("data", "a:b"),
    ("stage", "a/b"), ("stage", "a.b"), ("stage", "a b"),
])
def test_a_name_with_other_characters_is_refused_saying_what_a_name_may_hold(
        tmp_path, capsys, section, name):
    if section == "data":
        text = edit(("[data.prereq]", f'[data."{name}"]'))
    else:
        text = edit(('name = "general"', f'name = "{name}"'))
    path = tmp_path / "study.toml"
    path.write_text(text)
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2
    assert f"{name!r} is not a valid name: use letters, digits and" in err, err


# --- user text through rich ---------------------------------------------------------------


HOSTILE = "[/x] [bold]runs/[exp]"


def test_user_strings_print_verbatim_in_the_live_view_and_the_summary(tmp_path):
    from rich.console import Console

    from autostage.keys import PLAN_KEY
    from autostage.live import SearchView, print_front, print_summary
    from autostage.records import TrialRecord, TrialStatus

    buffer = io.StringIO()
    console = Console(file=buffer, width=400, highlight=False)
    study = SimpleNamespace(study=SimpleNamespace(
        trials=2, modes=["min"], metrics=["eval.[/x].loss"], keep_models=0))
    view = SearchView(console)
    view.start(study, done=0, tokens=0)
    good = TrialRecord(0, TrialStatus.COMPLETED, values=(1.5,), tokens=10,
                       config={PLAN_KEY: HOSTILE})
    view.trial_ended(good)
    view.trial_ended(TrialRecord(1, TrialStatus.FAILED, reason=f"ValueError: {HOSTILE}",
                                 config={PLAN_KEY: HOSTILE}))
    console.print(view._panel())
    run_dir = tmp_path / "runs" / "[exp]"
    outcome = SimpleNamespace(run_dir=run_dir, records=[good], interrupted=False)
    print_summary(console, outcome, study.study)
    print_front(console, [good], ["eval.[/x].loss"])
    text = buffer.getvalue()
    assert text.count(HOSTILE) >= 5, text  # two trial lines, the panel, summary, front
    assert f"ValueError: {HOSTILE}" in text
    assert f"run directory: {run_dir}" in text
    assert "eval.[/x].loss" in text
