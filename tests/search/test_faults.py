"""Faults inside a search (real Ray, real Optuna, the toy FAKE trainer with injected crashes):
retries, torn checkpoints, a stuck trial."""


import pytest
from support import STUDIES
from support.studies import toy_study

from autostage.cli import main
from autostage.records import TrialStatus
from autostage.rundir import RunDir

STUDY = toy_study(
    "study.name=faults", "study.retries=1",
    "model.crash_at_tokens=20_000", "model.crash_once=true",
    "stage.prereq.tokens=40_000", "stage.target.tokens=80_000")


def search(tmp_path, study=STUDY, *overrides):
    path = tmp_path / "study.toml"
    path.write_text(study)
    sets = [arg for o in overrides for arg in ("--set", o)]
    code = main(["search", str(path), "--out", str(tmp_path / "run"), *sets])
    return code, RunDir(tmp_path / "run")


@pytest.mark.slow
def test_a_trial_retried_from_scratch_records_each_eval_once(ray_session, tmp_path):
    code, run = search(tmp_path)  # the crash comes before the first stage boundary
    assert code == 0
    for r in run.results():
        assert r.status == TrialStatus.COMPLETED and r.tokens == 122_880
        tokens = [e.eval.tokens for e in run.events(r.number)]
        assert tokens == sorted(set(tokens)) and len(tokens) == 8
        assert (run.trial_dir(r.number) / "crashed-once").exists()


def test_a_damaged_optuna_db_is_one_clear_error_naming_the_file(tmp_path):
    import optuna

    from autostage.errors import AutostageError
    from autostage.search.storage import open_storage

    path = tmp_path / "optuna.db"
    url = f"sqlite:///{path}"
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20)
    del study
    data = bytearray(path.read_bytes())
    data[100:len(data) // 2] = bytes(len(data) // 2 - 100)  # a disk error, a bad copy
    path.write_bytes(bytes(data))
    for side in ("optuna.db-wal", "optuna.db-shm"):
        (tmp_path / side).unlink(missing_ok=True)
    with pytest.raises(AutostageError, match=f"{path} is damaged .*trials/.* are intact"):
        open_storage(url)


@pytest.mark.slow
def test_a_trial_that_hangs_is_failed_at_its_time_limit_and_the_search_goes_on(ray_session,
                                                                              tmp_path):
    study = STUDY.replace("crash_at_tokens = 20_000\ncrash_once = true",
                          "").replace("retries = 1", "retries = 0\ntrial_time_limit = 4")
    study += "\n[search.trainer.toy]\nhang_at_tokens = [0, 30_000]\n"
    code, run = search(tmp_path, study, "study.trials=4")
    records = run.results()
    assert code == 0 and len(records) == 4
    for r in records:
        if r.config["trainer.toy.hang_at_tokens"]:
            assert r.status == TrialStatus.FAILED
            assert r.reason == ("the trial ran past its time limit of 4 s "
                                "(study.trial_time_limit)")
        else:
            assert r.status == TrialStatus.COMPLETED


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_resume_finishes_once_there_is_space(private_mounts,
                                                                        tmp_path):
    study = STUDIES / "quickstart-toy.toml"
    search = f'"$PY" -m autostage.cli search {study} --out "$TMP/disk/run" --set study.trials=30'
    done = private_mounts(f"""
        mkdir -p "$TMP/disk" && mount -t tmpfs -o size=600k tmpfs "$TMP/disk" || exit 99
        {search} > "$TMP/first.out" 2> "$TMP/first.err"; echo $? > "$TMP/first.rc"
        mount -o remount,size=64m "$TMP/disk" || exit 99  # space is back
        {search} --resume > "$TMP/second.out" 2>&1; echo $? > "$TMP/second.rc"
        "$PY" -c "from autostage.rundir import RunDir; from pathlib import Path
print(sum(r.status.finished for r in RunDir(Path('$TMP/disk/run')).results()))"
    """)
    assert done.returncode == 0, done.stderr
    read = lambda name: (tmp_path / name).read_text()  # noqa: E731
    assert read("first.rc").strip() == "2"
    assert read("first.err").strip().splitlines() == [
        f"error: the disk holding {tmp_path / 'disk' / 'run'} is full (no space left on "
        "device): free some space, then continue the search with --resume (every trial "
        "recorded so far is kept)"]
    assert read("second.rc").strip() == "0", read("second.out")[-2000:]
    assert done.stdout.strip() == "30"


@pytest.mark.slow
def test_relative_data_paths_mean_in_a_search_what_they_mean_to_validate(tmp_path):
    import subprocess
    import sys

    (tmp_path / "corpus.txt").write_text("Some text to learn from, over and over. " * 200)
    (tmp_path / "study.toml").write_text(toy_study(
        "study.name=relative", "study.metric=eval.general.loss",
        "data.general.dataset=text", "data.general.path=corpus.txt",  # relative, as written
        "stage.general.data=general", "stage.general.tokens=20_000", "stage.general.final=true",
        data=("general",), stages=("general",), drop=("search",)))
    done = subprocess.run([sys.executable, "-m", "autostage.cli", "search", "study.toml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
    records = RunDir(tmp_path / "runs" / "relative").results()
    assert [r.status for r in records] == [TrialStatus.COMPLETED] * 2
