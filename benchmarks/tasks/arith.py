"""4-digit addition with a prerequisite (arith.toml): the task that search_efficiency.py and
peers.py (in git history) measured before issue 26, as a task of benchmarks/hpo.py."""

STUDY = "arith.toml"
# Answer-token loss (nats) counted as reached: set before the first full run of 2026-11-23,
# well below the ~1.55-nat plateau every trial sits on before it gets carrying, and above the
# 0.001-0.1 that trials which got it end at.
TARGET = 0.5
# ~8 whole plans (809k compute each) per search at two trials a time (2026-11-23).
BUDGET = 6_400_000
EVAL_COST = 1 / 3  # an eval token is a forward pass: a third of a training token's work
# Every trial sits at 1.50-1.58 nats until ~300k target tokens (half the 600k final stage),
# where the ones that will get carrying break away (the probe and M1-M4's curves, seeds 0-4).
PLATEAU = 0.5
TUNING_SEEDS = [0, 1, 2, 3, 4]  # every run before issue 26, so every knob so far
HELDOUT_SEEDS = list(range(100, 110))
# --smoke checks the plumbing, not the claim: at half size no trial gets carrying
SMOKE = {"scale": 0.5, "budget": 900_000, "seeds": [100, 101]}
