"""The plugin: one module, registered through the `autostage` entry-point group in
pyproject.toml. It adds an LR schedule and a stage policy; autostage finds both by name."""

from __future__ import annotations

from autostage.components import LRSchedule, StagePolicy
from autostage.decisions import Advance, Continue, Decision, History, Stop
from autostage.hookspecs import hookimpl
from pydantic import Field


class Cyclic(LRSchedule):
    """Triangular cycles (Smith 2017): `cycles` times up from `min_ratio` of the peak to the
    peak and back down, within each stage visit."""

    cycles: int = Field(2, ge=1, le=20, description="up-and-down cycles per stage")
    min_ratio: float = Field(0.1, ge=0, le=1, description="multiplier at a cycle's ends")

    def multiplier(self, done: int, total: int) -> float:
        phase = (min(done, total) / total * self.cycles) % 1.0
        height = 1.0 - abs(2.0 * phase - 1.0)  # 0 -> 1 -> 0 over a cycle
        return self.min_ratio + (1.0 - self.min_ratio) * height


class GoodEnough(StagePolicy):
    """Spend no more tokens on a stage that is good enough: once its watched metric reaches
    `goal`, advance; on the final stage, end the trial (tokens-to-target studies)."""

    goal: float = Field(1.0, ge=0, le=100, description="a loss, or an accuracy in max mode")

    def decide(self, history: History) -> Decision:
        last = history.last
        reached = last.value <= self.goal if last.watch_mode == "min" else last.value >= self.goal
        if not reached:
            return Continue()
        if last.stage == history.final:
            return Stop(f"{last.watch} reached the goal {self.goal:g} after {last.tokens} tokens")
        return Advance()


@hookimpl
def register_lr_schedules(register):
    register("cyclic", Cyclic)


@hookimpl
def register_stage_policies(register):
    register("good_enough", GoodEnough)
