"""Registers the `toy` trainer and its `toy_task` dataset — a FAKE with analytic loss curves.

The classes live in the core, `autostage.toy`, so that the plugin authors' test kit
(`autostage.testing`) can run toy trials without importing the built-in plugins.
"""

from __future__ import annotations

from autostage.hookspecs import hookimpl
from autostage.toy import TOKEN_SCALE, Toy, ToyRun, ToyTask

__all__ = ["TOKEN_SCALE", "Toy", "ToyRun", "ToyTask"]


@hookimpl
def register_trainers(register):
    register("toy", Toy)


@hookimpl
def register_datasets(register):
    register("toy_task", ToyTask)
