"""Does autostage find better training strategies with less compute? (a benchmark, not a test)

Every method gets the same compute budget (`study.token_budget` stops a search once its
trials have trained that many tokens; evals are added at a third of a training token each)
on one stage study with real training — a tiny GPT-2 on CPython's docs, easy addition in the
target's format (operands < 100: the prerequisite) and 4-digit reversed addition (the
target) — and returns its best trial.
Paired seeds: seed s fixes the search RNG and each trial's init and data, for every method.

  M1  random search over the AdamW LR, the stage order fixed (general > prereq > target)
  M2  random search over stage plans (order, skips) + prereq mixed into the target + LR
  M3  Optuna TPE over the same space as M2, no early stopping
  M4  TPE + ASHA at target evals + stage policies (fixed / plateau / bandit) searched
  M5  M4's space and sampler with branching trials (the `population` trial scheduler): the
      worst quarter stops at each rung of target evals, most new trials branch from a
      checkpoint of the best quarter (prefix not retrained), TPE proposing the continuation
  null  M4 with the prerequisite replaced by a copy of the target: order cannot matter
  null5  M5 on the null task: branching must not do worse there than M4 does

  python benchmarks/search_efficiency.py --smoke    # 3 seeds, 2-3 half-size trials each (~15 min)
  python benchmarks/search_efficiency.py --full     # 5 seeds, ~8 trials each (~80 min)
  python benchmarks/search_efficiency.py --full --methods M5 null5 --merge
      # run some methods only, and merge their rows into the committed results (the other
      # methods' rows and the prerequisite check are kept as they were measured)

First a fixed-strategy check shows whether the prerequisite helps at all at this size.
Then per method: best target loss at the budget, compute until the best-so-far first reaches
TARGET_LOSS (fixed up front), paired bootstrap 95% CIs of the differences against M1 and M2,
wall time. Writes JSON, a markdown table and a Plotly figure to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TARGET_LOSS = 0.5  # answer-token loss (nats) counted as "reached", fixed before the full run
EVAL_COST = 1 / 3  # an eval token is a forward pass only: a third of a training token's work
RESULTS = Path(__file__).parent / "results"

# Knobs chosen with a fixed-strategy probe at equal tokens (3 seeds, 750k): 4-digit reversed
# addition sits on a ~1.55-nat plateau until the model "gets" carrying, at 300k tokens or
# never. Mixing in easy problems written in the same 4-digit format (operands < 100) gets
# there on every seed (answer loss 0.007-0.026 vs 0.085-1.54 for the target alone); the
# same problems as an earlier stage do not help (0.42-1.47), nor do 2-digit problems in
# their own format. One 4-digit problem per 20-token row; 200k problems per source.
STUDY = """
[study]
name = "efficiency"
metric = "eval.target.loss"
mode = "min"
trials = 1000              # the token budget ends every search
parallel = 2
sampler = "random"
trial_scheduler = "fifo"

[model]
trainer = "transformers"
n_layer = 2
n_embd = 64
n_head = 4
context = 20
batch_size = 32
eval_batches = 4

[data.general]
dataset = "pydoc"
[data.prereq]
dataset = "arith"
digits = 4
operand_digits = 2
reverse = true
train_size = 200_000
[data.target]
dataset = "arith"
digits = 4
reverse = true
train_size = 200_000

[[stage]]
name = "general"
data = "general"
tokens = 50_000
watch = "eval.general.loss"
[[stage]]
name = "prereq"
data = "prereq"
tokens = 150_000
watch = "eval.prereq.loss"
[[stage]]
name = "target"
data = { target = 1.0, prereq = 0.0 }
tokens = 600_000
eval_every = 75_000
final = true

[search.optimizer.adamw]
lr = { low = 1e-3, high = 2e-2, log = true }
[search.lr_schedule.cosine]
warmup = 0.05
min_ratio = 0.1
"""

TPE = ["study.sampler=tpe", "study.sampler_settings={n_startup_trials = 3}"]
PLAN_SEARCH = ["search.plan={reorder = ['general', 'prereq'], skip = ['general', 'prereq']}",
               "stage.target.data={target = 1.0, prereq = {low = 0.0, high = 1.0}}"]
ADAPTIVE = ["study.trial_scheduler=asha",
            "study.trial_scheduler_settings={grace_period = 4, reduction_factor = 2}",
            "search.stage_policy={fixed = {}, plateau = {patience = {low = 1, high = 3}}, "
            "bandit = {}}"]
BRANCHING = [*ADAPTIVE, "study.trial_scheduler=population",
             "study.trial_scheduler_settings={quantile = 0.25, fresh = 0.2, grace_period = 2}"]
NULL_TASK = ["data.prereq={dataset = 'arith', digits = 4, reverse = true, "
             "train_size = 200_000}"]
METHODS = {
    "M1": ["search.plan={order = 'general>prereq>target'}"],
    "M2": PLAN_SEARCH,
    "M3": [*PLAN_SEARCH, *TPE],
    "M4": [*PLAN_SEARCH, *TPE, *ADAPTIVE],
    "M5": [*PLAN_SEARCH, *TPE, *BRANCHING],
    "null": [*PLAN_SEARCH, *TPE, *ADAPTIVE, *NULL_TASK],
    "null5": [*PLAN_SEARCH, *TPE, *BRANCHING, *NULL_TASK],
}
# --smoke checks the plumbing, not the claim: every stage at half length, 2-3 trials a search
SIZES = {"full": {"general": 50_000, "prereq": 150_000, "target": 600_000},
         "smoke": {"general": 25_000, "prereq": 75_000, "target": 300_000}}


def sized(mode: str) -> list[str]:
    """Overrides that set every stage's length (8 target evals)."""
    size = SIZES[mode]
    return [*(f"stage.{name}.tokens={tokens}" for name, tokens in size.items()),
            f"stage.target.eval_every={size['target'] // 8}"]


def check_arms(mode: str) -> dict[str, list[str]]:
    """The fixed-strategy check: the same LR and the same tokens in every arm."""
    both = SIZES[mode]["prereq"] + SIZES[mode]["target"]
    alone = ["search.plan={order = 'target'}", f"stage.target.tokens={both}"]
    return {
        "target only": alone,
        "prereq > target": ["search.plan={order = 'prereq>target'}"],
        "target, prereq mixed in 1:1": [*alone, "stage.target.data={target = 1.0, prereq = 1.0}"],
    }


def run_method(name: str, seed: int, budget: int, workdir: Path, mode: str) -> dict:
    """One search; its best-so-far curve over the compute it spent."""
    from autostage.check import load_study
    from autostage.host import load_registry
    from autostage.keys import parse_metric
    from autostage.live import QuietView
    from autostage.records import TrialStatus, best_trial
    from autostage.rundir import RunDir
    from autostage.search import run_search

    path = workdir / "study.toml"
    path.write_text(STUDY)
    registry = load_registry()
    overrides = [*sized(mode), *METHODS[name], f"study.seed={seed}",
                 f"study.token_budget={budget}"]
    study = load_study(path, registry, overrides)
    run = RunDir(workdir / f"{name}-{seed}")
    start = time.perf_counter()
    outcome = run_search(study, registry, run, resume=False, address=None, view=QuietView())
    wall = time.perf_counter() - start
    per_eval = study.model.settings["eval_batches"] * study.model.settings["batch_size"] \
        * study.model.settings["context"]
    records = sorted(outcome.records, key=lambda r: r.ended or 0)
    # prefix sharing: tokens branches did not train again, against what a search of the
    # same configurations without sharing would have trained (every trial its whole lineage)
    shared = sum(r.branch.tokens for r in records if r.branch is not None)
    prefix_saved = shared / (shared + sum(r.tokens for r in records)) if records else 0.0
    curve, spent, trained, best = [], 0.0, 0, math.inf
    for r in records:
        evaluated = sum(1 for e in run.events(r.number) for k in e.eval.metrics
                        if (key := parse_metric(k)) and key.source and key.name == "loss")
        trained += r.tokens
        spent += r.tokens + EVAL_COST * evaluated * per_eval
        if r.ranked_value is not None:
            best = min(best, r.ranked_value)
        curve.append((round(spent), best))
    top = best_trial(outcome.records, "min")
    reached = next((t for t, b in curve if b <= TARGET_LOSS and t <= budget), None)
    # Trials still running when the budget is spent finish their segment first, so a search
    # overruns a little: judge every method by its best trial that ended within the budget,
    # counted in compute (training tokens + a third of each eval token).
    at_budget = min((b for t, b in curve if t <= budget), default=math.inf)
    return {"method": name, "seed": seed, "best": at_budget, "best_overall": best,
            "tokens": trained, "compute": round(spent), "wall_s": wall,
            "tokens_to_target": reached, "trials": len(records),
            "pruned": sum(r.status == TrialStatus.PRUNED for r in records), "curve": curve,
            "branched": sum(r.branch is not None for r in records),
            "prefix_saved": prefix_saved,
            "best_plan": top.plan if top else None,
            "best_config": dict(top.config) if top else None}


def paired_ci(a: list[float], b: list[float], draws: int = 4000) -> tuple[float, float, float]:
    """Mean of the paired differences a - b and its bootstrap 95% interval."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(draws))
    return statistics.fmean(diffs), means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def prerequisite_check(seeds: list[int], workdir: Path, mode: str) -> dict:
    """Before comparing searches: does the prerequisite help the target at this size?
    Fixed strategies (check_arms), AdamW at 3e-3; one trial per arm and seed, two at a time
    on Ray."""
    import ray

    path = workdir / "check.toml"
    path.write_text(STUDY)
    fixed_trial = ray.remote(num_cpus=1)(_fixed_trial)
    arms = check_arms(mode)
    jobs = {(arm, seed): fixed_trial.remote(str(path), [*sized(mode), *overrides], seed)
            for arm, overrides in arms.items() for seed in seeds}
    values = dict(zip(jobs, ray.get(list(jobs.values())), strict=True))
    return {arm: [values[arm, s] for s in seeds] for arm in arms}


def _fixed_trial(path: str, overrides: list[str], seed: int) -> float:
    from autostage import load_registry, load_study, prepare_trial, sample_config

    registry = load_registry()
    study = load_study(Path(path), registry,
                       [*overrides, "search.optimizer={adamw = {lr = 3e-3}}"])
    params = sample_config(study, registry, seed)
    return prepare_trial(study, registry, params, seed, threads=1).run().value


def report(rows: list[dict], check: dict, args: argparse.Namespace, mode: str) -> None:
    by = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["seed"])
          for m in METHODS if any(r["method"] == m for r in rows)}
    lines = [f"# Search efficiency ({mode}): {len(args.seeds)} paired seeds, "
             f"{args.budget:,} tokens of compute per search", "",
             f"Command: `python benchmarks/search_efficiency.py --{mode}`", "",
             "## Prerequisite check (fixed strategy, AdamW 3e-3, equal tokens)", "",
             "| strategy | target loss per seed | mean |", "|---|---|---|"]
    lines += [f"| {arm} | {', '.join(f'{v:.3f}' for v in vs)} | {statistics.fmean(vs):.3f} |"
              for arm, vs in check.items()]
    lines += ["", "## Best target loss at the budget (lower is better)", "",
              "Compute = training tokens + a third of every eval token (forward only). Best = "
              "the best trial that ended within the budget: searches overrun it by the "
              "segments their last trials were in, and that overrun is not counted.", "",
              "| method | mean | per seed | vs M1: diff [95% CI] | vs M2: diff [95% CI] "
              "| vs M4: diff [95% CI] | trials (pruned, branched) | prefix saved per seed "
              "| wall s |", "|---|---|---|---|---|---|---|---|---|"]
    for m, runs in by.items():
        best = [r["best"] for r in runs]
        saved = ", ".join(f"{r.get('prefix_saved', 0.0):.0%}" for r in runs)
        lines.append(
            f"| {m} | {statistics.fmean(best):.3f} | {', '.join(f'{b:.3f}' for b in best)} | "
            f"{_vs(_best, by, 'M1', m, '.3f')} | {_vs(_best, by, 'M2', m, '.3f')} | "
            f"{_vs(_best, by, _peer('M4', m), m, '.3f')} | "
            f"{statistics.fmean(r['trials'] for r in runs):.1f} "
            f"({statistics.fmean(r['pruned'] for r in runs):.1f}, "
            f"{statistics.fmean(r.get('branched', 0) for r in runs):.1f}) | {saved} | "
            f"{statistics.fmean(r['wall_s'] for r in runs):.0f} |")
    lines += ["", f"## Compute until the best-so-far first reaches {TARGET_LOSS} nats "
              "(lower is better)", "",
              "A search that never reached it counts as the whole budget, so differences "
              "involving it understate the gap.", "",
              "| method | reached | median | vs M1: diff [95% CI] | vs M2: diff [95% CI] "
              "| vs M4: diff [95% CI] |", "|---|---|---|---|---|---|"]
    def reached(row: dict) -> float:  # not reached: the whole budget
        return args.budget if row["tokens_to_target"] is None else row["tokens_to_target"]

    for m, runs in by.items():
        lines.append(
            f"| {m} | {sum(r['tokens_to_target'] is not None for r in runs)}/{len(runs)} | "
            f"{statistics.median(map(reached, runs)):,.0f} | "
            f"{_vs(reached, by, 'M1', m, ',.0f')} | {_vs(reached, by, 'M2', m, ',.0f')} | "
            f"{_vs(reached, by, _peer('M4', m), m, ',.0f')} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"search_efficiency-{mode}.md").write_text(table + "\n")
    (RESULTS / f"search_efficiency-{mode}.json").write_text(json.dumps(
        {"rows": rows, "prerequisite_check": check, "budget": args.budget,
         "seeds": args.seeds, "target_loss": TARGET_LOSS, "eval_cost": EVAL_COST}, indent=1))
    _figure(by, mode)


def _peer(ref: str, m: str) -> str:
    """The method `m` is compared with in the `ref` column: null5 with null (branching on
    the task where order cannot matter, against M4's method there), the rest with `ref`."""
    return "null" if m == "null5" else ref


def _best(row: dict) -> float:
    return row["best"]


def _vs(measure: Callable[[dict], float], by: dict, ref: str, m: str, fmt: str) -> str:
    """`measure` of method m against method ref, paired by seed: diff [95% CI]."""
    if m == ref or ref not in by:
        return "—"
    values, base = [measure(r) for r in by[m]], [measure(r) for r in by[ref]]
    if not all(map(math.isfinite, [*values, *base])):
        return "n/a (a search ended no trial within the budget)"
    d, lo, hi = paired_ci(values, base)
    return f"{d:+{fmt}} [{lo:+{fmt}}, {hi:+{fmt}}]"


def _figure(by: dict, mode: str) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for m, runs in by.items():
        for r in runs:
            xs = [t for t, b in r["curve"] if math.isfinite(b)]
            ys = [b for _, b in r["curve"] if math.isfinite(b)]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{m} seed {r['seed']}",
                                     legendgroup=m, line_shape="hv"))
    fig.add_hline(y=TARGET_LOSS, line_dash="dot", annotation_text="target loss")
    fig.update_layout(title="Best target loss so far vs compute spent (paired seeds)",
                      xaxis_title="compute (training tokens + evals)",
                      yaxis_title="best eval.target.loss")
    fig.write_html(RESULTS / f"search_efficiency-{mode}.html", include_plotlyjs="cdn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--smoke", action="store_true")
    group.add_argument("--full", action="store_true")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="run these methods only (default: all)")
    p.add_argument("--merge", action="store_true", help="keep the other methods' rows and "
                   "the prerequisite check of the committed results, and add these")
    args = p.parse_args()
    mode = "smoke" if args.smoke else "full"
    args.seeds = [0, 1, 2] if args.smoke else [0, 1, 2, 3, 4]
    # ~8 trials per search in --full (57 min), 2-3 half-length ones in --smoke (~10 min)
    args.budget = 900_000 if args.smoke else 6_400_000

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")  # a Ray of its own, never a `ray start` cluster here
    rows, check = [], None
    if args.merge:
        kept = json.loads((RESULTS / f"search_efficiency-{mode}.json").read_text())
        rows = [r for r in kept["rows"] if r["method"] not in args.methods]
        check = kept["prerequisite_check"]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if check is None:
                check = prerequisite_check(args.seeds[:2] if args.smoke else args.seeds,
                                           Path(tmp), mode)
            print("prerequisite check:", json.dumps(check), flush=True)
            for seed in args.seeds:
                for m in args.methods:
                    rows.append(run_method(m, seed, args.budget, Path(tmp), mode))
                    r = rows[-1]
                    print(f"{m:>4} seed {seed}: best {r['best']:.3f}, {r['compute']:,} compute, "
                          f"{r['trials']} trials ({r['pruned']} pruned), {r['wall_s']:.0f} s",
                          flush=True)
    finally:
        ray.shutdown()
    report(rows, check, args, mode)


if __name__ == "__main__":
    main()
