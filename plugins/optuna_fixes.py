"""Optuna samplers made picklable where an Optuna release broke it. Imported by `samplers`'
`build` only (this module imports Optuna: validation stays fast).

Ray pickles the searcher, with its sampler, when a Tuner starts and at every experiment
checkpoint; a sampler pickle refuses ends every search at its start.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna

_LOCKS = {type(threading.Lock()): "Lock", type(threading.RLock()): "RLock"}
_LEFT_OUT = "_autostage_locks"  # in a pickled state: the locks left out, name -> kind


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II without the pickle failure of Optuna 5.1: its genetic-algorithm base
    holds a `threading.Lock` (guarding the generation cache), which pickle refuses. A lock
    has no state worth keeping: it is left out and a fresh one made on unpickling. Locks are
    found by their type, not by Optuna's private name for them: a rename cannot bring the
    failure back."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        locks = {name: _LOCKS[type(value)] for name, value in state.items()
                 if type(value) in _LOCKS}
        for name in locks:
            del state[name]
        state[_LEFT_OUT] = locks
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        locks = state.pop(_LEFT_OUT, {})
        self.__dict__.update(state)
        for name, kind in locks.items():
            setattr(self, name, getattr(threading, kind)())
