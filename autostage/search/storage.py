"""The Optuna storage of a run directory, and squaring it with our records on resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna

from autostage.errors import AutostageError
from autostage.keys import BRANCH_ATTR, REQUEUED_ATTR
from autostage.ranking import finite
from autostage.records import TrialRecord, TrialStatus, without_replays
from autostage.rundir import RunDir
from autostage.search.optuna_internals import fixed_params
from autostage.search.warm import WARM_START, full_config
from autostage.space import SearchSpace
from autostage.spec import Study
from autostage.trial_identity import TrialIdentity


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

    path = url.removeprefix("sqlite:///")
    try:
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file: every later opener too
            if Path(path).stat().st_size:
                db.execute("PRAGMA quick_check")  # a damaged file fails here, not mid-search
        storage = optuna.storages.RDBStorage(url)
    except (sqlite3.DatabaseError, sqlalchemy.exc.DatabaseError) as e:
        raise AutostageError(
            f"{path} is damaged ({str(e).splitlines()[0]}): the Optuna storage cannot be "
            "read. The trial records beside it (trials/) are intact: restore the file from a "
            "backup, or start a new search that learns from this one (--out NEW, with "
            f"study.warm_start = [\"{Path(path).parent}\"])") from None

    def on_connect(connection: Any, record: Any) -> None:
        connection.execute("PRAGMA synchronous=NORMAL")

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect with the pragma
    return storage


def settle(storage: Any, name: str, run: RunDir) -> None:
    """Trials Ray ended when the token budget was spent never reached the searcher: tell
    Optuna what their records say — a trial whose outcome came with the report that spent
    the budget finished; a pruned one gets the value its record gives (Optuna's own rule for
    a pruned trial: its last intermediate value)."""
    recorded = {r.number: r for r in run.results() if r.status.finished}
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    study_id = storage.get_study_id_from_name(name)
    for trial in trials:
        record = recorded.get(trial.number)
        if trial.state != optuna.trial.TrialState.RUNNING or record is None:
            continue
        values = list(record.values) if record.values else None
        if record.status.ranked and values and all(finite(v) is not None for v in values):
            state = optuna.trial.TrialState.COMPLETE
        elif record.status == TrialStatus.PRUNED:
            state = optuna.trial.TrialState.PRUNED
        else:
            state, values = optuna.trial.TrialState.FAIL, None
        _set_state(storage, study_id, trial.number, state, values)


def reconcile(study: Study, space: SearchSpace, run: RunDir, storage: Any) -> tuple[int, int]:
    """Before a resume: give every trial the killed driver left running a record, re-queue its
    parameters so no work is lost, and count what is still to do. Returns (remaining trials,
    tokens already spent). Cut short at any point, a later resume finishes the job: each
    trial is re-queued at most once."""
    try:
        ot_study = optuna.load_study(study_name=study.study.name, storage=storage)
    except KeyError:
        return study.study.trials, 0  # killed before the first trial was asked for
    recorded = {r.number: r for r in run.results()}
    trials = ot_study.get_trials(deepcopy=False)
    study_id = storage.get_study_id_from_name(study.study.name)
    # re-queued already: a resume killed between a re-queue and its record must not queue
    # the same parameters twice (the copy carries the number it re-runs, in one commit)
    requeued = {t.user_attrs[REQUEUED_ATTR] for t in trials if REQUEUED_ATTR in t.user_attrs}
    for trial in trials:
        if WARM_START in trial.user_attrs:
            continue  # an earlier run's trial, given to the sampler: not this run's to redo
        state = trial.state
        if state.is_finished() and trial.number not in recorded:
            # Optuna heard the outcome, the driver died before writing it: nothing to re-run
            run.write_result(_recovered(trial, study, space, run))
        elif state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING):
            # in this order: cut short anywhere, the next resume re-queues it once more rather
            # than never (a trial run twice costs compute; a lost one, a result)
            previous = recorded.get(trial.number)
            if previous is None or previous.status != TrialStatus.INTERRUPTED:
                _requeue(trial, study, space, run, ot_study, again=trial.number not in requeued)
            _set_state(storage, study_id, trial.number, optuna.trial.TrialState.FAIL)
    records = run.results()
    finished = sum(r.status.finished for r in records)
    spent = sum(r.tokens for r in records)
    if study.study.token_budget is not None and spent >= study.study.token_budget:
        return 0, spent  # the budget is spent: nothing more to run
    return study.study.trials - finished, spent


def _set_state(storage: Any, study_id: int, number: int, state: Any,
               values: list[float] | None = None) -> None:
    """Set trial `number`'s state and values in the storage itself. `study.tell` serves
    neither caller: it refuses a WAITING trial (a queued one `reconcile` fails), gives a
    PRUNED trial Optuna's last intermediate value, not the one its record holds (`settle`:
    the searcher never heard that eval), and runs the sampler's `after_trial` with whatever
    sampler `load_study` made. Both storage methods are public: every Optuna storage has
    them."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
    storage.set_trial_state_values(trial_id, state, values)


def _requeue(trial: Any, study: Study, space: SearchSpace, run: RunDir, ot_study: Any,
             again: bool) -> None:
    """Record a trial the killed driver left running (or queued) as interrupted and, unless
    an earlier resume did (`again` False), queue its parameters again in one commit with the
    number it re-runs. A queued trial that never started holds its parameters as
    fixed_params; one cut while Optuna sampled it holds some: the fixed ones (a branch's
    inherited parameters) are kept with them, or its re-run would sample those anew."""
    params = {**fixed_params(trial), **trial.params}
    who = TrialIdentity.from_optuna(trial, study.study.seed, params)
    if params and again:  # (no params: cut before its sampling; a fresh trial takes its place)
        attrs = {REQUEUED_ATTR: trial.number}
        if who.branch is not None:  # a branch stays one
            attrs[BRANCH_ATTR] = who.branch.to_json()
        ot_study.enqueue_trial(params, skip_if_exists=False, user_attrs=attrs)
    run.write_result(TrialRecord(
        trial.number, TrialStatus.INTERRUPTED,
        "the search was interrupted; " + ("re-queued with the same parameters" if params
                                          else "it had no parameters yet"),
        seed=who.seed, config=full_config(space, params), branch=who.branch))


_RECOVERED = {optuna.trial.TrialState.COMPLETE: TrialStatus.COMPLETED,
              optuna.trial.TrialState.PRUNED: TrialStatus.PRUNED,
              optuna.trial.TrialState.FAIL: TrialStatus.FAILED}


def _recovered(trial: Any, study: Study, space: SearchSpace, run: RunDir) -> TrialRecord:
    """The record of a trial Optuna holds as finished: its state and values from Optuna, its
    evals and tokens from its events.jsonl."""
    evals = without_replays(run.events(trial.number))
    who = TrialIdentity.from_optuna(trial, study.study.seed)
    return TrialRecord(
        trial.number, _RECOVERED[trial.state],
        "recovered from the Optuna storage: the search stopped before writing this result",
        values=tuple(trial.values) if trial.values else None,
        tokens=who.charged(evals[-1].eval.tokens) if evals else 0, branch=who.branch,
        seed=who.seed, config=full_config(space, trial.params),
        started=trial.datetime_start.timestamp() if trial.datetime_start else None,
        ended=trial.datetime_complete.timestamp() if trial.datetime_complete else None,
        evals=tuple(evals))


def sampler_seed(study_seed: int, storage: Any, name: str) -> int:
    """The seed of this session's sampler. A resumed search builds a new sampler: seeded with
    `study.seed` again it replayed its first suggestions (trials 0-4 again as 7-11, an
    interrupted trial's parameters twice), so a study that already holds trials gets a seed
    derived from how many: deterministic, and a different sequence for each session."""
    try:
        held = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        held = 0
    return study_seed if held == 0 else (study_seed + 1_000_003 * held) % 2**32
