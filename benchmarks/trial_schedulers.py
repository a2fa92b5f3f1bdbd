"""What each built-in trial scheduler does to a real search: trials it stopped, and tokens
trained against tokens charged (must be equal: no scheduler may retrain untracked tokens).

    python benchmarks/trial_schedulers.py [--trials 16] [--out DIR]

Runs `studies/quickstart-toy.toml` (the toy trainer, a FAKE: seconds per search) once per
trial scheduler, with the toy trainer's ledger on: every training segment appends the tokens
it really trained to trials/<n>/trained-tokens.log, which this script sums and compares with
what the records charge. Not a timing benchmark: counts only.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from autostage.cli import main as autostage
from autostage.rundir import RunDir

STUDY = Path(__file__).parent.parent / "studies" / "quickstart-toy.toml"
SCHEDULERS = ("fifo", "asha", "hyperband", "median")


def trained(run: RunDir, number: int) -> int:
    ledger = run.trial_dir(number) / "trained-tokens.log"
    return sum(int(x) for x in ledger.read_text().split()) if ledger.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="autostage-schedulers-"))
    rows = []
    for name in SCHEDULERS:
        out = root / name
        autostage(["search", str(STUDY), "--out", str(out), "--set",
                   f"study.trial_scheduler={name}", "--set", "model.ledger=true", "--set",
                   f"study.trials={args.trials}"])
        run = RunDir(out)
        records = run.results()
        rows.append((name, len(records), sum(r.status == "pruned" for r in records),
                     sum(trained(run, r.number) for r in records),
                     sum(r.tokens for r in records)))
    print(f"\n{'trial scheduler':16} {'trials':>6} {'stopped':>7} {'trained':>11} "
          f"{'charged':>11}  equal")
    for name, trials, stopped, done, charged in rows:
        print(f"{name:16} {trials:>6} {stopped:>7} {done:>11,} {charged:>11,}  "
              f"{'yes' if done == charged else 'NO'}")


if __name__ == "__main__":
    main()
