"""Built-in stage policies. Each decides from the history alone (no hidden state), so a trial
can be resumed or cloned at any eval and its policy decides the same way again: counts such
as "LR cuts so far" are replayed from the decisions the history records."""

from __future__ import annotations

import math
import random
from typing import ClassVar

from pydantic import Field

from autostage.components import StagePolicy
from autostage.decisions import Advance, Continue, Decision, Eval, History, Rewind, ScaleLR, Stop
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


class RewindOnRegression(StagePolicy):
    """After a regression — the watched metric worse than the stage visit's best so far by
    more than `threshold` (relative) — go back to the best weights of this visit and multiply
    the LR by `lr_factor`. A regression after `max_rewinds` rewinds in one visit advances to
    the next stage instead: this stage has stopped helping. As for every policy that rewinds,
    the trial loop ends each visit with its best eval's weights (the trial keeps them)."""

    rewinds: ClassVar[bool] = True

    threshold: float = Field(0.02, ge=0, le=1, description="relative worsening that counts")
    lr_factor: float = Field(0.5, gt=0, le=1, description="LR multiplier per rewind")
    max_rewinds: int = Field(2, ge=0, le=10, description="rewinds per stage visit, then advance")

    def decide(self, history: History) -> Decision:
        *earlier, latest = history.current_visit()
        if not earlier:
            return Continue()
        best = earlier[0].value
        for e in earlier[1:]:
            if history.better(e.value, best):
                best = e.value
        if not self._regressed(history, latest.value, best):
            return Continue()
        done = sum(isinstance(e.decision, Rewind) for e in earlier)
        return Rewind(self.lr_factor) if done < self.max_rewinds else Advance()

    def _regressed(self, history: History, value: float, best: float) -> bool:
        margin = self.threshold * abs(best)
        worse_by = value - best if history.last.watch_mode == "min" else best - value
        return worse_by > margin


class Bandit(StagePolicy):
    """A learning-progress bandit over the plan's non-final stages (Graves et al. 2017;
    Matiisen et al. 2017, TSCL): train where the eval curve moves fastest.

    - Every non-final stage of the plan is tried once first, in plan order, for `min_segment`
      evals: that gives each a progress estimate (and its token budget).
    - A stage's progress is the |slope| of its own watched metric per token between
      consecutive evals on it, smoothed over time (`smoothing`); |slope| so that forgetting
      (a rising loss) also draws attention back, as in TSCL.
    - Every `min_segment` evals on a stage it picks the next stage with Exp3-style
      exponential weights over progress (normalised by the best stage's, / `temperature`),
      mixed with `explore` uniform choice. Staying is a choice like any other.
    - Once the trial has trained as many tokens as the non-final stages' budgets add up to,
      it advances to the final stage, which runs to its own budget and ends the trial.
    - Randomness comes from the history's seed and length, so `decide` stays a pure function
      of the history. A visit that runs out of tokens mid-segment continues in a new visit.
    """

    min_segment: int = Field(2, ge=2, le=50, description="evals on a stage before it may switch")
    smoothing: float = Field(0.5, ge=0, lt=1, description="weight kept by a stage's older slopes")
    temperature: float = Field(0.2, ge=0.01, le=10, description="lower: follow progress greedily")
    explore: float = Field(0.1, ge=0, le=1, description="share of choices made uniformly")

    def decide(self, history: History) -> Decision:
        last = history.last
        if last.stage == history.final:
            return Continue()  # the final stage runs to its budget and ends the trial
        stages = _candidates(history)
        runs = _runs(history.evals)
        run = runs[-1][1]
        visit_over = last.stage_tokens >= last.stage_budget
        segment_done = len(run) >= self.min_segment
        untried = [s for s in stages if s not in {name for name, _ in runs}]
        if untried:
            return Advance(to=untried[0]) if segment_done or visit_over else Continue()
        if last.tokens >= _budget(history, stages) or not _room_for_a_visit(history, stages):
            return _finish(history)
        if visit_over and not segment_done:
            return Advance(to=last.stage)  # finish the segment in a new visit of this stage
        if not visit_over and len(run) % self.min_segment:
            return Continue()
        choice = self._choose(history, stages, runs)
        return Continue() if choice == last.stage and not visit_over else Advance(to=choice)

    def _choose(self, history: History, stages: list[str], runs: list[Run]) -> str:
        progress = {s: _progress(runs, s, self.smoothing) for s in stages}
        top = max((p for p in progress.values() if p is not None), default=0.0)
        # an unmeasured stage counts as the best (optimism); no progress anywhere: uniform
        score = {s: 1.0 if p is None or top == 0 else p / top for s, p in progress.items()}
        weights = [math.exp((score[s] - 1.0) / self.temperature) for s in stages]
        total = sum(weights)
        probs = [(1 - self.explore) * w / total + self.explore / len(stages) for w in weights]
        rng = random.Random(history.seed * 1_000_003 + len(history.evals))
        return rng.choices(stages, weights=probs)[0]


Run = tuple[str, list[Eval]]

# The trial loop fails a trial after history.max_visits stage visits; the bandit heads for
# the final stage before its switching could get there. A history built by hand (max_visits
# 0) gets the loop's default: 4 visits per planned stage.
_DEFAULT_VISITS_PER_STAGE = 4


def _candidates(history: History) -> list[str]:
    """The plan's non-final stages, in plan order: those run so far, then those still queued
    (a stage the plan skipped is never a candidate)."""
    planned = dict.fromkeys([e.stage for e in history.evals] + list(history.remaining))
    return [s for s in planned if s != history.final and s in history.stages]


def _runs(evals: tuple[Eval, ...]) -> list[Run]:
    """Stretches of consecutive evals on one stage (a stretch may span visits of it)."""
    runs: list[Run] = []
    for e in evals:
        if runs and runs[-1][0] == e.stage:
            runs[-1][1].append(e)
        else:
            runs.append((e.stage, [e]))
    return runs


def _progress(runs: list[Run], stage: str, smoothing: float) -> float | None:
    """Smoothed |slope| per token of `stage`'s watched metric; None before two evals on it."""
    slope = None
    for name, evals in runs:
        if name != stage:
            continue
        for a, b in zip(evals, evals[1:], strict=False):
            step = abs(b.value - a.value) / max(1, b.tokens - a.tokens)
            slope = step if slope is None else smoothing * slope + (1 - smoothing) * step
    return slope


def _budget(history: History, stages: list[str]) -> int:
    """Tokens of one visit of every candidate stage: what a fixed plan would spend on them."""
    budgets = {e.stage: e.stage_budget for e in history.evals}
    return sum(budgets.get(s, 0) for s in stages)


def _room_for_a_visit(history: History, stages: list[str]) -> bool:
    visits = len({(e.stage, e.visit) for e in history.evals})
    planned = len(stages) + (history.final is not None)
    limit = history.max_visits or _DEFAULT_VISITS_PER_STAGE * planned
    return visits + 1 + (history.final is not None) <= limit


def _finish(history: History) -> Decision:
    if history.final is None:
        return Stop("the bandit has spent the tokens of the stages it chooses among")
    return Advance(to=history.final)


class BudgetSplit(StagePolicy):
    """Spend a searched fraction of each non-final stage visit's token budget, then advance.

    The fractions follow the order in which the trial runs its non-final visits (`first`,
    `second`, `third`, then `later` for each one after), not stage names: one policy fits any
    study, and under a searched stage order they apply to whichever stage runs there. A
    stage's declared `tokens` is the most it may get; the final stage always runs its whole
    budget. The cut falls at the first eval at or past the fraction, so a stage's
    `eval_every` sets how finely the split can be searched.
    """

    first: float = Field(1.0, gt=0, le=1, description="fraction of the 1st non-final visit")
    second: float = Field(1.0, gt=0, le=1, description="fraction of the 2nd non-final visit")
    third: float = Field(1.0, gt=0, le=1, description="fraction of the 3rd non-final visit")
    later: float = Field(1.0, gt=0, le=1, description="fraction of every later visit")

    def decide(self, history: History) -> Decision:
        last = history.last
        if last.stage == history.final or last.stage_tokens >= last.stage_budget:
            return Continue()  # the visit ends here anyway
        visits = {(e.stage, e.visit) for e in history.evals if e.stage != history.final}
        position = len(visits) - 1
        share = (self.first, self.second, self.third)[position] if position < 3 else self.later
        return Advance() if last.stage_tokens >= share * last.stage_budget else Continue()


@hookimpl
def register_stage_policies(register):
    register("fixed", Fixed)
    register("plateau", Plateau)
    register("rewind", RewindOnRegression)
    register("bandit", Bandit)
    register("budget_split", BudgetSplit)
