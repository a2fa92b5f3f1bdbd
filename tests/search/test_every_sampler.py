"""Every shipped sampler with every trial scheduler that supports it, in real searches (real
Ray, real Optuna, the toy FAKE trainer, a few trials each): a sampler Ray cannot pickle, or one
an Optuna release broke, fails here as it fails for users.

Every sampler, and every trial scheduler, runs once the way a user runs it: the `autostage
search` command in a process of its own, which starts a Ray of its own. The rest of the
product runs in this process on the suite's shared Ray: a search through the command costs
~10 s, mostly Ray starting and stopping (the whole product that way took 9 minutes on 2
cores). The population trial scheduler with every sampler is tests/search/test_branching.py's
(12 trials, so that trials branch).
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.studies import toy_study

from autostage.cli import main
from autostage.host import load_registry
from autostage.rundir import RunDir


def study(sampler: str, trial_scheduler: str, metric: str) -> str:
    """Three trials of the toy study (`metric`: TOML) with this sampler and trial scheduler."""
    return toy_study(
        "study.name=every-sampler", f"study.metric={metric}", "study.trials=3", "study.seed=0",
        f"study.sampler={sampler}", f"study.trial_scheduler={trial_scheduler}",
        'search.plan.skip=["prereq"]',
        "search.optimizer.adamw.lr={ low = 1e-4, high = 3e-2, log = true }",
        "search.optimizer.sgd.momentum=[0.0, 0.9]")


ONE_METRIC = '"eval.target.loss"'
TWO_METRICS = '["eval.target.loss", "tokens"]'


def builtins(registry, kind: str) -> list[str]:
    return sorted(name for name, entry in registry.entries[kind].items()
                  if registry.host.info[entry.plugin].builtin)


REGISTRY = load_registry()
SAMPLERS = builtins(REGISTRY, "sampler")
TRIAL_SCHEDULERS = builtins(REGISTRY, "trial_scheduler")
MULTI_OBJECTIVE = [s for s in SAMPLERS if REGISTRY.get("sampler", s).multi_objective]


def from_the_command() -> list[tuple[str, str, str]]:
    """(sampler, trial scheduler, metric): each sampler and each trial scheduler at least
    once, paired in turn, and the README's multi-objective search."""
    pairs = max(len(SAMPLERS), len(TRIAL_SCHEDULERS))  # more of either: some run twice
    runs = [(SAMPLERS[i % len(SAMPLERS)], TRIAL_SCHEDULERS[i % len(TRIAL_SCHEDULERS)],
             ONE_METRIC) for i in range(pairs)]
    return runs + [("nsga2", "fifo", TWO_METRICS)]


def write_study(tmp_path, sampler: str, trial_scheduler: str, metric: str):
    folder = tmp_path / f"{sampler}-{trial_scheduler}-{len(metric)}"
    folder.mkdir()
    (folder / "study.toml").write_text(study(sampler, trial_scheduler, metric))
    return folder


def problem(folder, said: str) -> str | None:
    """What is wrong with the run a search left in `folder`; None: every trial finished."""
    records = RunDir(folder / "run").results()
    if len(records) != 3 or not all(r.status.finished for r in records):
        return f"{said}: {[(r.number, r.status.name, r.reason) for r in records]}"
    if not any(r.values for r in records):
        return f"{said}: no trial has a value"
    return None


def run_command(tmp_path, sampler: str, trial_scheduler: str, metric: str) -> str | None:
    """Run one search as a user would; None when it ended well, else what went wrong."""
    folder = write_study(tmp_path, sampler, trial_scheduler, metric)
    done = subprocess.run([sys.executable, "-m", "autostage.cli", "search", "study.toml",
                           "--out", "run"], cwd=folder, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    said = f"{sampler} × {trial_scheduler} on {metric}: exit {done.returncode}"
    if done.returncode != 0 or "Traceback" in done.stdout + done.stderr:
        return f"{said}\n{(done.stdout + done.stderr)[-1500:]}"
    return problem(folder, said)


@pytest.mark.slow
def test_every_shipped_sampler_and_trial_scheduler_runs_from_the_command(tmp_path):
    runs = from_the_command()
    assert {t for _, t, _ in runs} == set(TRIAL_SCHEDULERS) and len(SAMPLERS) >= 6
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for p in pool.map(lambda c: run_command(tmp_path, *c), runs) if p]
    assert not problems, "\n\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_with_every_trial_scheduler_that_supports_it(ray_session, tmp_path,
                                                                   sampler, capsys):
    """One metric with every trial scheduler; two metrics (fifo only: a trial scheduler stops
    by one metric) where the sampler handles several."""
    runs = [(sampler, t, ONE_METRIC) for t in TRIAL_SCHEDULERS if t != "population"]
    runs += [(sampler, "fifo", TWO_METRICS)] if sampler in MULTI_OBJECTIVE else []
    problems = []
    for run in runs:
        folder = write_study(tmp_path, *run)
        code = main(["search", str(folder / "study.toml"), "--out", str(folder / "run")])
        said = f"{run[0]} × {run[1]} on {run[2]}: exit {code}"
        problems.append(f"{said}: {capsys.readouterr().err[-1500:]}" if code != 0
                        else problem(folder, said))
    assert not any(problems), "\n\n".join(p for p in problems if p)
