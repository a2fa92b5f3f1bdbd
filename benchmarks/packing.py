"""Trials packed on one GPU: aggregate tokens/s of k trials at 1/k of a GPU each, against one
trial alone (a benchmark, not a test).

Each of k Ray tasks asks for `1/k` GPU — as `study.resources.gpus = 1/k` does — and trains
the transformers trainer (benchmarks/throughput.py's `trainer_loop`, bf16 autocast on CUDA)
for the same steps; aggregate = all tokens / (last end - first start). A GPU that one small
trial leaves idle gains from packing; a saturated one does not, and memory caps k.

  python benchmarks/packing.py --device cuda --k 1 2 4 8 --n-layer 12 --n-embd 768 \\
      --context 1024 --batch 8              # a GPU: the case that matters
  python benchmarks/packing.py --device cpu --k 1 2 # runs anywhere: CPU cores split instead

Writes benchmarks/results/packing-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def one_trial(args: argparse.Namespace, threads: int) -> tuple[int, float, float]:
    """Train once (after a short warm-up): tokens, and when training started and ended."""
    import torch
    import transformers
    from throughput import trainer_loop

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    trainer_loop(args, 2)  # kernels, allocator
    rate = trainer_loop(args, args.steps)  # timed over training alone (no model build)
    end = time.time()
    tokens = args.steps * args.batch * args.context
    return tokens, end - tokens / rate, end


def packed(args: argparse.Namespace, k: int) -> dict:
    """k trials at once, each with 1/k of the device: aggregate tokens/s."""
    import ray

    cores = os.cpu_count() or 1
    if args.device == "cuda":
        options, threads = {"num_gpus": 1 / k, "num_cpus": 1}, max(1, cores // k)
    else:
        options, threads = {"num_cpus": cores / k}, max(1, cores // k)
    task = ray.remote(one_trial).options(**options)
    runs = ray.get([task.remote(args, threads) for _ in range(k)])
    tokens = sum(r[0] for r in runs)
    wall = max(r[2] for r in runs) - min(r[1] for r in runs)
    return {"k": k, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per trial")
    p.add_argument("--out", default=None, help="the JSON to write (default: results/...)")
    args = p.parse_args(argv)

    import ray

    owns = not ray.is_initialized()
    if owns:
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})
    try:
        rows = [packed(args, k) for k in args.k]
    finally:
        if owns:
            ray.shutdown()
    alone = rows[0]["tokens_per_s"]
    for row in rows:
        row["vs_alone"] = row["tokens_per_s"] / alone
        print(f"k={row['k']}: {row['tokens_per_s']:>12,.0f} tokens/s aggregate, "
              f"{row['vs_alone']:.2f}x one trial alone")
    result = {"device": args.device, "config": vars(args), "machine": platform.platform(),
              "rows": rows}
    out = Path(args.out) if args.out else \
        Path(__file__).parent / "results" / f"packing-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
