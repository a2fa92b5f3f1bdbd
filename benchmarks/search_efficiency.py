"""Does autostage find better training strategies with less compute? (a benchmark, not a test)

Every method gets the same total training-token budget (`study.token_budget`: trials stop
once it is spent) on one stage study with real training — a tiny GPT-2 on CPython's docs,
2-digit addition (the prerequisite) and 3-digit reversed addition (the target) — and returns
its best trial. Paired seeds: seed s fixes the search RNG and each trial's init and data.

  M1  random search over optimizer + LR, the stage order fixed (general > prereq > target)
  M2  random search over stage plans (order, skips) + the target's replay weight + LR
  M3  Optuna TPE over the same space as M2, no early stopping
  M4  TPE + ASHA at final-stage evals + stage policies (fixed / plateau / bandit) searched
  null  M4 with the prerequisite replaced by a copy of the target: order cannot matter

  python benchmarks/search_efficiency.py --smoke    # 3 seeds, small budget (~10 min)
  python benchmarks/search_efficiency.py --full     # 5 seeds, larger budget (~60 min)

Reports per method: best target loss at the budget, tokens until the best-so-far first
reaches TARGET_LOSS (fixed up front), paired bootstrap 95% CIs of the differences against M1
and M2, wall time. Writes JSON, a markdown table and a Plotly figure to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

TARGET_LOSS = 1.5  # answer-token loss (nats) counted as "reached", fixed before any run
RESULTS = Path(__file__).parent / "results"

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
context = 64
batch_size = 16
eval_batches = 2

[data.general]
dataset = "pydoc"
[data.prereq]
dataset = "arith"
digits = 2
[data.target]
dataset = "arith"
digits = 3
reverse = true

[[stage]]
name = "general"
data = "general"
tokens = 40_000
[[stage]]
name = "prereq"
data = "prereq"
tokens = 60_000
[[stage]]
name = "target"
data = { target = 1.0, prereq = 0.0 }
tokens = 240_000
final = true

[search.optimizer.adamw]
lr = { low = 3e-4, high = 1e-2, log = true }
[search.optimizer.sgd]
lr = { low = 1e-2, high = 0.5, log = true }
momentum = 0.9
[search.lr_schedule.cosine]
warmup = 0.05
"""

PLAN_SEARCH = ["search.plan={reorder = ['general', 'prereq'], skip = ['general', 'prereq']}",
               "stage.target.data={target = 1.0, prereq = {low = 0.0, high = 1.0}}"]
METHODS = {
    "M1": ["search.plan={order = 'general>prereq>target'}"],
    "M2": PLAN_SEARCH,
    "M3": [*PLAN_SEARCH, "study.sampler=tpe"],
    "M4": [*PLAN_SEARCH, "study.sampler=tpe", "study.trial_scheduler=asha",
           "search.stage_policy={fixed = {}, plateau = {patience = {low = 1, high = 3}}, "
           "bandit = {}}"],
    "null": [*PLAN_SEARCH, "study.sampler=tpe", "study.trial_scheduler=asha",
             "data.prereq={dataset = 'arith', digits = 3, reverse = true}"],
}


def run_method(name: str, seed: int, budget: int, workdir: Path) -> dict:
    """One search; its best-so-far curve over the tokens it spent."""
    from autostage.check import load_study
    from autostage.host import load_registry
    from autostage.live import QuietView
    from autostage.rundir import RunDir, best_trial
    from autostage.search import run_search

    path = workdir / "study.toml"
    path.write_text(STUDY)
    registry = load_registry()
    overrides = [*METHODS[name], f"study.seed={seed}", f"study.token_budget={budget}"]
    study = load_study(path, registry, overrides)
    start = time.perf_counter()
    outcome = run_search(study, registry, RunDir(workdir / f"{name}-{seed}"), resume=False,
                         address=None, view=QuietView())
    wall = time.perf_counter() - start
    records = sorted(outcome.records, key=lambda r: r.get("ended") or 0)
    curve, spent, best = [], 0, math.inf
    for r in records:
        spent += r.get("tokens") or 0
        if r["status"] in ("completed", "stopped") and r.get("value") is not None:
            best = min(best, r["value"])
        curve.append((spent, best))
    top = best_trial(outcome.records, "min")
    reached = next((t for t, b in curve if b <= TARGET_LOSS and t <= budget), None)
    # Trials still running when the budget is spent finish their segment first, so a search
    # overruns a little: judge every method by its best trial that ended within the budget.
    at_budget = min((b for t, b in curve if t <= budget), default=math.inf)
    return {"method": name, "seed": seed, "best": at_budget, "best_overall": best,
            "tokens": spent, "wall_s": wall,
            "tokens_to_target": reached, "trials": len(records), "curve": curve,
            "best_plan": top["plan"] if top else None}


def paired_ci(a: list[float], b: list[float], draws: int = 4000) -> tuple[float, float, float]:
    """Mean of the paired differences a - b and its bootstrap 95% interval."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(draws))
    return statistics.fmean(diffs), means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def prerequisite_check(seeds: list[int], workdir: Path) -> dict:
    """Before comparing searches: does the prerequisite help the target at this size, with
    the order fixed and the LR fixed? (target alone vs prereq > target, same target tokens)"""
    from autostage.build import build_trial
    from autostage.check import load_study
    from autostage.host import load_registry
    from autostage.space import compile_space, decode, sample
    from autostage.trial import run_trial

    registry = load_registry()
    path = workdir / "check.toml"
    path.write_text(STUDY)
    out: dict[str, list[float]] = {}
    for plan in ("target", "prereq>target"):
        study = load_study(path, registry, [f"search.plan={{order = '{plan}'}}",
                                            "search.optimizer={adamw = {lr = 3e-3}}"])
        space = compile_space(study, registry)
        for seed in seeds:
            built = build_trial(study, registry, decode(space, sample(space, seed)), seed=seed)
            result = run_trial(built.plan, built.trainer.start(built.setup))
            out.setdefault(plan, []).append(result.value)
    return out


def report(rows: list[dict], check: dict, args: argparse.Namespace, mode: str) -> None:
    methods = list(METHODS)
    by = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["seed"])
          for m in methods}
    lines = [f"# Search efficiency ({mode}): {len(args.seeds)} paired seeds, "
             f"{args.budget:,} training tokens per search; target loss {TARGET_LOSS}", "",
             "Prerequisite check (fixed order, AdamW 3e-3, per seed): "
             + ", ".join(f"{k}: {[round(v, 3) for v in vs]}" for k, vs in check.items()), "",
             "Best = the best trial that ended within the budget (searches overrun it by the "
             "segments their last trials were in).", "",
             "| method | best target loss (mean) | vs M1: diff [95% CI] | vs M2: diff [95% CI] "
             "| tokens to target (median) | wall s (mean) |", "|---|---|---|---|---|---|"]
    for m in methods:
        best = [r["best"] for r in by[m]]
        cells = []
        for ref in ("M1", "M2"):
            d, lo, hi = paired_ci(best, [r["best"] for r in by[ref]])
            cells.append("—" if m == ref else f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        reached = [r["tokens_to_target"] for r in by[m]]
        med = statistics.median([t if t is not None else math.inf for t in reached])
        lines.append(f"| {m} | {statistics.fmean(best):.3f} | {cells[0]} | {cells[1]} | "
                     f"{'not reached' if math.isinf(med) else f'{med:,.0f}'} "
                     f"({sum(t is not None for t in reached)}/{len(reached)} seeds) | "
                     f"{statistics.fmean(r['wall_s'] for r in by[m]):.0f} |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"search_efficiency-{mode}.md").write_text(table + "\n")
    (RESULTS / f"search_efficiency-{mode}.json").write_text(json.dumps(
        {"rows": rows, "prerequisite_check": check, "budget": args.budget,
         "seeds": args.seeds, "target_loss": TARGET_LOSS}, indent=1))
    _figure(by, mode)


def _figure(by: dict, mode: str) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for m, runs in by.items():
        for r in runs:
            xs = [t for t, b in r["curve"] if math.isfinite(b)]
            ys = [b for _, b in r["curve"] if math.isfinite(b)]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{m} seed {r['seed']}",
                                     legendgroup=m, line_shape="hv"))
    fig.update_layout(title="Best target loss so far vs training tokens spent",
                      xaxis_title="training tokens", yaxis_title="best eval.target.loss")
    fig.write_html(RESULTS / f"search_efficiency-{mode}.html", include_plotlyjs="cdn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--smoke", action="store_true")
    group.add_argument("--full", action="store_true")
    args = p.parse_args()
    mode = "smoke" if args.smoke else "full"
    args.seeds = [0, 1, 2] if args.smoke else [0, 1, 2, 3, 4]
    args.budget = 700_000 if args.smoke else 2_400_000

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            check = prerequisite_check(args.seeds[:2] if args.smoke else args.seeds, Path(tmp))
            for seed in args.seeds:
                for m in METHODS:
                    rows.append(run_method(m, seed, args.budget, Path(tmp)))
                    r = rows[-1]
                    print(f"{m:>4} seed {seed}: best {r['best']:.3f} after {r['tokens']:,} "
                          f"tokens, {r['trials']} trials, {r['wall_s']:.0f} s", flush=True)
    finally:
        ray.shutdown()
    report(rows, check, args, mode)


if __name__ == "__main__":
    main()
