"""autostage against expert-configured Ray Tune and Optuna peers and two baselines, on one
ledger, on held-out seeds (a benchmark, not a test; issue 26).

  python benchmarks/hpo.py --smoke                    # 2 seeds, half-size task: the plumbing
  python benchmarks/hpo.py --full --methods autostage-M4,autostage-M5
  python benchmarks/hpo.py --full --methods ray-pbt,ray-pb2 --merge   # ... and so on, then
  python benchmarks/hpo.py --full --methods top-k,oracle --merge      # the oracle last
  python benchmarks/hpo.py --full --seeds tuning ...  # the tuning seeds: where knobs are chosen

A task (`--task`, default arith) is a study file and its target, budget, plateau and seeds:
benchmarks/tasks/<name>.py (the contract: hpo_task.py). Every method gets the same compute
budget and is charged through the same ledger (hpo_ledger.py): training tokens since a run's
previous report or restored checkpoint, plus evals at the task's rate, for every trial as its
reports arrive. Methods: autostage-M4 and -M5 (hpo_methods.py), ray-pbt, ray-pb2,
ray-optuna-asha and optuna-pruner (hpo_peers.py), the top-k baseline and the oracle
(hpo_methods.py). Every knob of every method was chosen on the tuning seeds; the committed
tables run on the held-out seeds, all methods of a table on one commit (stamped; --merge
refuses rows of another commit). Each method runs in a process of its own.

Per task: best value at the budget, compute to target (median, per seed, censored at the
budget), its ratio to the oracle's, paired bootstrap 95% CIs against the best peer, and a
Plotly figure of best-so-far against compute. Writes results/hpo-<task>-<mode>.json, .md and
.html (-tuning before the suffix on the tuning seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hpo_ledger import paired_ci
from hpo_task import Task, load_task

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PEERS = ("ray-pbt", "ray-pb2", "ray-optuna-asha", "optuna-pruner")
OURS = ("autostage-M4", "autostage-M5", "autostage-early", "autostage-pasha", "autostage-curve")
METHODS = (*OURS, *PEERS, "top-k", "oracle")  # the run order


def commit() -> tuple[str, list[str]]:
    """HEAD, and the files the benchmark runs that differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=HERE, capture_output=True, text=True,
                              check=True).stdout.rstrip()  # porcelain lines start with a space

    # results/ is what the parts of a split run write: not the code they run
    dirty = git("status", "--porcelain", "--", "../autostage", "../plugins", ".",
                ":(exclude)results").splitlines()
    return git("rev-parse", "HEAD"), sorted(line[3:] for line in dirty)


# --- one method, in a process of its own ---------------------------------------------------------

def child(method: str, task: Task, seeds: list[int], out: str, oracle: dict | None) -> None:
    """Every seed of one method; rows to `out`."""
    from hpo_member import registry

    reg, ray_used = registry(), method.startswith(("ray-", "autostage-"))
    if ray_used:
        import ray

        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 is quiet with the old one
        # a Ray of this process's own, never one already running here, with its own temp dir
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", _temp_dir="/tmp/ray-hpo")
    rows = []
    try:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                row = run_method(method, task, seed, Path(tmp), reg, oracle)
            rows.append({"method": method, "seed": seed, **row})
            print(f"{method:>16} seed {seed}: best {row['best']:.4f}, to target "
                  f"{row['compute_to_target']}, {row['compute']:,} compute, {row['trials']} "
                  f"trials ({row['pruned']} pruned), {row['wall_s']:.0f} s", flush=True)
            Path(out).write_text(json.dumps(rows))
    finally:
        if ray_used:
            ray.shutdown()


def run_method(method: str, task: Task, seed: int, workdir: Path, registry: object,
               oracle: dict | None) -> dict:
    import hpo_methods
    import hpo_peers

    if method in OURS:
        return hpo_methods.run_autostage(method, task, seed, workdir, registry)
    if method == "optuna-pruner":
        return hpo_peers.run_optuna(task, seed, registry)
    if method in PEERS:
        return hpo_peers.run_ray(method, task, seed, str(workdir), registry)
    if method == "top-k":
        return hpo_methods.run_topk(task, seed, registry)
    if method == "oracle":
        return hpo_methods.run_oracle(task, seed, oracle, registry)
    raise ValueError(f"no method named {method!r}; methods: {', '.join(METHODS)}")


def in_process(method: str, args: argparse.Namespace, oracle: dict | None) -> list[dict]:
    """child() in a fresh Python: one Ray per method. Ray's workers import the trainable
    from hpo_peers by reference: benchmarks/ goes on their PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, str(HERE / "hpo.py"), "--child", method, "--task",
                   args.task, f"--{args.mode}", "--seeds", args.which, "--out", out.name]
        if args.only:
            command += ["--only", args.only]
        if oracle is not None:
            command += ["--oracle-config", json.dumps(oracle)]
        done = subprocess.run(command, env={**os.environ, "PYTHONPATH": path})
        rows = json.loads(Path(out.name).read_text() or "[]")  # written after every seed
        if done.returncode:  # a crash or a hang's timeout keeps the seeds that finished
            print(f"{method}: its process ended with {done.returncode} after "
                  f"{len(rows)} seeds; the table has those", flush=True)
        return rows


# --- the report ----------------------------------------------------------------------------------

def censored(row: dict, budget: float) -> float:
    """Compute to target; a search that never reached it counts the budget."""
    c = row["compute_to_target"]
    return budget if c is None else c


def by_method(rows: list[dict]) -> dict[str, list[dict]]:
    return {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["seed"])
            for m in METHODS if any(r["method"] == m for r in rows)}


def best_peer(by: dict, measure: Callable[[dict], float], mode: str = "min") -> str | None:
    peers = [m for m in PEERS if by.get(m)]
    sign = -1 if mode == "max" else 1
    return min(peers, key=lambda m: sign * statistics.fmean(map(measure, by[m])), default=None)


def versus(by: dict, measure: Callable[[dict], float], ref: str | None, m: str,
           fmt: str) -> str:
    if ref is None or m == ref:
        return "—"
    seeds = sorted({r["seed"] for r in by[m]} & {r["seed"] for r in by[ref]})
    mine = [measure(next(r for r in by[m] if r["seed"] == s)) for s in seeds]
    base = [measure(next(r for r in by[ref] if r["seed"] == s)) for s in seeds]
    if not seeds or not all(map(math.isfinite, [*mine, *base])):
        return "n/a"
    d, lo, hi = paired_ci(mine, base)
    return f"{d:+{fmt}} [{lo:+{fmt}}, {hi:+{fmt}}]"


def add_oracle_ratios(rows: list[dict], budget: float) -> None:
    """Each row's compute to target over the oracle's on its seed: None where the oracle did
    not reach it; a lower bound (`censored`) where the row did not (it counts the budget)."""
    oracle = {r["seed"]: r["compute_to_target"] for r in rows if r["method"] == "oracle"}
    for r in rows:
        if r["seed"] in oracle:
            mine, theirs = r["compute_to_target"], oracle[r["seed"]]
            r["oracle"] = {"compute_to_target": theirs,
                           "ratio": None if theirs is None else censored(r, budget) / theirs,
                           "censored": mine is None}


def oracle_ratio(rows: list[dict]) -> str:
    """The median ratio over the seeds the oracle reached; ≥ when any is censored (a bound
    only underestimates, so the median can only be higher)."""
    ratios = [(r["oracle"]["ratio"], r["oracle"]["censored"]) for r in rows
              if r.get("oracle", {}).get("ratio") is not None]
    if not ratios:
        return "n/a"
    median = statistics.median(v for v, _ in ratios)
    bound = any(c for _, c in ratios)
    return f"{'≥ ' if bound else ''}{median:.2f} ({len(ratios)} seeds)"


def table(data: dict) -> str:
    rows, budget, mode = data["rows"], data["budget"], data["mode_of_metric"]
    by = by_method(rows)
    to_target = lambda r: censored(r, budget)  # noqa: E731
    ref_best = best_peer(by, lambda r: r["best"], mode)
    ref_reach = best_peer(by, to_target)
    f = ".4f"
    lines = [f"# {data['task']} ({data['mode']}, {data['which']} seeds "
             f"{', '.join(map(str, data['seeds']))}): {budget:,.0f} compute per search", "",
             f"Commit `{data['commit'][:12]}`{' with local changes' if data['dirty'] else ''}."
             f" Command: `python benchmarks/hpo.py --{data['mode']} --task {data['task']}`. "
             "Compute = training tokens + evals at "
             f"{data['eval_cost']:.3g} of a token, charged report by report for every trial.",
             "", f"## Best {data['metric']} at the budget", "",
             "Best = the best final value of a trial that ran its plan to the end within the "
             "budget. Best peer = the peer with the best mean.", "",
             f"| method | mean | per seed | vs best peer ({ref_best}): diff [95% CI] | trials "
             "(pruned) | wall s |", "|---|---|---|---|---|---|"]
    for m, rs in by.items():
        best = [r["best"] for r in rs]
        lines.append(
            f"| {m} | {statistics.fmean(best):{f}} | {_join(best, f)} | "
            f"{versus(by, lambda r: r['best'], ref_best, m, f)} | "
            f"{statistics.fmean(r['trials'] for r in rs):.1f} "
            f"({statistics.fmean(r['pruned'] for r in rs):.1f}) | "
            f"{statistics.fmean(r['wall_s'] for r in rs):.0f} |")
    lines += ["", f"## Compute to target ({data['metric']} {'≥' if mode == 'max' else '≤'} "
              f"{data['target']})", "",
              "Censored at the budget: a search that never reached it counts the whole budget "
              "(—), so differences involving it understate the gap. Ratio to the oracle: the "
              "median, over the seeds where the oracle reached the target, of compute to "
              "target over the oracle's (≥: a bound, the method did not reach it).", "",
              f"| method | reached | median | per seed | ratio to oracle | vs best peer "
              f"({ref_reach}): diff [95% CI] |", "|---|---|---|---|---|---|"]
    for m, rs in by.items():
        lines.append(
            f"| {m} | {sum(r['compute_to_target'] is not None for r in rs)}/{len(rs)} | "
            f"{statistics.median(map(to_target, rs)):,.0f} | "
            f"{', '.join(_compute(r['compute_to_target']) for r in rs)} | "
            f"{oracle_ratio(rs)} | "
            f"{versus(by, to_target, ref_reach, m, ',.0f')} |")
    lines += ["", *aim(by, budget, ref_best, ref_reach, mode)]
    if (o := next((r for r in rows if r["method"] == "oracle"), None)):
        lines += ["", f"Oracle configuration (pooled best, retrained per seed): "
                  f"`{json.dumps(o['config'])}`"]
    return "\n".join(lines)


def aim(by: dict, budget: float, ref_best: str | None, ref_reach: str | None,
        mode: str) -> list[str]:
    """The issue's aim: compute to target <= half the best peer's, and end at least as low."""
    out = []
    for m in OURS:
        if m not in by or ref_best is None or ref_reach is None:
            continue
        mine = statistics.median(censored(r, budget) for r in by[m])
        theirs = statistics.median(censored(r, budget) for r in by[ref_reach])
        a, b = (statistics.fmean(r["best"] for r in by[x]) for x in (m, ref_best))
        low = a >= b if mode == "max" else a <= b
        out.append(f"Aim for {m} (compute to target ≤ ½ the best peer's and ≤ 2× the "
                   f"oracle's; ends at least as well): median {mine:,.0f} vs {theirs:,.0f} "
                   f"({ref_reach}) → {'met' if mine <= theirs / 2 else 'not met'}; to the "
                   f"oracle {oracle_ratio(by[m])}; mean best {a:.4f} vs {b:.4f} ({ref_best}) "
                   f"→ {'met' if low else 'not met'}.")
    return out or ["Aim: not judged (an autostage method or every peer missing)."]


def _compute(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _join(values: list[float], spec: str) -> str:
    return ", ".join(format(v, spec) for v in values)


def curves(rows: list[dict]) -> list[dict]:
    """The figure's data: one step line per method and seed."""
    return [{"name": f"{r['method']} seed {r['seed']}", "group": r["method"],
             "x": [t for t, b in r["curve"] if math.isfinite(b)],
             "y": [b for t, b in r["curve"] if math.isfinite(b)]}
            for r in sorted(rows, key=lambda r: (METHODS.index(r["method"]), r["seed"]))]


def figure(data: dict, path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure([go.Scatter(x=c["x"], y=c["y"], mode="lines+markers", name=c["name"],
                                legendgroup=c["group"], line_shape="hv")
                     for c in curves(data["rows"])])
    fig.add_hline(y=data["target"], line_dash="dot", annotation_text="target")
    fig.add_vline(x=data["budget"], line_dash="dot", annotation_text="budget")
    fig.update_layout(title=f"{data['task']}: best so far vs compute ({data['which']} seeds)",
                      xaxis_title="compute (training tokens + evals)",
                      yaxis_title=f"best {data['metric']}", yaxis_type="log")
    fig.write_html(path, include_plotlyjs="cdn")


def write(data: dict, stem: Path, show: bool = True) -> None:
    add_oracle_ratios(data["rows"], data["budget"])
    text = table(data)
    if show:
        print(text)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(text + "\n")
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
    figure(data, stem.with_suffix(".html"))


def only(text: str) -> list[int]:
    """'100-104' or '100,103' as seeds."""
    seeds = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


# --- main ----------------------------------------------------------------------------------------

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--smoke", action="store_true")
    size.add_argument("--full", action="store_true")
    p.add_argument("--task", default="arith", help="benchmarks/tasks/<task>.py")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--seeds", dest="which", choices=("heldout", "tuning"), default="heldout")
    p.add_argument("--only", help="a part of those seeds, e.g. 100-104 or 100,103: "
                   "--merge adds them to the rows already run (same commit)")
    p.add_argument("--merge", action="store_true",
                   help="keep the other methods' rows of the results file (same commit only)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--oracle-config", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.mode = "smoke" if args.smoke else "full"
    task = load_task(args.task).sized(args.mode)
    seeds = list(task.seeds(args.which))
    if args.only:
        part = only(args.only)
        if stray := sorted(set(part) - set(seeds)):
            p.error(f"--only {args.only}: {stray} are not the {args.which} seeds {seeds}")
        seeds = [s for s in seeds if s in part]
    if args.child:
        oracle = json.loads(args.oracle_config) if args.oracle_config else None
        return child(args.child, task, seeds, args.out, oracle)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in METHODS]:
        p.error(f"unknown methods {unknown}; methods: {', '.join(METHODS)}")
    stem = RESULTS / f"hpo-{task.name}-{args.mode}{'-tuning' if args.which == 'tuning' else ''}"
    head, dirty = commit()
    from hpo_member import registry
    from hpo_peers import settings

    data = {"task": task.name, "mode": args.mode, "which": args.which, "seeds": seeds,
            "budget": task.budget, "commit": head, "dirty": dirty, "target": task.target,
            "metric": task.load(registry()).study.metrics[0], "mode_of_metric": task.mode,
            "eval_cost": task.eval_cost, "settings": settings(task), "rows": []}
    if args.merge and stem.with_suffix(".json").exists():
        old = json.loads(stem.with_suffix(".json").read_text())
        if old["commit"] != head:
            p.error(f"{stem}.json was run on {old['commit'][:12]}, this is {head[:12]}: all "
                    "methods of a table run on one commit (rerun them, or commit nothing "
                    "between the parts)")
        data["rows"] = [r for r in old["rows"]
                        if r["method"] not in methods or r["seed"] not in seeds]
    for method in sorted(methods, key=METHODS.index):
        oracle = None
        if method == "oracle":
            from hpo_methods import oracle_config

            if (oracle := oracle_config(data["rows"], task)) is None:
                print("oracle skipped: no pooled static configuration (run other methods "
                      "first, or --merge)", flush=True)
                continue
        data["rows"] = [r for r in data["rows"]
                        if r["method"] != method or r["seed"] not in seeds]
        data["rows"] += in_process(method, args, oracle)
        data["seeds"] = sorted({r["seed"] for r in data["rows"]})
        write(data, stem, show=False)  # after every method: a crash keeps the rest
    write(data, stem)


if __name__ == "__main__":
    main()
