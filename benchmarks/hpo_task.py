"""A benchmark task for benchmarks/hpo.py: a study file and what the benchmark needs beside it.

A task is `benchmarks/tasks/<name>.py` that sets STUDY, plain constants (the contract):

    STUDY = "arith.toml"    # beside it: the study every method searches, its [search] space
                            # (the plan as `search.plan`, the final stage's mixture, the LR)
                            # shared by autostage, the peers and the baselines
    TARGET = 0.5            # the study metric's value counted as reached: chosen before any
                            # method ran, with why in a comment
    BUDGET = 6_400_000      # compute per search (training tokens + evals at EVAL_COST)
    EVAL_COST = 1 / 3       # an eval token's cost in training tokens (a forward pass only)
    PLATEAU = 0.5           # the share of the final stage before which trials cannot be told
                            # apart: ASHA's grace, the pruner's min_resource, PBT's burn-in
    TUNING_SEEDS = [0, 1, 2, 3, 4]          # every knob was chosen on these ...
    HELDOUT_SEEDS = list(range(100, 110))   # ... and the committed table runs on these
    SMOKE = {"scale": 0.5, "budget": 900_000, "seeds": [100, 101]}  # every stage scaled

The study must have one final stage with `eval_every` (the rungs and perturbations fall on its
evals) and a transformers trainer (the eval's tokens are batch_size x eval_batches x context).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TASKS = Path(__file__).resolve().parent / "tasks"
REQUIRED = ("STUDY", "TARGET", "BUDGET", "EVAL_COST", "PLATEAU", "TUNING_SEEDS",
            "HELDOUT_SEEDS", "SMOKE")


@dataclass(frozen=True)
class Task:
    name: str
    study: Path
    target: float
    budget: float
    eval_cost: float
    plateau: float
    tuning_seeds: tuple[int, ...]
    heldout_seeds: tuple[int, ...]
    smoke: dict = field(compare=False)  # a dict: left out of the hash
    scale: float = 1.0  # every stage's tokens and eval interval times this (--smoke)

    def sized(self, mode: str) -> Task:
        """The task as --smoke or --full runs it."""
        if mode == "full":
            return self
        return replace(self, budget=self.smoke["budget"], scale=self.smoke["scale"],
                       heldout_seeds=tuple(self.smoke["seeds"]))

    def seeds(self, which: str) -> tuple[int, ...]:
        return self.heldout_seeds if which == "heldout" else self.tuning_seeds

    def overrides(self) -> list[str]:
        """Study overrides that scale every stage (none at full size)."""
        if self.scale == 1.0:
            return []
        out = []
        for stage in _stages(self.study):
            out.append(f"stage.{stage['name']}.tokens={round(stage['tokens'] * self.scale)}")
            if "eval_every" in stage:
                out.append(f"stage.{stage['name']}.eval_every="
                           f"{round(stage['eval_every'] * self.scale)}")
        return out

    def load(self, registry: Any, extra: list[str] = ()) -> Any:
        """The checked study, sized, with `extra` overrides."""
        from autostage.check import load_study

        return load_study(self.study, registry, [*self.overrides(), *extra])

    def better(self, a: float, b: float) -> bool:
        """a is at least as good as b under the study's mode."""
        return a >= b if self.mode == "max" else a <= b

    @property
    def mode(self) -> str:
        import tomllib

        return tomllib.loads(self.study.read_text())["study"].get("mode", "min")

    @property
    def final(self) -> dict:
        """The final stage's table, sized: tokens and eval_every."""
        stage = next(s for s in _stages(self.study) if s.get("final"))
        return {"name": stage["name"], "tokens": round(stage["tokens"] * self.scale),
                "eval_every": round(stage["eval_every"] * self.scale)}

    @property
    def plateau_tokens(self) -> int:
        """PLATEAU in final-stage tokens, on a whole eval."""
        final = self.final
        return math.ceil(self.plateau * final["tokens"] / final["eval_every"]) \
            * final["eval_every"]

    @property
    def plateau_evals(self) -> int:
        return self.plateau_tokens // self.final["eval_every"]

    def eval_compute(self, registry: Any) -> float:
        """One eval of one data source, in compute."""
        model = self.load(registry).model.settings
        return self.eval_cost * model["batch_size"] * model["eval_batches"] * model["context"]


def _stages(path: Path) -> list[dict]:
    import tomllib

    return tomllib.loads(path.read_text())["stage"]


def task_names() -> list[str]:
    """The tasks under benchmarks/tasks/: the modules that set STUDY (a task's folder may
    hold other scripts beside its descriptions)."""
    import ast

    def sets_study(path: Path) -> bool:
        return any(isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "STUDY" for t in node.targets)
            for node in ast.parse(path.read_text()).body)

    return sorted(p.stem for p in TASKS.glob("*.py") if sets_study(p))


def load_task(name: str) -> Task:
    """benchmarks/tasks/<name>.py, run as a module of constants."""
    path = TASKS / f"{name}.py"
    if name not in task_names():
        raise SystemExit(f"no task named {name!r} in {TASKS}; tasks: "
                         f"{', '.join(task_names())}")
    spec = importlib.util.spec_from_file_location(f"task_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if missing := [k for k in REQUIRED if not hasattr(module, k)]:
        raise SystemExit(f"{path} lacks {', '.join(missing)} (see benchmarks/hpo_task.py)")
    c = {k: getattr(module, k) for k in REQUIRED}
    return Task(name, TASKS / c["STUDY"], float(c["TARGET"]), float(c["BUDGET"]),
                float(c["EVAL_COST"]), float(c["PLATEAU"]), tuple(c["TUNING_SEEDS"]),
                tuple(c["HELDOUT_SEEDS"]), dict(c["SMOKE"]))
