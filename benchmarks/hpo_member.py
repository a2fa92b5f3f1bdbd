"""One trial as the peers and the baselines of benchmarks/hpo.py train it: a plain loop over
autostage's trainer plugin (its model, data and eval code, built by `prepare_trial` from one
configuration of the task's search space), with none of autostage's search machinery — no
trial loop, stage policy or scheduler. Each stage of the configuration's plan trains its
tokens with a fresh optimizer and the study's LR schedule (`begin_stage`); only the final
stage is evaluated, on the study metric's source, every `eval_every` tokens: nothing reads a
prefix stage's eval here, so none is paid for. autostage's own methods evaluate every stage
(their stage policies read it) and pay for it through the same ledger."""

from __future__ import annotations

import json
import os
import threading
from functools import lru_cache, partial
from typing import Any

from hpo_task import Task

_BUILD = threading.Lock()  # torch's global RNG seeds each model's init: one build at a time


@lru_cache(maxsize=1)
def registry() -> Any:
    from autostage import load_registry

    return load_registry()


@lru_cache(maxsize=4)
def study(task: Task) -> Any:
    """The task's study as the peers search it: its own [search] space, no stage policy."""
    return task.load(registry())


@lru_cache(maxsize=4)
def space(task: Task) -> Any:
    from autostage.space import compile_space

    return compile_space(study(task), registry())


def sample(task: Task, seed: int) -> dict[str, Any]:
    """One random configuration (Optuna's RandomSampler, seeded), every key filled."""
    from autostage.build import sample_config

    return sample_config(study(task), registry(), seed, space(task))


def complete(task: Task, params: dict[str, Any]) -> dict[str, Any]:
    """`params` over every key of the task's space (a peer's config may carry extra keys,
    and a pooled record of autostage's may carry its stage policy's)."""
    base = sample(task, 0)
    return {k: params.get(k, v) for k, v in base.items()}


class Member:
    """One configuration trained through its plan; `step` trains to the final stage's next
    eval and returns the tokens trained and the metric there."""

    def __init__(self, task: Task, params: dict[str, Any], seed: int) -> None:
        from autostage.build import prepare_trial
        from autostage.keys import eval_source, metric_name

        self.params = complete(task, params)
        with _BUILD:
            self.trial = prepare_trial(study(task), registry(), self.params, seed,
                                       space=space(task), threads=1)
        self.metric = self.trial.plan.metric
        self.source, self.name = eval_source(self.metric), metric_name(self.metric)
        self.order = self.trial.plan.order
        self.stage = 0  # index into the plan
        self.done = 0  # tokens into that stage
        self.position = 0  # tokens along the plan

    @property
    def finished(self) -> bool:
        return self.stage >= len(self.order)

    @property
    def final_tokens(self) -> int:
        """Tokens into the final stage (0 before it)."""
        return self.done if self._visit().final else 0

    def _visit(self) -> Any:
        return self.trial.plan.stages[self.order[min(self.stage, len(self.order) - 1)]]

    def step(self) -> tuple[int, float]:
        run, trained = self.trial.trainer, 0
        while True:
            visit = self._visit()
            if self.done == 0:
                run.begin_stage(visit)
            left = visit.tokens - self.done
            tokens = min(visit.eval_every, left) if visit.final else left
            n = run.train(tokens, partial(_lr, visit, self.done)).tokens
            self.done, self.position, trained = self.done + n, self.position + n, trained + n
            if visit.final:
                value = run.evaluate([self.source])[self.source][self.name]
                if self.done >= visit.tokens:
                    self.stage = len(self.order)
                return trained, float(value)
            self.stage, self.done = self.stage + 1, 0

    def save(self, directory: str, owner: str) -> None:
        """The trainer's checkpoint, and where along the plan it was taken."""
        self.trial.trainer.save(directory)
        with open(os.path.join(directory, "member.json"), "w") as f:
            json.dump({"stage": self.stage, "done": self.done, "position": self.position,
                       "owner": owner}, f)

    def load(self, directory: str) -> str:
        """Continue from a checkpoint (ours or a PBT donor's) with this member's config:
        the final stage continues part-way with its mixture and LR. Returns its owner."""
        self.trial.trainer.load(directory)
        with open(os.path.join(directory, "member.json")) as f:
            state = json.load(f)
        self.stage, self.done, self.position = state["stage"], state["done"], state["position"]
        if not self.finished and self.done:
            self.trial.trainer.continue_stage(self._visit())
        return state["owner"]


def _lr(visit: Any, start: int, t: int) -> float:
    """The LR after `t` tokens of a segment that began `start` tokens into the visit."""
    return visit.optimizer.lr * visit.lr_schedule.multiplier(start + t, visit.tokens)
