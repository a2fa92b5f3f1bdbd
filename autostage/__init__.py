"""autostage: search training strategies — stage order, LR path, optimizer — not only
hyperparameters. See README.md.

A search from Python, as `autostage search` runs it (`examples/notebook_search.py`):

    result = search("study.toml", trials=8, sets=["study.seed=3"])   # autostage.api.search
    result.best, result.records, result.trials (a pandas DataFrame), result.report()
    SearchResult.open("runs/x")                    # an earlier search's run directory

Running trials from Python (`examples/python_api.py`):

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
    "search": "autostage.search",  # the package, callable: `autostage.api.search`
    "SearchResult": "autostage.api",
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
    module = import_module(_HOMES[name])
    value = module if name == "search" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
