"""Ray callbacks in the driver: records in the run directory, the search's end (token budget,
target), the view."""

from __future__ import annotations

import posixpath
import shutil
import time
from pathlib import Path
from typing import Any

from ray import tune

from autostage.branching import BRANCH_POINT_FAILED
from autostage.checkpoint_store import CheckpointStore
from autostage.decisions import Eval
from autostage.models import ModelKeeper
from autostage.records import EvalRecord, TrialRecord, TrialStatus, without_replays
from autostage.rundir import RunDir
from autostage.search import messages as msg
from autostage.search import outage, time_limit
from autostage.spec import StudySection
from autostage.target import reaches
from autostage.trackers import Trackers
from autostage.trial_identity import TrialIdentity


class Recorder(tune.Callback):
    """Writes each trial's events and outcome into the run directory as they happen."""

    requeue: Any = None  # queues Optuna trial n's parameters again (StudySearch.requeue)
    patience: float = outage.PATIENCE_S  # how long the checkpoint store's operations are tried
    trackers: Trackers = Trackers()  # the study's experiment trackers (none: this one)

    def __init__(self, run: RunDir, stops: Any, view: Any, models: ModelKeeper,
                 study: StudySection, store: CheckpointStore, search_id: str,
                 population: Any = None, retention: Any = None) -> None:
        self.run, self.stops, self.view, self.models = run, stops, view, models
        self.store, self.search_id, self.population = store, search_id, population
        self.retention = retention
        self.started: dict[str, float] = {}  # of trials without a record yet
        self.study_seed, self.metrics = study.seed, study.metrics

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its run config for Tuner.restore, which autostage does not use; the
        # live view (locks, a terminal) stays in this process, and so do the branch points
        # (a resumed search rebuilds them from the records)
        return {**self.__dict__, "view": None, "population": None, "retention": None,
                "requeue": None, "trackers": Trackers()}

    def _who(self, trial: Any) -> TrialIdentity:
        """The trial a Ray trial is (its config is `TrialIdentity.to_config`)."""
        return TrialIdentity.from_config(trial.config, self.study_seed)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        who = self._who(trial)
        if who.branch is not None:  # the live view and report see it at once
            self.run.write_branch(who.number, who.branch)
        if self.population is not None:
            self.population.started(who.number, who.branch)
        self.trackers.trial_started(who.number, who.params, who.branch)
        self.view.trial_started(who)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        number = int(result[msg.TRIAL])
        if msg.RESUMED_AT in result:
            self.run.truncate_events(number, int(result[msg.RESUMED_AT]))
            self._forget_after(trial, int(result[msg.RESUMED_AT]))
            return
        for earlier in result.get(msg.EARLIER, []):
            self.run.append_event(number, (record := _eval_record(earlier)))
            self.trackers.eval(number, record)
            if self.population is not None:
                self.population.saw(number, record.eval)
        if msg.is_outcome(result):
            self._receive_model(number, trial, result)
        if not msg.is_eval(result):
            return  # an outcome, or evals flushed before a crash: no eval of its own
        checkpoint = result.get("checkpoint_dir_name")
        # normalised, as `CheckpointStore.resolve` gives a recorded name back: pins match
        path = posixpath.normpath(posixpath.join(trial.path, checkpoint)) if checkpoint else None
        # named relative to the store: a copied or moved run directory names its own files
        record = _eval_record(result, time.time(), self.store.name(path) if path else None)
        self.run.append_event(number, record)
        self.trackers.eval(number, record)
        if path and self.retention is not None:
            self.retention.saw(number, path)
        who = self._who(trial)
        if self.population is not None:
            self.population.saw(
                number, record.eval, index=int(result[msg.EVAL_INDEX]),
                params=dict(who.params), seed=who.seed,
                final_evals=int(result.get(msg.TIME_ATTR, 0)), checkpoint=record.checkpoint,
                path=path)
        self.view.trial_result(number, int(result[msg.TOKENS]), record.eval, who)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if (status := msg.outcome_of(last)) is not None:
            self._write(trial, status, last.get(msg.REASON, ""))
        elif (reason := self.stops.reason(trial.trial_id)) is not None:
            self._write(trial, TrialStatus.PRUNED, reason)
        # else interrupted (Ctrl-C): no record, so --resume re-queues it
        self.models.prune()

    def _receive_model(self, number: int, trial: Any, result: dict) -> None:
        """Move the model an outcome carries out of Ray's trial directory (in the checkpoint
        store) into the run's models/ (so it is kept once), or record why the trial's trainer
        exported none."""
        if checkpoint := result.get("checkpoint_dir_name"):
            try:
                self.models.take(number, posixpath.join(trial.path, checkpoint), self._take)
            except outage.StoreUnavailable as e:  # the trial's outcome stands: its model
                # is lost; the next trial the store cuts ends the search
                self.run.note_no_model(number, f"its model stayed in the store: {e.error}")
        elif (why := result.get(msg.NO_MODEL)) is not None:
            self.run.note_no_model(number, why)

    def _take(self, path: str, target: Path) -> None:
        """Move a model out of the store; from object storage retried while it fails."""
        def attempt() -> None:
            shutil.rmtree(target, ignore_errors=True)  # (a try cut short left part of it)
            self.store.take(path, target)

        if not self.store.remote:
            self.store.take(path, target)
            return
        outage.patiently(attempt, self.store.uri(self.store.path), self.patience,
                         "moving a model into the run directory")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Ray retries a crashed trial from its last checkpoint; with none it starts over, and
        # the evals of the failed attempt would stay in events.jsonl beside the new ones. (A
        # retry from a checkpoint says itself how many evals it keeps: RESUMED_AT.)
        number = (trial.config or {}).get(msg.TRIAL)
        if number is not None and trial.checkpoint is None:
            self.run.truncate_events(int(number), 0)
            self._forget_after(trial, 0)
        if number is not None:  # at its first failure: not after its retries fail too
            self._refuse_branch_point(trial, _error_reason(trial))

    def _forget_after(self, trial: Any, kept: int) -> None:
        """A retry keeps `kept` of the trial's own evals: the branch points after them go."""
        if self.population is not None:
            who = self._who(trial)
            self.population.forget_after(who.number, kept + who.prefix_evals)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        number = self._who(trial).number
        limit = time_limit.reason(self.search_id, number)
        if limit is None and (cut := self._cut_by_store(trial)) is not None:
            self._requeue_cut(trial, number, cut)
            return
        why = limit or _error_reason(trial)
        self._refuse_branch_point(trial, why)
        self._write(trial, TrialStatus.FAILED, why)

    def _cut_by_store(self, trial: Any) -> str | None:
        """The checkpoint store's failure that ended `trial` (None: it failed on its own)."""
        if not self.store.remote:
            return None  # a folder's errors are the disk's (full: see search._disk_full)
        try:
            return outage.cut_by_store(Path(trial.error_file).read_text())
        except (OSError, TypeError):
            return None

    def _requeue_cut(self, trial: Any, number: int, cut: str) -> None:
        """A trial the store cut is not finished: recorded as interrupted (not counted), its
        parameters (and branch point) queued again, so the search still runs its trials.
        Then the store must answer — at once if the worker already waited its patience for
        it, else within that patience — or the search ends in one line (raised here: Ray
        ends at once, where stopping its trials gracefully would write its own state to the
        store first, minutes against an endpoint that never answers), and --resume re-runs
        what it cut."""
        if self.requeue is not None:
            self.requeue(number)
        self._write(trial, TrialStatus.INTERRUPTED,
                    f"cut short by the checkpoint store: {cut}; re-queued with the same "
                    "parameters")
        watch = self.stops.budget.store
        watch.requeued += 1
        if watch.down is not None:
            return
        waited = cut.startswith("the checkpoint store ")  # (StoreUnavailable's own words)
        try:
            outage.wait_for(self.store, 0 if waited else self.patience,
                            f"trial {number} was cut short")
        except outage.StoreUnavailable as e:
            # (waited: the worker's patience is the time it has been away)
            watch.down = outage.StoreUnavailable(e.where, self.patience, e.error) if waited \
                else e
            raise watch.down from None

    def _refuse_branch_point(self, trial: Any, why: str) -> None:
        """A branch failed because its branch point would not load (`why`, its error, says
        so): no other trial is handed that point, which would fail the same way."""
        branch = self._who(trial).branch
        if self.population is not None and branch is not None and \
                why.startswith(BRANCH_POINT_FAILED):
            self.population.refuse(self.store.resolve(branch.checkpoint))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Ray stops the running trials without completing them when the budget is spent or a
        # trial reached the target; an interrupted search leaves them for --resume to re-queue.
        if (why := self.stops.budget.why()) is None:
            return
        for trial in trials:
            number = (trial.config or {}).get(msg.TRIAL)
            if number is not None and self.run.result(number) is None:
                last = trial.last_result or {}
                if (status := msg.outcome_of(last)) is not None:
                    # its outcome came with the report that spent the budget: it finished
                    self._write(trial, status, last.get(msg.REASON, ""))
                else:
                    self._write(trial, TrialStatus.PRUNED, why)
        self.models.prune()  # a model of a trial recorded only now is ranked like the rest

    def _write(self, trial: Any, status: TrialStatus, reason: str) -> None:
        last = trial.last_result or {}
        who = self._who(trial)
        number = who.number
        evals = self.run.events(number)
        values = last.get(msg.VALUES) if msg.is_outcome(last) else None
        if status == TrialStatus.PRUNED and values is None and evals and len(self.metrics) == 1:
            # what Optuna stores as a pruned trial's value: its last intermediate value, the
            # metric at its last eval (with several metrics Optuna stores none)
            value = evals[-1].eval.current.get(self.metrics[0])
            values = [value] if value is not None else None
        trained = who.charged(evals[-1].eval.tokens) if evals else 0
        record = TrialRecord(
            number=number, status=status, reason=reason,
            values=tuple(values) if values else None,
            tokens=int(last.get(msg.TOKENS, trained)), seed=who.seed, config=dict(who.params),
            started=self.started.pop(trial.trial_id, None), ended=time.time(),
            branch=who.branch, threads=last.get(msg.THREADS),
        )
        self.run.write_result(record.with_evals(without_replays(evals)))
        self.models.note(record)
        self.trackers.trial_ended(record, self.models.kept(number))
        self.view.trial_ended(record)
        if self.retention is not None:
            self.retention.ended(number)


def _eval_record(report: dict[str, Any], received: float | None = None,
                 checkpoint: str | None = None) -> EvalRecord:
    """The eval a report carries, whole: every field the trial loop recorded reaches
    events.jsonl without a list of keys here."""
    return EvalRecord(Eval.from_json(report[msg.EVAL]), received, checkpoint,
                      report.get(msg.WORKER))


def _error_reason(trial: Any) -> str:
    """The exception line of a trial's error (Ray keeps the whole traceback in a file)."""
    try:
        text = Path(trial.error_file).read_text()
    except (OSError, TypeError):
        return "the trial raised an error (no details were kept)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head, _, message = line.partition(":")
        if head.endswith(("Error", "Exception", "Interrupt")) and " " not in head:
            # autostage's own errors are sentences naming the field: no class needed
            return message.strip() if head.endswith(".AutostageError") else line
    return lines[-1] if lines else "the trial raised an error"


class SearchEnd(tune.Stopper):
    """Stops the whole search once the trials have trained the study's token budget, once a
    trial reached the study's target (it ended there, the others are stopped), or once the
    checkpoint store is gone for good."""

    def __init__(self, budget: int | None, already: int, target: float | None = None,
                 mode: str = "min") -> None:
        self.budget, self.already, self.target, self.mode = budget, already, target, mode
        self.store = outage.StoreWatch()
        self.tokens: dict[str, int] = {}
        self.reached: int | None = None  # the trial that reached the target

    def __call__(self, trial_id: str, result: dict) -> bool:
        if msg.TOKENS in result:
            self.tokens[trial_id] = int(result[msg.TOKENS])
        if self.reached is None and msg.outcome_of(result) == TrialStatus.COMPLETED and \
                reaches((result.get(msg.VALUES) or [None])[0], self.target, self.mode):
            self.reached = int(result[msg.TRIAL])
        return False

    def spent(self) -> int:
        return self.already + sum(self.tokens.values())

    def spent_out(self) -> bool:
        return self.budget is not None and self.spent() >= self.budget

    def why(self) -> str | None:
        """Why the search ends with trials still running (None: it does not)."""
        if self.reached is not None:
            return f"stopped: trial {self.reached} reached the study's target"
        if self.spent_out():
            return "stopped: the study's token budget was spent"
        return None

    def stop_all(self) -> bool:
        return self.why() is not None or self.store.down is not None
