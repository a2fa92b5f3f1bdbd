"""`autostage search`: Ray Tune runs the trials, Optuna samples them. This package is the
only part of autostage that imports Ray, and importing it imports neither Ray nor Optuna: its
pure modules (messages, retention) load without them, and a search starts here.

Trials are counted by autostage, not by Ray or Optuna (Ray's restore has holes, Optuna's
`n_trials` means "this many more"): the Optuna storage in the run directory holds the sampler's
history, our records say which trials finished, and a resumed search starts a fresh Tuner for
exactly the trials still missing. A trial interrupted by a killed driver is re-run with the same
parameters.

The steps of a search are `lifecycle.Search`'s; one Tuner is `tuner.build_tuner`'s; Ray
itself `ray_start`'s; the trial in its worker `worker`'s; the driver's callbacks `driver`'s.

`autostage.search(study, ...)`, the Python API (`autostage.api.search`), is this package
called: Python sets a package's attribute to its subpackage once that is imported, so the
name can only stay callable if the package is (`_Callable`).
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

# Ray's settings, here because this runs before any module of the package imports Ray:
# no CSV/TensorBoard loggers per trial (overhead, clutter).
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")
# Ray rewrites its whole experiment state (~30 kB per trial: a 1,000-trial search's is 32 MB)
# every 10-20 s by default, a cost that grows with the trials. autostage never restores from
# it (a resumed search starts from our records and optuna.db), so every 10 minutes is enough;
# Ray still writes it once at the end.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
# A trial's last report (its outcome) carries no metric: a failed trial has none to give.
os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
# Trials run where `autostage search` was started, so a study's relative paths (data files,
# a pretrained directory) mean in a trial what they meant to `validate`. (Ray's default runs
# each trial in a directory of its own, where `path = "corpus.txt"` is not found.)
os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")


def run_search(study: Any, registry: Any, run: Any, *, resume: bool, address: str | None,
               view: Any, verbose: bool = False) -> Any:
    """Run (or resume) the study's search into `run` (a `RunDir`); return its
    `lifecycle.SearchOutcome` when it ends."""
    from autostage.search.lifecycle import Search

    return Search(study, registry, run, resume=resume, address=address, view=view,
                  verbose=verbose).run_all()


def local_resources() -> tuple[float, Any]:
    """The CPUs, and a callable counting the GPUs, a search without --address can give its
    trials (`ray_start.local_resources`)."""
    from autostage.search.ray_start import local_resources as found

    return found()


class _Callable(types.ModuleType):
    """This package, callable as `autostage.search(...)`: `autostage.api.search`."""

    def __call__(self, study: Any, **options: Any) -> Any:
        """Search a study from Python and return its `SearchResult`: see
        `autostage.api.search` for the options (trials, parallel, out, resume, address,
        checkpoints, sets, quiet, verbose, registry)."""
        from autostage.api import search

        return search(study, **options)


sys.modules[__name__].__class__ = _Callable
