"""What autostage's search costs on top of the work itself (a benchmark, not a test).

The same toy-trainer objective runs through `autostage search` (Ray Tune + Optuna, records,
SQLite storage) and through a bare `optuna.study.optimize` loop, in one process, one trial at
a time. Ray starts once, before timing: it is a fixed cost per search, not per trial.

  python benchmarks/overhead.py            # 64 millisecond trials + 4 x ~15 s trials each way
  python benchmarks/overhead.py --quick    # 16 millisecond trials + 2 x ~3 s trials

Prints a table and writes benchmarks/results/overhead.json.
Targets: <= 0.15 s overhead per trial; <= 2% of a 15-s trial.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from autostage.live import QuietView

STUDY = Path(__file__).parent.parent / "studies" / "quickstart-toy.toml"
# Every trial does the same work (nothing searched), so both paths train the same tokens.
FIXED = ["study.trial_scheduler=fifo", "study.sampler=random", "study.parallel=1",
         "search.plan={order = 'general>prereq>target'}", "stage.target.data=target",
         "search.optimizer={adamw = {lr = 3e-3}}", "search.lr_schedule={}",
         "search.stage_policy={}"]


def load(trials: int, step_seconds: float):
    from autostage.check import load_study
    from autostage.host import load_registry

    registry = load_registry()
    overrides = [*FIXED, f"study.trials={trials}", f"model.step_seconds={step_seconds}"]
    return load_study(STUDY, registry, overrides), registry


def time_autostage(trials: int, step_seconds: float) -> tuple[float, float]:
    """(seconds for the whole search, seconds until its first trial started)."""
    from autostage.rundir import RunDir
    from autostage.search import run_search

    study, registry = load(trials, step_seconds)
    view = _Quiet()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        outcome = run_search(study, registry, RunDir(Path(tmp) / "run"), resume=False,
                             address=None, view=view)
        elapsed = time.perf_counter() - start
    assert len(outcome.records) == trials, outcome.records
    return elapsed, view.first_start - start


def time_bare_optuna(trials: int, step_seconds: float) -> float:
    import optuna

    from autostage.build import prepare_trial
    from autostage.space import compile_space, suggest

    study, registry = load(trials, step_seconds)
    space = compile_space(study, registry)

    def objective(trial):
        config = {**suggest(space, trial), **trial.params}
        return prepare_trial(study, registry, config, trial.number, space=space).run().value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bare = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    bare.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


class _Quiet(QuietView):
    """Draws nothing (the benchmark times the search, not the terminal) and notes when the
    first trial started: the one-off cost of starting a Ray actor."""

    first_start = 0.0

    def trial_started(self, who=None):
        self.first_start = self.first_start or time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter trials")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "overhead.json"))
    args = parser.parse_args()
    short_trials = 16 if args.quick else 64
    long_trials = 2 if args.quick else 4
    # the toy trains 401,408 tokens in 196 steps: this sleep per step makes a ~15 s trial
    long_step = (3.0 if args.quick else 15.0) / 196

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")  # a Ray of its own, never a `ray start` cluster here
    try:
        time_bare_optuna(2, 0.0)  # warm imports and caches for both paths
        rows = []
        for label, trials, step in (("millisecond trials", short_trials, 0.0),
                                    ("long trials", long_trials, long_step)):
            bare = time_bare_optuna(trials, step)
            ours, startup = time_autostage(trials, step)
            per_bare, per_ours = bare / trials, ours / trials
            steady = (ours - startup - bare) / trials
            rows.append({
                "case": label, "trials": trials,
                "bare_optuna_s_per_trial": per_bare, "autostage_s_per_trial": per_ours,
                "overhead_s_per_trial": per_ours - per_bare,
                "ratio": per_ours / per_bare,
                "overhead_fraction": (per_ours - per_bare) / per_bare,
                "first_trial_start_s": startup,
                "steady_overhead_s_per_trial": steady,
                "steady_overhead_fraction": steady / per_bare,
            })
    finally:
        ray.shutdown()

    print(f"{'case':<20}{'trials':>7}{'bare s/trial':>14}{'autostage s/trial':>19}"
          f"{'overhead s':>12}{'ratio':>8}{'overhead %':>12}{'1st start s':>13}"
          f"{'steady s':>10}{'steady %':>10}")
    for r in rows:
        print(f"{r['case']:<20}{r['trials']:>7}{r['bare_optuna_s_per_trial']:>14.4f}"
              f"{r['autostage_s_per_trial']:>19.4f}{r['overhead_s_per_trial']:>12.4f}"
              f"{r['ratio']:>8.2f}{100 * r['overhead_fraction']:>11.2f}%"
              f"{r['first_trial_start_s']:>13.2f}{r['steady_overhead_s_per_trial']:>10.4f}"
              f"{100 * r['steady_overhead_fraction']:>9.2f}%")
    short, long = rows
    print("\n'1st start' is the one-off cost of a search (Ray starts a worker, which imports "
          "autostage);\n'steady' is the overhead per trial after it.")
    print(f"target <= 0.15 s overhead per trial: {short['overhead_s_per_trial']:.3f} s "
          f"({'met' if short['overhead_s_per_trial'] <= 0.15 else 'MISSED'})")
    print(f"target <= 2% of a long trial: {100 * long['overhead_fraction']:.2f}% end to end "
          f"over {long['trials']} trials "
          f"({'met' if long['overhead_fraction'] <= 0.02 else 'MISSED'}), "
          f"{100 * long['steady_overhead_fraction']:.2f}% after the first start "
          f"({'met' if long['steady_overhead_fraction'] <= 0.02 else 'MISSED'})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "machine": platform.platform(),
                               "quick": args.quick}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
