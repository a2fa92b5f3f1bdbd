"""autostage: search training strategies — stage order, LR path, optimizer — not only
hyperparameters. See README.md.

The public API, for running trials from Python (`examples/python_api.py`):

    registry = load_registry()                     # every installed plugin
    study = load_study("study.toml", registry)     # StudyError lists every problem
    params = sample_config(study, registry, seed=0)
    result = prepare_trial(study, registry, params, seed=0).run(report=print)

Plugin authors find the base classes in `autostage.components`, what a stage policy returns
in `autostage.decisions`, the hooks in `autostage.hookspecs` and test kits in
`autostage.testing`. Names are imported on first use, so `autostage --help` starts fast.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("autostage")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_HOMES = {
    "load_registry": "autostage.host",
    "load_study": "autostage.check",
    "sample_config": "autostage.build",
    "prepare_trial": "autostage.build",
    "ReadyTrial": "autostage.build",
    "TrialResult": "autostage.trial",
    "Eval": "autostage.decisions",
    "History": "autostage.decisions",
    "TrialStatus": "autostage.records",
    "TrialRecord": "autostage.records",
    "EvalRecord": "autostage.records",
    "RunDir": "autostage.rundir",
    "AutostageError": "autostage.errors",
    "StudyError": "autostage.errors",
}

__all__ = ["__version__", *_HOMES]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'autostage' has no attribute '{name}'")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
