"""A search from Python, cell by cell as in a notebook (the `# %%` cells open as one in VS
Code, PyCharm and Jupytext): search, look at the best trial and every trial as a DataFrame,
search on in the same run directory, catch a mistake, write the report.

    python examples/notebook_search.py [OUT]   (default OUT: a new temporary folder; ~30 s)

The toy study's trainer is a fake with analytic loss curves, so the trials take milliseconds;
each `autostage.search` starts Ray and stops it again, as `autostage search` does (a
notebook that already runs `ray.init()` has its Ray used and left running).
"""

# %% Where the study is and where the run goes
import sys
import tempfile
from pathlib import Path

import autostage

STUDY = Path(__file__).resolve().parents[1] / "studies" / "quickstart-toy.toml"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "run"

# %% Search 6 trials, 2 at a time; `sets` are the CLI's --set overrides
result = autostage.search(STUDY, trials=6, parallel=2, out=OUT, sets=["study.seed=3"])
print(f"{len(result.records)} trials in {result.path}")

# %% The best trial (a study of two metrics gives its Pareto front, a list)
best = result.best
print(f"best: trial {best.number}, {result.metrics[0]} = {best.value:.4f}, "
      f"plan {best.plan or '(fixed)'}, {best.tokens:,} tokens")

# %% Every trial, a row each: number, status, value, tokens, plan, ..., then its parameters
trials = result.trials
print(trials[["number", "status", "value", "tokens", "plan"]].to_string(index=False))

# %% Search on: the same run directory, up to 8 trials (the same study, seed included)
more = autostage.search(STUDY, trials=8, out=OUT, resume=True, sets=["study.seed=3"],
                        quiet=True)  # quiet: no live view, no summary
print(f"now {len(more.records)} trials; best: trial {more.best.number}")

# %% A mistake is an exception carrying the CLI's lines: nothing runs, nothing is written
try:
    autostage.search(STUDY, out=OUT.parent / "never", sets=["study.trails=4"])
except autostage.StudyError as e:
    print(e)

# %% The HTML report (a search writes it too; this rewrites it)
print(f"report: {more.report()}")
