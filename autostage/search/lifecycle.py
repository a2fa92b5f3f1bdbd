"""A search, step by step: prepare (the search space, the Optuna storage, a resume's
reconciling), Ray (its own or a cluster's), the stores a search keeps (models, checkpoints,
branch points), Ray Tuners until the study's trials are done, and its outcome."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from autostage import first_trials
from autostage.branching import BranchPoints
from autostage.checkpoint_store import CheckpointStore, open_store
from autostage.errors import AutostageError, causes
from autostage.models import ModelKeeper
from autostage.records import Branch, TrialRecord
from autostage.rundir import RunDir
from autostage.search import cluster, outage
from autostage.search.ray_start import check_address, ray_for
from autostage.search.retention import Retention
from autostage.search.storage import open_storage, reconcile, sampler_seed, settle
from autostage.search.tuner import build_tuner
from autostage.search.warm import seed_sampler
from autostage.spec import Study
from autostage.target import reaches
from autostage.trackers import Trackers
from autostage.trial_identity import TrialIdentity

#: trials per Ray Tuner: Ray keeps each trial of a Tuner in memory until its fit() returns
TRIALS_PER_TUNER = 500


@dataclass
class SearchOutcome:
    run_dir: Path
    requested: int
    records: list[TrialRecord]  # outcomes, without their evals
    interrupted: bool


class Search:
    """One `autostage search` (or --resume) of `study` into `run`."""

    def __init__(self, study: Study, registry: Any, run: RunDir, *, resume: bool,
                 address: str | None, view: Any, verbose: bool = False) -> None:
        self.study, self.registry, self.run, self.resume = study, registry, run, resume
        self.address, self.view, self.verbose = address, view, verbose
        self.space: Any = None  # autostage.space.SearchSpace, once prepared
        self.storage: Any = None  # Optuna's, once prepared
        self.models: ModelKeeper | None = None  # the rest once Ray runs
        self.store: CheckpointStore | None = None
        self.population: BranchPoints | None = None
        self.retention: Retention | None = None
        self.trackers = Trackers()  # the study's experiment trackers, while Ray runs

    def run_all(self) -> SearchOutcome:
        remaining, spent = self.prepare()
        if remaining > 0:
            with ray_for(self.address, self.verbose):
                self.keep()
                self.trackers = Trackers.open(self.registry, self.study, self.run.path,
                                              self.view.note)
                try:
                    self.run_tuners(remaining, spent)
                finally:
                    self.trackers.close()
        return self.outcome()

    # --- the steps ----------------------------------------------------------------------

    def prepare(self) -> tuple[int, int]:
        """Everything before Ray: the trials still to run and the tokens already spent."""
        from autostage.space import compile_space

        check_address(self.address)
        s = self.study.study
        self.space = compile_space(self.study, self.registry)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.run.path.mkdir(parents=True, exist_ok=True)
        self.storage = open_storage(s.storage or self.run.storage_url)
        if not self.resume and s.name in optuna.get_all_study_names(self.storage):
            raise AutostageError(f"the Optuna storage already holds a study named '{s.name}': "
                                 "continue it with --resume and --out the run directory that "
                                 "started it, or rename the study (--set study.name=...)")
        if not self.resume and (s.warm_start or s.first_trials):
            self._seed_study()
        remaining, spent = (reconcile(self.study, self.space, self.run, self.storage)
                            if self.resume else (s.trials, 0))
        if self.resume and self._target_reached(self.run.results()):
            remaining = 0  # the search stopped at its target: nothing is left to run
        self.view.start(self.study, done=s.trials - remaining, tokens=spent)
        return remaining, spent

    def keep(self) -> None:
        """What the search keeps beside its records: models, checkpoints, branch points."""
        s = self.study.study
        if self.address is not None:
            cluster.check(self.study, self.registry, self.run.path.resolve())
        self.models = ModelKeeper(self.run, s.keep_models, s.modes)
        self.store = open_store(s.checkpoints, self.run.path)
        self.population = self._branch_points()
        self.retention = Retention(self.store, s.keep_checkpoints, self.population)
        if self.resume:
            self.retention.note_records(self.run.trials(), self._waiting_branches())

    def run_tuners(self, remaining: int, spent: int) -> None:
        """Ray Tuners until the study's trials are done, it is interrupted, or its token
        budget is spent. Ray Tune keeps every trial of a Tuner in memory until fit() returns
        (~0.1 MB each): trials run in Tuners of at most TRIALS_PER_TUNER, so Ray's share of
        the driver's memory stays bounded however many trials a study has."""
        part = 0
        while remaining > 0:
            batch = min(remaining, TRIALS_PER_TUNER)
            stops = self._one_tuner(batch, spent, part)
            records = self.run.results()
            left = self.study.study.trials - sum(r.status.finished for r in records)
            # trials the checkpoint store cut were queued again: the next Tuner runs them
            if left > remaining - batch + stops.budget.store.requeued or \
                    stops.budget.why() is not None:
                return  # interrupted (Ctrl-C), the budget is spent or the target reached
            remaining, spent, part = left, sum(r.tokens for r in records), part + 1

    def outcome(self) -> SearchOutcome:
        s = self.study.study
        records = self.run.results()
        finished = sum(r.status.finished for r in records)
        budget_spent = (s.token_budget is not None
                        and sum(r.tokens for r in records) >= s.token_budget)
        return SearchOutcome(self.run.path, s.trials, records, finished < s.trials
                             and not budget_spent and not self._target_reached(records))

    def _target_reached(self, records: list[TrialRecord]) -> bool:
        """A finished trial reached `study.target`: the search is done."""
        s = self.study.study
        return any(r.status.ranked and reaches(r.value, s.target, s.modes[0]) for r in records)

    # --- inside the steps -------------------------------------------------------------------

    def _seed_study(self) -> None:
        """What the search starts from besides its sampler: earlier runs' trials (warm
        start) and the user's own configurations, queued to run first (`first_trials`)."""
        s = self.study.study
        directions = ["minimize" if m == "min" else "maximize" for m in s.modes]
        ot_study = optuna.create_study(study_name=s.name, storage=self.storage,
                                       directions=directions)
        if s.warm_start:
            self.view.note(seed_sampler(self.study, self.space, ot_study,
                                        self.registry).lines())
        first_trials.enqueue(ot_study, s.first_trials, self.space)

    def _one_tuner(self, batch: int, spent: int, part: int) -> Any:
        experiment = f"ray-{time.strftime('%Y%m%d-%H%M%S')}" + (f"-{part}" if part else "")
        # (a Tuner writes to the store as it starts: retried while the store is away)
        tuner, stops = outage.on_store(self.store, outage.patience(), "starting Ray Tune",
                                       functools.partial(build_tuner, self, batch, spent,
                                                         experiment))
        _fit(tuner, stops, self.storage, self.study, self.run, self.store)
        self.store.drop_ray_state(experiment)
        return stops

    def _branch_points(self) -> BranchPoints | None:
        """The branch points of a study whose trial scheduler branches (None: it does not);
        a resumed search starts with those its records hold."""
        s = self.study.study
        brancher = self.registry.create("trial_scheduler", s.trial_scheduler,
                                        s.trial_scheduler_settings).branching(s.metrics[0],
                                                                              s.modes[0])
        if brancher is None:
            return None
        points = BranchPoints(brancher, s.metrics[0], sampler_seed(s.seed, self.storage, s.name),
                              self.space.plans)
        if self.resume:
            final = self.study.final.name if self.study.final else None
            points.note_records(self.run.trials(), final, self.store.resolve,
                                self.store.missing)
        return points

    def _waiting_branches(self) -> list[Branch]:
        """The branched trials a resume re-queued: their checkpoints must wait for them."""
        waiting = optuna.load_study(study_name=self.study.study.name,
                                    storage=self.storage).get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        return [b for t in waiting if (b := TrialIdentity.from_optuna(t, 0).branch) is not None]


def _fit(tuner: Any, stops: Any, storage: Any, study: Study, run: RunDir,
         store: CheckpointStore) -> None:
    """Run the Tuner; what ends it early is one line (a refused trial scheduler or brancher,
    a full disk, the checkpoint store gone), never Ray's traceback."""
    try:
        tuner.fit()
        settle(storage, study.study.name, run)
    except Exception as e:
        if stops.refused is not None:
            raise stops.refused from None
        if _disk_full(e):
            raise AutostageError(
                f"the disk holding {run.path} is full (no space left on device): free "
                "some space, then continue the search with --resume (every trial "
                "recorded so far is kept)") from None
        if stops.budget.store.down is not None:  # (Ray then fails to list what it wrote)
            raise stops.budget.store.down from None
        if store.remote and outage.store_error_in(e) is not None:
            # Ray reads back what the trials wrote as fit() ends (its ResultGrid, unused
            # here): the store failing then costs nothing once it answers again; the loop
            # counts the trials recorded, and a resume runs any that are not
            outage.wait_for(store, outage.patience(), "Ray Tune ending")
            settle(storage, study.study.name, run)
            return
        raise
    if stops.budget.store.down is not None:  # the store stayed away: Ray stopped the trials
        raise stops.budget.store.down from None


def _disk_full(error: BaseException | None) -> bool:
    """Whether `error`, or an error it came from, is a full disk: an OSError (ENOSPC, EDQUOT)
    from our own writes, SQLite's "database or disk is full" through SQLAlchemy and Optuna, or
    either as text in the traceback Ray wraps its callbacks' errors in."""
    import errno

    return any((isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT))
               or any(text in str(e) for text in ("No space left on device",
                                                  "database or disk is full"))
               for e in causes(error))
