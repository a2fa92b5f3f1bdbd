"""`study.target`: a trial ends at the eval that reaches it, and a run's records say when the
search first reached it and at what compute."""

from dataclasses import replace

from support.report_runs import COMPLETED, METRIC, PRUNED, T0, ev, rec

from autostage.records import Branch, TrialStatus
from autostage.target import REACHED, first_reached, reaches, target_text
from autostage.testing.fakes import CurveRun, trial_plan
from autostage.trial import run_trial


def falling(source, trained):
    """The loss of every source: 4.0 falling to 1.0 over 3,000 tokens trained in all."""
    return 1.0 + 3.0 * max(0.0, 1 - sum(trained.values()) / 3000)


def test_a_trial_ends_at_the_eval_that_reaches_the_target():
    plan = replace(trial_plan(None, [("a", 1000), ("b", 2000)], every=250), target=2.0)
    result = run_trial(plan, CurveRun(falling))
    # b's loss reaches 2.0 once 2,000 tokens are trained in all: its 4th eval, not its 8th
    assert result.status == TrialStatus.COMPLETED
    assert result.reason.startswith(REACHED) and "2,000 tokens" in result.reason
    assert result.evals[-1].tokens == 2000 and result.evals[-1].stage == "b"
    assert result.value <= 2.0
    assert result.tokens == 2000


def test_a_target_reached_in_an_earlier_stage_ends_the_trial_there():
    # the metric is b's loss (stages evaluate it: it is the last stage's source), which the
    # toy curve lowers while stage a trains too
    plan = replace(trial_plan(None, [("a", 3000), ("b", 1000)], every=500), target=2.5)
    assert "b" in plan.stages["a"].evals
    result = run_trial(plan, CurveRun(falling))
    assert result.status == TrialStatus.COMPLETED and result.reason.startswith(REACHED)
    assert [e.stage for e in result.evals] == ["a"] * 3 and result.tokens == 1500


def test_without_a_target_or_short_of_it_the_plan_runs_to_its_end():
    for target in (None, 0.5):
        plan = replace(trial_plan(None, [("a", 1000), ("b", 2000)], every=250), target=target)
        result = run_trial(plan, CurveRun(falling))
        assert result.status == TrialStatus.COMPLETED and result.reason == ""
        assert result.tokens == 3000


def test_reaches_by_mode_and_never_for_a_missing_or_non_finite_value():
    assert reaches(0.5, 0.5, "min") and reaches(0.4, 0.5, "min") and not reaches(0.6, 0.5, "min")
    assert reaches(0.9, 0.8, "max") and not reaches(0.7, 0.8, "max")
    assert not reaches(float("nan"), 0.5, "min") and not reaches(None, 0.5, "min")
    assert not reaches(0.1, None, "min")


def timed(evals, start):
    """`evals` received one second apart from `start`."""
    return [replace(e, time=start + i) for i, e in enumerate(evals)]


def test_first_reached_charges_every_trial_up_to_that_moment():
    records = [
        # trial 0 ends before trial 1 reaches the target: all of its 400 tokens count
        rec(0, COMPLETED, 1.5, started=T0, ended=T0 + 2,
            events=timed([ev("target", 200, 2.0), ev("target", 400, 1.5)], T0)),
        # trial 1 reaches 0.5 at T0 + 6, its third eval (600 tokens)
        rec(1, COMPLETED, 0.4, started=T0 + 3, ended=T0 + 7,
            reason=f"{REACHED} (eval.target.loss ≤ 0.5) at 600 tokens",
            events=timed([ev("target", 200, 1.8), ev("target", 400, 0.9),
                          ev("target", 600, 0.4)], T0 + 4)),
        # trial 2, a branch from 1,000 lineage tokens, had reported 1,300 by then: 300 charged
        replace(rec(2, PRUNED, None, started=T0 + 3, ended=T0 + 8, tokens=500,
                    events=timed([ev("target", 1100, 1.0), ev("target", 1300, 0.8),
                                  ev("target", 1500, 0.7)], T0 + 4.5)),
                branch=Branch(0, "target", 1000, 1, "ckpt", {}, 0)),
        # trial 3 reaches it later (T0 + 9): not the first
        rec(3, COMPLETED, 0.3, started=T0 + 8, ended=T0 + 9,
            events=timed([ev("target", 200, 0.3)], T0 + 9)),
    ]
    reached = first_reached(records, METRIC, 0.5, "min")
    assert (reached.trial, reached.tokens, reached.value) == (1, 600, 0.4)
    assert reached.compute == 400 + 600 + 300
    assert reached.stopped
    line = target_text(reached, METRIC, 0.5, "min")
    assert "reached by trial 1" in line and "1,300 tokens" in line and "stopped there" in line


def test_first_reached_says_none_when_no_eval_reached_it():
    records = [rec(0, COMPLETED, 1.5, events=[ev("target", 200, 1.5)])]
    assert first_reached(records, METRIC, 0.5, "min") is None
    assert target_text(None, METRIC, 0.5, "min").endswith("not reached")
