"""The Optuna storage of a run directory, and squaring it with our records on resume."""

from __future__ import annotations

from typing import Any

import optuna

from autostage.records import TrialRecord, TrialStatus
from autostage.rundir import RunDir
from autostage.search.warm import WARM_START
from autostage.spec import Study


def open_storage(url: str) -> Any:
    """Optuna's RDB storage; for SQLite in write-ahead-log mode with `synchronous=NORMAL`.

    Every eval writes an intermediate value: with SQLite's defaults each commit syncs the
    disk (~6 ms here), a third of the search's overhead. WAL + NORMAL survives a killed
    process (what --resume needs); only a power cut may lose the last commits.
    """
    if not url.startswith("sqlite:///"):
        return optuna.storages.RDBStorage(url)
    import sqlite3

    import sqlalchemy

    with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
        db.execute("PRAGMA journal_mode=WAL")  # kept in the file: every later opener uses it
    storage = optuna.storages.RDBStorage(url)

    def on_connect(connection: Any, record: Any) -> None:
        connection.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect with the pragma
    return storage


def settle(storage: Any, name: str, run: RunDir) -> None:
    """Trials Ray stopped for the token budget never reached the searcher: tell Optuna, with
    the value their record gives (Optuna's own rule for a pruned trial: its last
    intermediate value)."""
    pruned = {r.number: r for r in run.results() if r.status == TrialStatus.PRUNED}
    for trial in optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.RUNNING and trial.number in pruned:
            values = pruned[trial.number].values
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.PRUNED,
                                           list(values) if values else None)


def reconcile(study: Study, run: RunDir, storage: Any) -> tuple[int, int]:
    """Before a resume: give every trial the killed driver left running a record, re-queue its
    parameters so no work is lost, and count what is still to do. Returns (remaining trials,
    tokens already spent)."""
    try:
        ot_study = optuna.load_study(study_name=study.study.name, storage=storage)
    except KeyError:
        return study.study.trials, 0  # killed before the first trial was asked for
    recorded = {r.number: r for r in run.results()}
    for trial in ot_study.get_trials(deepcopy=False):
        if WARM_START in trial.user_attrs:
            continue  # an earlier run's trial, given to the sampler: not this run's to redo
        state = trial.state
        if state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING) or (
                state.is_finished() and trial.number not in recorded):
            if state.is_finished() is False:
                storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            previous = recorded.get(trial.number)
            if previous is None or previous.status != TrialStatus.INTERRUPTED:
                ot_study.enqueue_trial(trial.params, skip_if_exists=False)
                run.write_result(TrialRecord(
                    trial.number, TrialStatus.INTERRUPTED,
                    "the search was interrupted; re-queued with the same parameters",
                    config=trial.params))
    records = run.results()
    finished = sum(r.status.finished for r in records)
    spent = sum(r.tokens for r in records)
    if study.study.token_budget is not None and spent >= study.study.token_budget:
        return 0, spent  # the budget is spent: nothing more to run
    return study.study.trials - finished, spent
