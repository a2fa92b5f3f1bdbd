"""Does a trial cost the same at trial 1,000 as at trial 10? (a benchmark, not a test)

Runs `studies/quickstart-toy.toml` (the toy trainer: analytic curves, milliseconds of compute
per trial) through `run_search` in this process, N trials, 2 at a time, and records:

  - per-trial wall time: the driver's clock at every trial's end (`trial_ended`); a tenth's
    time per trial is the time between its first and last ending over the trials it ended
    (the first tenth starts at the first ending, so Ray's one-off worker start is left out);
  - the driver's RSS, sampled every 0.2 s in a thread (/proc/self/status VmRSS);
  - the run directory's size and file count by top folder (ray-*/ and trials/ also per
    trial), at the end.

Prints the last-tenth / first-tenth ratio of time per trial (target: within 1 +- 0.2), the RSS
growth per trial (a least-squares slope over the middle 80% of trials), and the sizes.

  python benchmarks/many_trials.py --trials 1000                  # random sampler, fifo
  python benchmarks/many_trials.py --trials 300 --sampler tpe
  python benchmarks/many_trials.py --trials 300 --profile prof.out  # cProfile the driver

Writes benchmarks/results/many_trials-<sampler>-<N>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

from autostage.live import QuietView

STUDY = Path(__file__).parent.parent / "studies" / "quickstart-toy.toml"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Timed(QuietView):
    """Draws nothing; notes when each trial ended, and the RSS then."""

    def __init__(self) -> None:
        self.ended: list[float] = []
        self.rss_at_end: list[float] = []

    def trial_ended(self, record) -> None:
        self.ended.append(time.perf_counter())
        self.rss_at_end.append(rss_mb())


def tree_sizes(root: Path) -> dict[str, dict[str, int]]:
    """Bytes and files under each top-level entry of `root` (ray-* folders as one)."""
    out: dict[str, dict[str, int]] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        top = path.relative_to(root).parts[0]
        key = "ray-*" if top.startswith("ray-") else top
        entry = out.setdefault(key, {"bytes": 0, "files": 0})
        entry["bytes"] += path.stat().st_size
        entry["files"] += 1
    return out


def ray_breakdown(root: Path) -> dict[str, dict[str, int]]:
    """Inside ray-*/: files by name (per-trial files grouped by their own name)."""
    out: dict[str, dict[str, int]] = {}
    for ray_dir in root.glob("ray-*"):
        for path in ray_dir.rglob("*"):
            if not path.is_file():
                continue
            parts = path.relative_to(ray_dir).parts
            key = ("trial-*/" + ("checkpoint_*/" if any(p.startswith("checkpoint_")
                                                         for p in parts) else "") + parts[-1]
                   if parts[0].startswith("trial-") else parts[-1])
            entry = out.setdefault(key, {"bytes": 0, "files": 0})
            entry["bytes"] += path.stat().st_size
            entry["files"] += 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["bytes"]))


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--scheduler", default="fifo")
    parser.add_argument("--profile", help="write a cProfile of the driver here")
    parser.add_argument("--keep", help="keep the run directory here (default: a temp dir)")
    parser.add_argument("--set", action="append", default=[], help="more study overrides")
    parser.add_argument("--out")
    args = parser.parse_args()

    import ray

    from autostage.check import load_study
    from autostage.host import load_registry
    from autostage.rundir import RunDir
    from autostage.search import run_search

    registry = load_registry()
    study = load_study(STUDY, registry, [
        f"study.trials={args.trials}", f"study.parallel={args.parallel}",
        f"study.sampler={args.sampler}", f"study.trial_scheduler={args.scheduler}", *args.set])

    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            samples.append((time.perf_counter(), rss_mb()))

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")  # a Ray of its own, never a `ray start` cluster here
    tmp = tempfile.TemporaryDirectory()
    root = Path(args.keep) if args.keep else Path(tmp.name) / "run"
    view = _Timed()
    rss_before = rss_mb()
    threading.Thread(target=sample, daemon=True).start()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start = time.perf_counter()
    try:
        outcome = run_search(study, registry, RunDir(root), resume=False, address=None,
                             view=view)
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        done.set()
        ray.shutdown()
    elapsed = time.perf_counter() - start
    assert len(outcome.records) == args.trials, len(outcome.records)

    n = len(view.ended)
    tenth = max(1, n // 10)
    tenths = []
    for i in range(10):
        lo, hi = i * tenth, min(n - 1, (i + 1) * tenth)
        tenths.append((view.ended[hi] - view.ended[lo]) / (hi - lo))
    ratio = tenths[-1] / tenths[0]
    middle = range(tenth, n - tenth)
    growth = slope([float(i) for i in middle], [view.rss_at_end[i] for i in middle])
    sizes = tree_sizes(root)
    breakdown = ray_breakdown(root)
    total_bytes = sum(e["bytes"] for e in sizes.values())
    total_files = sum(e["files"] for e in sizes.values())
    tmp.cleanup()

    print(f"{args.trials} trials, sampler {args.sampler}, scheduler {args.scheduler}, "
          f"parallel {args.parallel}: {elapsed:.1f} s")
    print("time per trial by tenth (ms): " + " ".join(f"{1000 * t:.0f}" for t in tenths))
    print(f"last tenth / first tenth: {ratio:.2f}  (target 0.8-1.2: "
          f"{'met' if 0.8 <= ratio <= 1.2 else 'MISSED'})")
    print(f"driver RSS: {rss_before:.0f} MB before, {view.rss_at_end[0]:.0f} MB at the first "
          f"trial's end, {view.rss_at_end[-1]:.0f} MB at the last, peak "
          f"{max(r for _, r in samples) if samples else float('nan'):.0f} MB; "
          f"growth {1000 * growth:.1f} kB per trial")
    print(f"run directory: {total_bytes / 1e6:.1f} MB, {total_files} files "
          f"({total_bytes / args.trials / 1e3:.1f} kB, {total_files / args.trials:.1f} files "
          "per trial)")
    for key, e in sorted(sizes.items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"  {key:<14}{e['bytes'] / 1e6:>9.2f} MB{e['files']:>8} files")
    print("  inside ray-*/ (largest first):")
    for key, e in list(breakdown.items())[:12]:
        print(f"    {key:<40}{e['bytes'] / 1e6:>9.2f} MB{e['files']:>8} files")

    out = Path(args.out or Path(__file__).parent / "results" /
               f"many_trials-{args.sampler}-{args.trials}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "trials": args.trials, "sampler": args.sampler, "scheduler": args.scheduler,
        "parallel": args.parallel, "elapsed_s": elapsed, "s_per_trial_by_tenth": tenths,
        "last_over_first_tenth": ratio, "rss_mb_before": rss_before,
        "rss_mb_at_end": view.rss_at_end, "rss_growth_mb_per_trial": growth,
        "run_dir": sizes, "ray_dir": breakdown, "machine": platform.platform()}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
