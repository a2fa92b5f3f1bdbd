"""The `toy` trainer — a FAKE, named as one: seeded analytic loss curves, no model, no torch.

It exists so the search plumbing, stage policies and reports can be tested and demoed in
milliseconds. The curves respond the way real training does, qualitatively:
- each data source has a skill that grows with tokens trained on it, fastest near an optimal
  LR (a log-normal bell); far above it the loss diverges and the trial fails;
- a `toy_task` source may name a prerequisite whose skill speeds up its own learning;
- skills not being trained are slowly forgotten, so the last stage dominates;
- a high current LR adds a noise floor, so decaying the LR at a stage's end pays off.

It lives in the core (not in the built-in plugins) so that `autostage.testing` can use it
without depending on `autostage_plugins`; the built-in plugin `autostage_plugins.toy`
registers these classes as the trainer "toy" and the dataset "toy_task".
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from autostage.components import (
    Dataset,
    PreflightContext,
    StageVisit,
    Trainer,
    TrainResult,
    TrialSetup,
)
from autostage.decisions import TrialFailed
from autostage.errors import Problem

TOKEN_SCALE = 50_000  # tokens for one unit of skill at the optimal LR and difficulty 1


class ToyTask(Dataset):
    """A fake data source for the toy trainer: only its learning curve's shape."""

    difficulty: float = Field(1.0, gt=0, le=100, description="more tokens needed to learn")
    start: float = Field(4.0, gt=0, le=20, description="loss before any training")
    floor: float = Field(0.5, ge=0, le=20, description="loss no amount of training beats")
    prerequisite: str | None = Field(None, description="data source whose skill speeds this")
    transfer: float = Field(1.5, ge=0, le=10, description="how much the prerequisite helps")

    def preflight(self, context: PreflightContext) -> list[Problem]:
        if self.prerequisite is not None and self.prerequisite not in context.sources:
            return [Problem("prerequisite", f"no data source named '{self.prerequisite}'; "
                            f"defined: {', '.join(context.sources) or 'none'}")]
        return []


@dataclass
class _State:
    skill: dict[str, float]
    lr: float = 0.0  # the LR at the end of the last segment
    step: int = 0
    rng: Any = None
    stage: StageVisit | None = None


class Toy(Trainer):
    """Fake trainer with analytic loss curves (see the module docstring)."""

    objectives = ("causal_lm", "mlm", "classify")
    metrics = ("loss",)

    lr_optimum: float = Field(3e-3, gt=0, le=10, description="LR that learns fastest")
    lr_width: float = Field(1.5, gt=0, le=10, description="bell width in log(LR) units")
    diverge_ratio: float = Field(20.0, gt=1, le=1e6, description="LR/optimum that diverges")
    forgetting: float = Field(0.25, ge=0, le=10, description="decay of untrained skills")
    lr_floor: float = Field(0.3, ge=0, le=10, description="loss added per LR/optimum")
    noise: float = Field(0.01, ge=0, le=1, description="eval noise (std, in loss units)")
    step_tokens: int = Field(2048, ge=1, le=10_000_000, description="tokens per step")
    # Fault and cost injection, for testing the search plumbing:
    step_seconds: float = Field(0.0, ge=0, le=10, description="sleep per step (fake compute)")
    crash_at_tokens: int = Field(0, ge=0, description="raise after this many tokens (0: never)")
    crash_once: bool = Field(False, description="crash only on a trial's first attempt")
    hang_at_tokens: int = Field(0, ge=0, description="stop responding after this many tokens, "
                                "forever (0: never): a stuck data loader")
    ledger: bool = Field(False, description="append the tokens of every training segment to "
                         "trained-tokens.log in the trial's directory: what was really "
                         "trained, to compare with what the records charge")

    def start(self, setup: TrialSetup) -> ToyRun:
        # Any other dataset (pydoc, arith, ...) gets the default curve: the fake needs no data.
        # (a prerequisite naming no data source: ToyTask.preflight, checked as the trial starts)
        tasks = {n: d if isinstance(d, ToyTask) else ToyTask() for n, d in setup.data.items()}
        return ToyRun(self, tasks, setup.seed, setup.workdir)


class ToyRun:
    """One trial of the toy trainer."""

    def __init__(self, cfg: Toy, tasks: dict[str, ToyTask], seed: int,
                 workdir: str | None) -> None:
        self.cfg = cfg
        self.tasks = tasks
        self.workdir = Path(workdir) if workdir else None
        self.state = _State(skill=dict.fromkeys(tasks, 0.0), rng=random.Random(seed))
        self.tokens = 0

    def begin_stage(self, stage: StageVisit) -> None:
        self.state.stage = stage

    # the toy keeps no state of a visit (its "optimizer" has none): continuing one part-way
    # from a checkpoint is beginning it
    continue_stage = begin_stage

    def train(self, tokens: int, lr: Callable[[int], float]) -> TrainResult:
        cfg, st = self.cfg, self.state
        if st.stage is None:
            raise RuntimeError("the trial loop must call begin_stage before train")
        done = 0
        while done < tokens:
            rate = lr(done)
            if rate > cfg.lr_optimum * cfg.diverge_ratio:
                raise TrialFailed(f"non-finite loss at stage {st.stage.name}, step {st.step}")
            self._step(rate, cfg.step_tokens)
            done += cfg.step_tokens
            st.step += 1
            self.tokens += cfg.step_tokens
            self._inject_faults()
        st.lr = lr(done)
        if cfg.ledger and self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            with (self.workdir / "trained-tokens.log").open("a") as f:
                f.write(f"{done}\n")
        loss = sum(w * self._loss(s) for s, w in st.stage.mix.items())
        return TrainResult(tokens=done, metrics={"loss": loss})

    def _inject_faults(self) -> None:
        cfg = self.cfg
        if cfg.step_seconds:
            time.sleep(cfg.step_seconds)
        while cfg.hang_at_tokens and self.tokens >= cfg.hang_at_tokens:
            time.sleep(3600)
        if cfg.crash_at_tokens and self.tokens >= cfg.crash_at_tokens:
            marker = self.workdir / "crashed-once" if self.workdir else None
            if cfg.crash_once and marker is not None and marker.exists():
                return
            if marker is not None:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            raise RuntimeError(f"injected crash after {self.tokens} tokens")

    def _step(self, rate: float, tokens: int) -> None:
        cfg, st = self.cfg, self.state
        # an LR of 0 (a schedule may reach it: warmup starts, decays to min_ratio = 0) learns
        # nothing, as for real; the bell is in log(LR), which 0 has none of
        efficiency = 0.0 if rate <= 0 else math.exp(
            -(math.log(rate / cfg.lr_optimum) ** 2) / (2 * cfg.lr_width**2))
        units = tokens / TOKEN_SCALE
        mix = st.stage.mix
        for name, task in self.tasks.items():
            weight = mix.get(name, 0.0)
            helper = st.skill.get(task.prerequisite, 0.0) if task.prerequisite else 0.0
            boost = 1.0 + task.transfer * min(1.0, helper / 2.0)
            gain = weight * efficiency * units * boost / task.difficulty
            forget = cfg.forgetting * (1.0 - weight) * units
            st.skill[name] = st.skill[name] * math.exp(-forget) + gain

    def _loss(self, name: str) -> float:
        task, st, cfg = self.tasks[name], self.state, self.cfg
        learned = (task.start - task.floor) * math.exp(-st.skill[name])
        return task.floor + learned + cfg.lr_floor * st.lr / cfg.lr_optimum

    def evaluate(self, sources: Sequence[str]) -> dict[str, dict[str, float]]:
        rng, noise = self.state.rng, self.cfg.noise
        return {s: {"loss": self._loss(s) + rng.gauss(0.0, noise)} for s in sources}

    def snapshot(self) -> Any:
        # the "weights" only: eval noise keeps flowing after a rewind, as it would for real
        return dict(self.state.skill), self.state.lr

    def restore(self, snapshot: Any) -> None:
        skill, self.state.lr = snapshot
        self.state.skill = dict(skill)

    def save(self, directory: str) -> None:
        st = self.state
        version, internal, gauss = st.rng.getstate()
        state = {"skill": st.skill, "lr": st.lr, "step": st.step, "tokens": self.tokens,
                 "rng": [version, list(internal), gauss]}
        (Path(directory) / "toy.json").write_text(json.dumps(state))

    def load(self, directory: str) -> None:
        state = json.loads((Path(directory) / "toy.json").read_text())
        version, internal, gauss = state["rng"]
        self.state.rng.setstate((version, tuple(internal), gauss))
        self.state.skill, self.state.lr, self.state.step = state["skill"], state["lr"], \
            state["step"]
        self.tokens = state["tokens"]

    def export(self, directory: str) -> None:
        """A FAKE model: the toy has no weights, so its "model" is its skills and last LR in a
        small JSON file. It lets the model-keeping plumbing be tested in milliseconds."""
        model = {"fake": "the toy trainer's skills, not a model", "skill": self.state.skill,
                 "lr": self.state.lr, "tokens": self.tokens}
        (Path(directory) / "toy-model.json").write_text(json.dumps(model))
