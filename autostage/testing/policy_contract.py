"""The stage-policy contract: a valid Decision for every scripted history, the same one
for the same history, and toy-trainer trials that end on their final stage."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from autostage.components import StagePolicy
from autostage.decisions import Advance, Continue, Decision, History, Rewind, ScaleLR, Stop
from autostage.records import TrialStatus
from autostage.testing.contracts import SearchableContract
from autostage.testing.fakes import builtin, run_toy_trial
from autostage.testing.histories import replay

# name -> (segments, mode, whether the last stage is final)
POLICY_SCENARIOS: dict[str, tuple[list, str, bool]] = {
    "one eval": ([("target", [2.0])], "min", True),
    "improving": ([("target", [4.0, 3.5, 3.1, 2.8, 2.6, 2.45, 2.35, 2.3])], "min", True),
    "flat": ([("target", [2.0] * 8)], "min", True),
    "regressing": ([("target", [3.0, 2.0, 2.2, 2.6, 3.1, 3.7, 4.4, 5.2])], "min", True),
    "noisy": ([("target", [3.0, 2.7, 2.9, 2.5, 2.6, 2.3, 2.45, 2.2])], "min", True),
    "three stages": ([("general", [4.0, 3.0, 2.5, 2.3]), ("prereq", [3.5, 2.5, 2.0, 1.8]),
                      ("target", [3.0, 2.0, 1.5, 1.3])], "min", True),
    "a repeat visit": ([("general", [4.0, 3.2]), ("prereq", [3.5, 3.0]),
                        ("general", [3.3, 3.1]), ("target", [3.0, 2.5, 2.2])], "min", True),
    "accuracy (max)": ([("general", [0.2, 0.3, 0.35, 0.3]),
                        ("target", [0.1, 0.3, 0.5, 0.45, 0.6])], "max", True),
    "no final stage": ([("a", [3.0, 2.5, 2.4, 2.4]), ("b", [3.0, 2.0, 2.1])], "min", False),
}


def decision_problem(policy: StagePolicy, history: History, decision: Any) -> str | None:
    """What is wrong with `decision` as `policy`'s answer to `history` (a str), or None:
    not a Decision, `Advance(to=)` an unknown stage, a factor that is not a finite number
    above 0, a Rewind from a policy without `rewinds = True`, a Stop without a reason.

        for history, decision in replay(MyPolicy(), [("target", [3.0, 2.0, 2.2])]):
            assert decision_problem(MyPolicy(), history, decision) is None
    """
    match decision:
        case Continue():
            return None
        case Advance(to=to):
            if to is not None and to not in history.stages:
                return f"Advance(to={to!r}): no such stage; stages: {history.stages}"
        case ScaleLR(factor=f):
            if not (isinstance(f, int | float) and math.isfinite(f) and f > 0):
                return f"ScaleLR({f!r}): the factor must be a finite number > 0"
        case Rewind(lr_factor=f):
            if not type(policy).rewinds:
                return "Rewind from a policy without `rewinds = True`: no snapshot is kept"
            if not (isinstance(f, int | float) and math.isfinite(f) and f > 0):
                return f"Rewind(lr_factor={f!r}): the factor must be a finite number > 0"
        case Stop(reason=reason):
            if not (isinstance(reason, str) and reason):
                return "Stop needs a reason"
        case _:
            return f"{decision!r} is not a Decision (Continue, ScaleLR, Advance, Rewind, Stop)"
    return None


def _trace(result: Any) -> list[tuple]:
    return [(e.stage, e.visit, e.tokens, e.decision, round(e.value, 12)) for e in result.evals]


class StagePolicyContract(SearchableContract):
    """Answers every scripted history with a valid Decision, the same one for the same
    history, and run through the trial loop on the toy trainer ends its trials on the final
    stage (or with a Stop and its reason) — never a failure."""

    SEEDS = (0, 1, 2)
    LRS = (3e-4, 3e-3, 2e-2)  # below, at and above the toy trainer's best LR

    @pytest.fixture(params=sorted(POLICY_SCENARIOS))
    def scenario(self, request: Any) -> str:
        return request.param

    def _replay(self, policy: StagePolicy, scenario: str) -> list[tuple[History, Decision]]:
        segments, mode, final = POLICY_SCENARIOS[scenario]
        return replay(policy, segments, mode=mode, final=final, seed=7)

    def test_decides_every_scripted_history(self, component: Any, scenario: str) -> None:
        problems = [(len(h.evals), p) for h, d in self._replay(component, scenario)
                    if (p := decision_problem(component, h, d))]
        assert problems == []

    def test_same_history_same_decision(self, component: Any, scenario: str) -> None:
        for history, decision in self._replay(component, scenario):
            copy = replace(history, evals=tuple(replace(e) for e in history.evals))
            assert component.decide(history) == decision
            assert component.decide(copy) == decision

    @pytest.mark.parametrize("lr", LRS)
    def test_toy_trials_end_on_the_final_stage(self, component: Any, lr: float) -> None:
        for seed in self.SEEDS:
            optimizer = builtin("optimizer", "adamw", lr=lr)
            result = run_toy_trial(component, optimizer=optimizer, seed=seed)
            assert result.status != TrialStatus.FAILED, result.reason
            if result.status == TrialStatus.COMPLETED:
                assert result.evals[-1].stage == "target", "a trial must end on its final stage"
            else:
                assert result.reason, "a Stop needs a reason"

    def test_same_seed_same_toy_trial(self, component: Any) -> None:
        assert _trace(run_toy_trial(component, seed=3)) == _trace(run_toy_trial(component,
                                                                                seed=3))
