"""Run one trial from Python, no Ray: load a study, sample a configuration, build its
components, and run its stages with a report callback that prints every eval.

    python examples/python_api.py [STUDY] [SEED]     (default: studies/quickstart-toy.toml)

The same steps `autostage trial` takes; a search runs them in Ray workers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from autostage import Eval, TrialResult, load_registry, load_study, prepare_trial, sample_config
from autostage.decisions import describe

STUDY = Path(__file__).resolve().parents[1] / "studies" / "quickstart-toy.toml"


def print_eval(ev: Eval) -> None:
    """The report callback: called by the trial loop after every eval."""
    print(f"{ev.stage:<10} tokens {ev.tokens:>8,}  lr {ev.lr:.2e}  "
          f"{ev.watch} {ev.value:.4f}  -> {describe(ev.decision)}")


def run_one(study_path: str | Path = STUDY, seed: int = 0) -> TrialResult:
    registry = load_registry()  # every installed plugin, built-ins included
    study = load_study(study_path, registry)  # raises StudyError listing every problem
    params = sample_config(study, registry, seed)  # {"optimizer": "adamw", ...}
    print("config:", ", ".join(f"{k}={v}" for k, v in sorted(params.items())))
    trial = prepare_trial(study, registry, params, seed)  # components built, trainer started
    return trial.run(report=print_eval)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else STUDY
    result = run_one(path, int(sys.argv[2]) if len(sys.argv) > 2 else 0)
    print(f"{result.status}: {result.metric} = {result.value}, {result.tokens:,} tokens")
