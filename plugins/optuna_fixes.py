"""Optuna samplers made picklable where an Optuna release broke it. Imported by `samplers`'
`build` only (this module imports Optuna: validation stays fast).

Ray pickles the searcher, with its sampler, when a Tuner starts and at every experiment
checkpoint; a sampler pickle refuses ends every search at its start.
"""

from __future__ import annotations

import threading
from typing import Any

import optuna


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II without the pickle failure of Optuna 5.1: its genetic-algorithm base
    holds a `threading.Lock` (guarding the generation cache), which pickle refuses. A lock
    has no state worth keeping: it is left out and a fresh one made on unpickling."""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()  # (unused by an Optuna without one)
