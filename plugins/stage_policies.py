"""Built-in stage policies. Each decides from the history alone (no hidden state), so a trial
can be resumed or cloned at any eval and its policy decides the same way again."""

from __future__ import annotations

from pydantic import Field

from autostage.components import StagePolicy
from autostage.decisions import Advance, Continue, Decision, History, ScaleLR
from autostage.hookspecs import hookimpl


class Fixed(StagePolicy):
    """Run the plan as given: every stage to its full token budget."""

    def decide(self, history: History) -> Decision:
        return Continue()


class Plateau(StagePolicy):
    """ReduceLROnPlateau inside a stage; once the LR has been cut `max_cuts` times and the
    stage plateaus again, advance to the next stage instead of wasting its remaining tokens."""

    patience: int = Field(2, ge=1, le=20, description="flat evals before acting")
    factor: float = Field(0.5, gt=0, lt=1, description="LR multiplier per cut")
    min_delta: float = Field(0.0, ge=0, le=10, description="smallest change that counts")
    cooldown: int = Field(0, ge=0, le=20, description="evals ignored after a cut")
    max_cuts: int = Field(2, ge=0, le=10, description="cuts per stage visit, then advance")

    def decide(self, history: History) -> Decision:
        # Replay the visit from its first eval: the cut count and cooldown are derived, not
        # stored, so the answer is the same after a resume.
        evals = history.current_visit()
        best = evals[0].value
        flat = cuts = cooling = 0
        action: Decision = Continue()
        for e in evals[1:]:
            action = Continue()
            if history.better(e.value, best) and abs(e.value - best) > self.min_delta:
                best, flat = e.value, 0
            else:
                flat += 1
            if cooling:
                cooling -= 1
                flat = 0
            if flat >= self.patience:
                flat = 0
                if cuts < self.max_cuts:
                    cuts, cooling, action = cuts + 1, self.cooldown, ScaleLR(self.factor)
                else:
                    action = Advance()
        return action


@hookimpl
def register_stage_policies(register):
    register("fixed", Fixed)
    register("plateau", Plateau)
