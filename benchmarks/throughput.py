"""Tokens per second of the transformers trainer vs a bare PyTorch loop (a benchmark, not a test).

Both train the same GPT-2 (same config, batch, sequence length, AdamW, clipping) on the same
kind of batches, in one process, interleaved over several rounds so a noisy machine affects
both alike; the median of the per-round ratios is printed. Target: >= 0.95x.

  python benchmarks/throughput.py                 # CPU, 2 layers x 128 wide, 5 rounds
  python benchmarks/throughput.py --device cuda --n-layer 12 --n-embd 768 --context 1024 \\
      --batch 16                                   # a GPU: also reports MFU (bf16 autocast)

Writes benchmarks/results/throughput-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def bare_loop(args, steps: int) -> float:
    """A plain PyTorch loop over the same model: tokens per second."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    device = torch.device(args.device)
    config = GPT2Config(vocab_size=260, n_positions=args.context, n_embd=args.n_embd,
                        n_layer=args.n_layer, n_head=args.n_head, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, pad_token_id=256)
    model = GPT2LMHeadModel(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01)
    data = torch.randint(0, 256, (steps, args.batch, args.context))
    bf16 = device.type == "cuda"
    _sync(device)
    start = time.perf_counter()
    for ids in data:
        ids = ids.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    _sync(device)
    return steps * args.batch * args.context / (time.perf_counter() - start)


def trainer_loop(args, steps: int) -> float:
    """The transformers trainer's own `train`, on pydoc text: tokens per second."""
    from autostage.components import StageVisit, TrialSetup
    from autostage_plugins.datasets import Pydoc
    from autostage_plugins.inits import Default
    from autostage_plugins.lr_schedules import Constant
    from autostage_plugins.optimizers import AdamW
    from autostage_plugins.transformers_trainer import Transformers

    trainer = Transformers(n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head,
                           context=args.context, batch_size=args.batch, device=args.device)
    run = trainer.start(TrialSetup(seed=0, data={"text": Pydoc()}, init=Default(),
                                   objectives={"text": "causal_lm"}))
    tokens = steps * args.batch * args.context
    run.begin_stage(StageVisit(name="s", objective="causal_lm", mix={"text": 1.0}, tokens=tokens,
                             eval_every=tokens, evals=(), optimizer=AdamW(lr=1e-3),
                             lr_schedule=Constant()))
    _sync(run.device)
    start = time.perf_counter()
    done = run.train(tokens, lambda t: 1e-3).tokens
    _sync(run.device)
    return done / (time.perf_counter() - start)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":  # CUDA runs asynchronously: time finished work only
        torch.cuda.synchronize()


def flops_per_token(args) -> float:
    """Training FLOPs per token: 6 N (weights) + 12 L T d (attention), as in PaLM's MFU."""
    n = 12 * args.n_layer * args.n_embd**2 + (260 + args.context) * args.n_embd
    return 6 * n + 12 * args.n_layer * args.context * args.n_embd


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="the device's peak bf16 TFLOP/s, for MFU (H100 SXM: 989)")
    args = p.parse_args()

    import transformers

    transformers.logging.set_verbosity_error()
    bare_loop(args, 3)  # warm up both paths (allocator, kernels, imports)
    trainer_loop(args, 3)
    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(bare_loop(args, args.steps))
        ours.append(trainer_loop(args, args.steps))
    result = {
        "device": args.device, "config": vars(args), "machine": platform.platform(),
        "bare_tokens_per_s": statistics.median(bare), "trainer_tokens_per_s":
        statistics.median(ours),
        # each round runs both back to back: the median of per-round ratios resists a
        # machine whose load drifts between rounds better than a ratio of medians
        "ratio": statistics.median(o / b for o, b in zip(ours, bare, strict=True)),
        "rounds": {"bare": bare, "trainer": ours},
    }
    if args.peak_tflops:
        result["mfu"] = result["trainer_tokens_per_s"] * flops_per_token(args) / \
            (args.peak_tflops * 1e12)
    print(f"bare PyTorch loop:   {result['bare_tokens_per_s']:>12,.0f} tokens/s")
    print(f"transformers trainer:{result['trainer_tokens_per_s']:>12,.0f} tokens/s")
    print(f"ratio: {result['ratio']:.3f}x (target >= 0.95x)"
          + (f"   MFU: {100 * result['mfu']:.1f}%" if "mfu" in result else ""))
    out = Path(__file__).parent / "results" / f"throughput-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
