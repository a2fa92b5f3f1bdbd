"""Faults inside a search (real Ray, real Optuna, the toy FAKE trainer with injected crashes):
retries, torn checkpoints, a stuck trial."""

import textwrap
from pathlib import Path

import pytest

from autostage.cli import main
from autostage.records import TrialStatus
from autostage.rundir import RunDir

STUDY = textwrap.dedent("""
    [study]
    name = "faults"
    metric = "eval.target.loss"
    trials = 2
    parallel = 2
    trial_scheduler = "fifo"
    retries = 1

    [model]
    trainer = "toy"
    crash_at_tokens = 20_000
    crash_once = true

    [data.prereq]
    dataset = "toy_task"
    [data.target]
    dataset = "toy_task"
    prerequisite = "prereq"

    [[stage]]
    name = "prereq"
    data = "prereq"
    tokens = 40_000

    [[stage]]
    name = "target"
    data = "target"
    tokens = 80_000
    final = true

    [search.optimizer.adamw]
    lr = { low = 1e-3, high = 1e-2, log = true }
""")


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
