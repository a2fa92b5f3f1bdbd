"""Optuna and Ray's trial schedulers, adapted to stage-by-stage trials."""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from ray.tune.schedulers import TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from autostage import ranking
from autostage.errors import AutostageError
from autostage.keys import BRANCH_ATTR, REQUEUED_ATTR
from autostage.records import TrialStatus
from autostage.search import messages as msg
from autostage.search import ray_internals
from autostage.search.optuna_internals import fixed_params
from autostage.trial_identity import TrialIdentity


class EarlyStops:
    """Why a trial ended without reporting its own outcome: a trial scheduler stopped it, the
    token budget ran out, or another trial reached the study's target. Anything else (Ctrl-C)
    is an interruption: such a trial gets no record and stays RUNNING in Optuna, so --resume
    re-queues it as after a killed driver."""

    def __init__(self, scheduler: str, budget: Any) -> None:
        self.scheduler, self.budget = scheduler, budget
        self.by_scheduler: set[str] = set()
        self.refused: AutostageError | None = None  # what a trial scheduler asked, refused

    def reason(self, trial_id: str) -> str | None:
        if trial_id in self.by_scheduler:
            return f"stopped early by the {self.scheduler} trial scheduler"
        return self.budget.why()


class StudySearch(OptunaSearch):
    """OptunaSearch that gives each trial its Optuna trial number beside the sampled
    parameters (see `messages`) and tells Optuna the truth at the end: failed trials FAIL,
    trials stopped early PRUNED, and only a trial's own final value (never a NaN or an
    intermediate eval) COMPLETE."""

    stops: EarlyStops | None = None  # set once the trial scheduler exists
    study_seed: int = 0  # `study.seed`: a trial's own seed follows from it
    population: Any = None  # an `autostage.branching.BranchPoints` when trials branch
    retention: Any = None  # a `retention.Retention`: pins the checkpoint a branch starts from

    def suggest(self, trial_id: str) -> dict | None:
        point = self._branch_point()
        if point is not None:
            # the sampler proposes the continuation only: the inherited parameters are fixed,
            # and the trial's Optuna record says where it branched from
            _study(self).enqueue_trial(point.inherited(), skip_if_exists=False,
                                         user_attrs={BRANCH_ATTR: point.branch().to_json()})
        params = super().suggest(trial_id)
        if params is None:
            return None
        who = TrialIdentity.from_optuna(_trials(self)[trial_id], self.study_seed, params)
        if who.branch is not None and self.retention is not None:
            self.retention.pin(who.number, who.branch)
        return who.to_config()

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing: Ray pickles its searcher (with the Optuna study and the storage's cache
        of every finished trial) beside its experiment state, which autostage never restores
        from — a resumed search rebuilds everything from the records and optuna.db. Written,
        it grew with every trial and was rewritten at every experiment checkpoint of every
        Tuner: ~8 GB of a 100,000-trial run directory, never read (issue 29)."""

    def _branch_point(self) -> Any:
        """Where the next trial branches from (None: it is fresh), the brancher asked."""
        if self.population is None or self._queued():
            return None
        try:
            return self.population.propose()
        except AutostageError as e:  # a brancher plugin broke its protocol: one line
            if self.stops is not None:
                self.stops.refused = e  # (Ray wraps a searcher's error: `_fit` says this)
            raise

    def _queued(self) -> bool:
        """Trials re-queued by --resume wait: they go first, and may be branches themselves."""
        return bool(_study(self).get_trials(deepcopy=False,
                                              states=(optuna.trial.TrialState.WAITING,)))

    def requeue(self, number: int) -> None:
        """Queue Optuna trial `number`'s parameters again (a branch: from the same point): it
        was cut short by the checkpoint store, not by anything of its own."""
        trial = next(t for t in _study(self).get_trials(deepcopy=False) if t.number == number)
        params = {**fixed_params(trial), **trial.params}
        who = TrialIdentity.from_optuna(trial, self.study_seed, params)
        attrs = {REQUEUED_ATTR: number}  # a resume then re-queues it no second time
        if who.branch is not None:
            attrs[BRANCH_ATTR] = who.branch.to_json()
        _study(self).enqueue_trial(params, skip_if_exists=False, user_attrs=attrs)
        if who.branch is not None and self.retention is not None:
            # its branch point is kept until the copy is handed out (and pinned as its own)
            self.retention.pin(_REQUEUED - number, who.branch)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Optuna's intermediate values, stepped by the trial's own eval count (Ray's iteration
        # counter restarts when a trial is restored); a retried trial's repeats are dropped.
        if not msg.is_eval(result) or isinstance(self.metric, list) or self.metric not in result:
            return
        if trial_id in _trials(self) and trial_id not in _completed(self):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                _trials(self)[trial_id].report(result[self.metric], result[msg.EVAL_INDEX])

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in _completed(self) or trial_id not in _trials(self):
            return
        trial = _trials(self)[trial_id]
        if result is not None and msg.is_eval(result):
            # a trial stopped at this eval: Ray gives it to no searcher's on_trial_result,
            # but it is the pruned trial's last intermediate value, hence its Optuna value
            self.on_trial_result(trial_id, result)
        values = (result or {}).get(msg.VALUES)
        status = msg.outcome_of(result or {})
        finite = values is not None and all(ranking.finite(v) is not None for v in values)
        if status is None and not error and self.stops and self.stops.reason(trial_id) is None:
            pass  # interrupted: left RUNNING for --resume to re-queue
        elif status is not None and status.ranked and finite:
            _study(self).tell(trial, values if len(values) > 1 else values[0])
        elif error or status == TrialStatus.FAILED:
            _study(self).tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            _study(self).tell(trial, state=optuna.trial.TrialState.PRUNED)
        _completed(self).add(trial_id)
        # Told: Optuna's storage holds the trial now. Ray's OptunaSearch keeps every trial
        # it asked for, and pickles them all into its searcher state at every save.
        del _trials(self)[trial_id]


_REQUEUED = -10**9  # retention pins of re-queued branches: keys no trial number has


class PausedTrial(AutostageError):
    """A trial scheduler asked to pause a trial, which autostage refuses (see `EvalsOnly`)."""

    def __init__(self, scheduler: str, number: int) -> None:
        super().__init__(
            f"trial scheduler '{scheduler}' paused trial {number}: autostage trial schedulers "
            "may only CONTINUE or STOP a trial (a paused Ray trial restarts from its last "
            "stage boundary and retrains tokens no record counts); see docs/plugins.md, "
            "register_trial_schedulers")


class EvalsOnly(TrialScheduler):
    """Shows a trial scheduler only the reports that carry a final-stage eval.

    Ray's schedulers read `time_attr` and the metric from every report; a stage-boundary
    report before the final stage has no `final_evals`, and a trial's outcome report (a
    failed one has no value) has no metric. A trial that ends is completed with its last
    eval, or removed when it never had one.

    A trial at its last eval (`max_t`) is never stopped: it has trained everything and its
    outcome is one report away. PAUSE is refused (`PausedTrial`): Ray would stop the trial and
    later restart it from its last checkpoint, retraining what it trained since.
    """

    def __init__(self, inner: TrialScheduler, stops: EarlyStops, max_t: int) -> None:
        super().__init__()
        self.inner, self.stops, self.max_t = inner, stops, max_t
        self.last: dict[str, dict] = {}

    @property
    def metric(self) -> Any:
        return self.inner.metric

    def supports_buffered_results(self) -> bool:
        return self.inner.supports_buffered_results

    def set_search_properties(self, metric: Any, mode: Any, **spec: Any) -> bool:
        return self.inner.set_search_properties(metric, mode, **spec)

    def on_trial_add(self, controller: Any, trial: Any) -> None:
        self.inner.on_trial_add(controller, trial)

    def on_trial_error(self, controller: Any, trial: Any) -> None:
        self.last.pop(trial.trial_id, None)
        self.inner.on_trial_error(controller, trial)

    def on_trial_result(self, controller: Any, trial: Any, result: dict) -> str:
        if msg.TIME_ATTR not in result or msg.is_outcome(result):
            return TrialScheduler.CONTINUE
        self.last[trial.trial_id] = result
        action = self.inner.on_trial_result(controller, trial, result)
        if action == TrialScheduler.PAUSE:  # Ray ends the search, wrapping this in its own
            self.stops.refused = PausedTrial(self.stops.scheduler, int(result[msg.TRIAL]))
            raise self.stops.refused
        if action == TrialScheduler.STOP and result[msg.TIME_ATTR] >= self.max_t:
            # its last eval: the trial has trained everything, and its outcome comes next
            return TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP:
            self.stops.by_scheduler.add(trial.trial_id)
        return action

    def on_trial_complete(self, controller: Any, trial: Any, result: dict) -> None:
        last = self.last.pop(trial.trial_id, None)
        if last is None:
            self.inner.on_trial_remove(controller, trial)
        else:
            self.inner.on_trial_complete(controller, trial, last)

    def on_trial_remove(self, controller: Any, trial: Any) -> None:
        self.last.pop(trial.trial_id, None)
        self.inner.on_trial_remove(controller, trial)

    def choose_trial_to_run(self, controller: Any) -> Any:
        return self.inner.choose_trial_to_run(controller)

    def debug_string(self) -> str:
        return self.inner.debug_string()


# OptunaSearch's own state, which no public API reaches (see ray_internals)
_study, _trials, _completed = (ray_internals.searcher_study, ray_internals.searcher_trials,
                               ray_internals.completed_trials)
