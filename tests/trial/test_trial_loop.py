"""The trial loop with a scripted trainer and a scripted stage policy."""

import math
from dataclasses import replace

import pytest
from pydantic import PrivateAttr

from autostage.components import StagePolicy, StageVisit, TrainResult
from autostage.decisions import Advance, Continue, Rewind, ScaleLR, Stop, TrialFailed
from autostage.records import TrialStatus
from autostage.trial import TrialPlan, run_trial
from autostage_plugins.lr_schedules import Constant, Cosine
from autostage_plugins.optimizers import AdamW


class ScriptedTrainer:
    """A trainer whose 'weights' are the tokens it has trained; losses come from a script."""

    def __init__(self, losses=None, fail_at=None):
        self.weights = 0
        self.losses = list(losses or [])
        self.fail_at = fail_at
        self.lrs = []  # (stage, lr at the segment's start)
        self.stages = []
        self.trains = 0

    def begin_stage(self, stage):
        self.stages.append(stage.name)
        self.stage = stage

    def train(self, tokens, lr):
        self.trains += 1
        if self.fail_at == self.trains:
            raise TrialFailed(f"non-finite loss at stage {self.stage.name}, step 7")
        self.lrs.append((self.stage.name, lr(0)))
        self.weights += tokens
        return TrainResult(tokens=tokens, metrics={"loss": 1.0})

    def evaluate(self, sources):
        loss = self.losses.pop(0) if self.losses else 1.0 / (1 + self.weights)
        return {s: {"loss": loss} for s in sources}

    def snapshot(self):
        return self.weights

    def restore(self, snapshot):
        self.weights = snapshot


class Scripted(StagePolicy):
    """Returns decisions from a script: eval number (1-based) -> decision."""

    rewinds = True
    _script: dict = PrivateAttr(default_factory=dict)

    def decide(self, history):
        return self._script.get(len(history.evals), Continue())


def policy(script):
    p = Scripted()
    p._script.update(script)
    return p


def stage(name, tokens=100, every=25, final=False, schedule=None, lr=1e-3):
    return StageVisit(
        name=name, objective="causal_lm", mix={name: 1.0}, tokens=tokens, eval_every=every,
        evals=(name,), watch=f"eval.{name}.loss", watch_mode="min",
        optimizer=AdamW(lr=lr), lr_schedule=schedule or Constant(), final=final,
    )


def plan(script, *stages, order=None):
    return TrialPlan(
        stages={s.name: s for s in stages}, order=order or tuple(s.name for s in stages),
        policy=policy(script), metric=f"eval.{stages[-1].name}.loss", mode="min",
    )


def test_fixed_plan_runs_every_stage_to_its_budget():
    trainer = ScriptedTrainer()
    reported = []
    result = run_trial(plan({}, stage("a"), stage("b", final=True)), trainer, reported.append)
    assert result.status == TrialStatus.COMPLETED
    assert [e.stage for e in result.evals] == ["a"] * 4 + ["b"] * 4
    assert result.tokens == 200 and result.evals[-1].tokens == 200
    assert reported == result.evals
    assert result.value == result.evals[-1].metrics["eval.b.loss"]


def test_advance_ends_a_stage_early():
    trainer = ScriptedTrainer()
    result = run_trial(plan({2: Advance()}, stage("a"), stage("b", final=True)), trainer)
    assert [e.stage for e in result.evals] == ["a", "a", "b", "b", "b", "b"]
    assert result.tokens == 150  # a's last 50 tokens were never spent


def test_advance_to_a_named_stage_and_final_ends_the_trial():
    trainer = ScriptedTrainer()
    p = plan({1: Advance(to="c")}, stage("a"), stage("b"), stage("c", final=True))
    result = run_trial(p, trainer)
    assert trainer.stages == ["a", "c"]  # b was skipped: the final stage ends the trial
    assert result.status == TrialStatus.COMPLETED


def test_scale_lr_changes_the_lr_the_trainer_sees_from_then_on():
    trainer = ScriptedTrainer()
    run_trial(plan({2: ScaleLR(0.5)}, stage("a"), stage("b", final=True)), trainer)
    lrs = [lr for _, lr in trainer.lrs]
    assert lrs[:2] == [1e-3, 1e-3]
    assert all(math.isclose(lr, 5e-4) for lr in lrs[2:])  # kept into stage b too


def test_rewind_restores_the_best_snapshot_of_the_stage():
    # eval 2 is the best; eval 3 regresses and the policy rewinds with a lower LR.
    trainer = ScriptedTrainer(losses=[3.0, 2.0, 5.0, 1.9])
    p = plan({3: Rewind(lr_factor=0.1)}, stage("a", final=True))
    result = run_trial(p, trainer)
    # weights after eval 2 were 50 tokens; the rewind restores them, then 25 more are trained
    assert trainer.weights == 75
    assert math.isclose(trainer.lrs[-1][1], 1e-4)
    assert result.evals[2].decision == Rewind(lr_factor=0.1)
    assert result.tokens == 100  # compute spent still counts


def test_stop_ends_the_trial_with_its_reason():
    trainer = ScriptedTrainer()
    result = run_trial(plan({2: Stop("good enough")}, stage("a"), stage("b", final=True)), trainer)
    assert result.status == TrialStatus.STOPPED and result.reason == "good enough"
    assert trainer.trains == 2 and trainer.stages == ["a"]


def test_nan_metric_fails_the_trial_with_a_reason():
    trainer = ScriptedTrainer(losses=[2.0, float("nan")])
    result = run_trial(plan({}, stage("a", final=True)), trainer)
    assert result.status == TrialStatus.FAILED
    assert result.reason.startswith("non-finite eval.a.loss at stage a")
    assert result.value is None


def test_trainer_failure_fails_the_trial():
    result = run_trial(plan({}, stage("a", final=True)), ScriptedTrainer(fail_at=3))
    assert result.status == TrialStatus.FAILED
    assert result.reason == "non-finite loss at stage a, step 7"
    assert len(result.evals) == 2


def test_a_policy_that_never_settles_is_stopped():
    class Loop(StagePolicy):
        def decide(self, history):
            return Advance(to="a")

    p = TrialPlan(stages={"a": stage("a"), "b": stage("b", final=True)}, order=("a", "b"),
                  policy=Loop(), metric="eval.b.loss", mode="min")
    result = run_trial(p, ScriptedTrainer())
    assert result.status == TrialStatus.FAILED and "stage visits" in result.reason


def test_lr_schedule_multiplier_is_applied_per_stage():
    trainer = ScriptedTrainer()
    sched = Cosine(warmup=0.0, min_ratio=0.1)
    run_trial(plan({}, stage("a", tokens=100, every=10, schedule=sched, final=True)), trainer)
    lrs = [lr for _, lr in trainer.lrs]
    assert lrs[0] == 1e-3
    assert all(x > y for x, y in zip(lrs, lrs[1:], strict=False))  # decays within the stage
    assert lrs[-1] > 1e-4  # reaches min_ratio only at the stage's very end


def test_history_shows_the_policy_the_current_visit_and_what_remains():
    seen = []

    class Spy(StagePolicy):
        def decide(self, history):
            seen.append((history.stage, len(history.current_visit()), history.remaining))
            return Continue()

    p = TrialPlan(stages={"a": stage("a", tokens=50), "b": stage("b", tokens=50, final=True)},
                  order=("a", "b"), policy=Spy(), metric="eval.b.loss", mode="min")
    run_trial(p, ScriptedTrainer())
    assert seen == [("a", 1, ("b",)), ("a", 2, ("b",)), ("b", 1, ()), ("b", 2, ())]


def test_an_advance_in_the_final_stage_ends_the_trial_early_and_says_so():
    trainer = ScriptedTrainer()
    result = run_trial(plan({6: Advance()}, stage("a"), stage("b", final=True)), trainer)
    assert [e.stage for e in result.evals] == ["a"] * 4 + ["b"] * 2
    assert result.status == TrialStatus.STOPPED  # it was not trained to its budget
    assert result.reason == ("the stage policy ended the final stage b early (Advance) "
                             "after 50 of its 100 tokens")
    assert result.value == result.evals[-1].metrics["eval.b.loss"]  # still ranked


def test_an_advance_at_the_final_stages_last_eval_completes_the_trial():
    result = run_trial(plan({8: Advance()}, stage("a"), stage("b", final=True)),
                       ScriptedTrainer())
    assert result.status == TrialStatus.COMPLETED and result.tokens == 200


def test_a_rewind_at_the_last_eval_reports_the_restored_weights():
    # the final eval regresses and the policy rewinds: the trial's value is the best eval's,
    # the one its restored weights were evaluated at, not the regressed one
    trainer = ScriptedTrainer(losses=[3.0, 2.0, 2.5, 6.0])
    result = run_trial(plan({4: Rewind()}, stage("a", final=True)), trainer)
    assert trainer.weights == 50
    assert result.value == 2.0
    assert result.evals[-1].decision == Rewind()


def test_each_eval_records_the_lr_at_its_own_position():
    sched = Cosine(warmup=0.0, min_ratio=0.1)
    result = run_trial(plan({}, stage("a", tokens=100, every=25, schedule=sched, final=True)),
                       ScriptedTrainer())
    for ev in result.evals:
        assert ev.lr == pytest.approx(1e-3 * sched.multiplier(ev.stage_tokens, 100))


def test_within_final_checkpoints_every_final_eval_but_the_last_and_a_resume_continues_it():
    """A branch point inside the final stage: resuming there trains the rest of the visit at
    the same LR schedule position, with `continue_stage` (not a fresh `begin_stage`)."""
    import copy

    class Continuing(ScriptedTrainer):
        def continue_stage(self, stage):
            self.stages.append(f"{stage.name}+")
            self.stage = stage

    def make():
        return plan({}, stage("a", tokens=50), stage("b", tokens=100, final=True,
                                                     schedule=Cosine(warmup=0.0)))

    whole_trainer = Continuing()
    whole = run_trial(make(), whole_trainer)
    states = []
    run_trial(make(), Continuing(), checkpoint=lambda s: states.append(copy.deepcopy(s)),
              within_final=True)
    # the a>b boundary, then b's evals at 25, 50 and 75 of its 100 tokens (not its last)
    assert [(s.current, s.stage_done) for s in states] == \
        [(None, 0), ("b", 25), ("b", 50), ("b", 75)]
    assert [len(s.evals) for s in states] == [2, 3, 4, 5]

    trainer = Continuing()
    trainer.weights = states[2].tokens  # the "weights" at that eval, as `load` would give
    resumed = run_trial(make(), trainer, resume=states[2])
    assert trainer.stages == ["b+"]
    assert resumed.tokens == whole.tokens == 150
    assert [e.lr for e in resumed.evals] == [e.lr for e in whole.evals]
    assert [e.stage_tokens for e in resumed.evals[-2:]] == [75, 100]
    assert whole_trainer.lrs[-2:] == trainer.lrs


def test_a_trainer_without_continue_stage_fails_a_resume_inside_a_stage_saying_so():
    from autostage.trial import LoopState

    p = plan({}, stage("b", tokens=100, final=True))
    inside = LoopState((), 25, 1.0, (), {}, current="b", stage_done=25)
    result = run_trial(p, ScriptedTrainer(), resume=inside)
    assert result.status == TrialStatus.FAILED
    assert "cannot continue stage b part-way: it has no continue_stage method" in result.reason
    assert run_trial(p, ScriptedTrainer(), checkpoint=lambda s: None).status == \
        TrialStatus.COMPLETED  # without within_final nothing inside a stage is checkpointed


def test_a_replayed_lineage_switches_settings_just_after_the_eval_each_branch_started_at():
    """`[[lineage]]`: a switch inside the final stage continues the visit with the new LR
    (the schedule's position kept); one at a boundary applies from the next stage on."""
    from autostage.trial import Switch

    class Continuing(ScriptedTrainer):
        def continue_stage(self, stage):
            self.stages.append(f"{stage.name}+")
            self.stage = stage

    first = plan({}, stage("a", tokens=50, lr=1e-3), stage("b", tokens=100, final=True, lr=1e-3))
    later = plan({}, stage("a", tokens=50, lr=5e-3), stage("b", tokens=100, final=True, lr=2e-3))
    inside = replace(first, switches=(Switch(100, later.stages, later.policy),))
    trainer = Continuing()
    result = run_trial(inside, trainer)
    assert trainer.stages == ["a", "b", "b+"]
    assert [lr for _, lr in trainer.lrs] == [1e-3] * 4 + [2e-3] * 2  # b at 50 of 100
    assert result.tokens == 150

    at_boundary = replace(first, switches=(Switch(50, later.stages, later.policy),))
    trainer = Continuing()
    run_trial(at_boundary, trainer)
    assert trainer.stages == ["a", "b"]  # the switch came with b's own beginning
    assert [lr for _, lr in trainer.lrs] == [1e-3, 1e-3, 2e-3, 2e-3, 2e-3, 2e-3]


def test_a_rewind_after_resuming_inside_a_visit_goes_back_to_the_checkpoints_eval():
    import copy

    class Continuing(ScriptedTrainer):
        def continue_stage(self, stage):
            self.stage = stage

    states = []
    run_trial(plan({}, stage("b", tokens=100, final=True)), Continuing(),
              checkpoint=lambda s: states.append(copy.deepcopy(s)), within_final=True)
    at_50 = states[1]
    trainer = Continuing()
    trainer.weights = 50
    # eval 3 (the first after resuming) is worse and the policy rewinds: to eval 2's weights
    result = run_trial(plan({3: Rewind()}, stage("b", tokens=100, final=True)), trainer,
                       resume=at_50)
    third = result.evals[2]
    assert isinstance(third.decision, Rewind)
    assert third.restored == at_50.evals[-1].current
    assert trainer.weights == 75  # back to 50, then the visit's last 25 tokens


def test_a_replay_switching_to_a_rewinding_policy_inside_a_visit_rewinds_to_the_switch():
    from autostage.trial import Switch

    class Continuing(ScriptedTrainer):
        def continue_stage(self, stage):
            self.stage = stage

    class NoRewinds(Scripted):
        rewinds = False

    first = plan({}, stage("b", tokens=100, final=True))
    first = replace(first, policy=NoRewinds())
    later = plan({4: Rewind()}, stage("b", tokens=100, final=True))
    trainer = Continuing()
    result = run_trial(replace(first, switches=(Switch(50, later.stages, later.policy),)),
                       trainer)
    assert result.status == TrialStatus.COMPLETED
    # the best eval since the switch (eval 3, better than the switch's eval 2)
    assert result.evals[3].restored == result.evals[2].current


def test_a_replayed_branch_that_chose_another_rest_of_the_plan_runs_it():
    from autostage.trial import Switch

    stages = (stage("a", tokens=50), stage("b", tokens=50), stage("c", tokens=50, final=True))
    root = plan({}, *stages, order=("a", "b", "c"))
    trainer = ScriptedTrainer()
    switched = replace(root, switches=(Switch(50, root.stages, root.policy, ("a", "c")),))
    result = run_trial(switched, trainer)
    assert trainer.stages == ["a", "c"] and result.tokens == 100


# --- a rewinding policy keeps the best weights it saw -----------------------------------------


def test_a_rewinding_policy_ends_the_trial_with_its_best_weights_not_the_last():
    # the final stage spends its budget while the loss turns up (overfitting), with no
    # regression big enough for the policy to rewind: the trial keeps eval 2's weights
    trainer = ScriptedTrainer(losses=[3.0, 2.0, 2.5, 2.6])
    result = run_trial(plan({}, stage("a", final=True)), trainer)
    assert trainer.weights == 50  # eval 2's weights, restored
    assert result.value == 2.0
    last = result.evals[-1]
    assert last.metrics["eval.a.loss"] == 2.6  # what was measured stays recorded
    assert last.restored_from == 50 and last.weights_from == 50


def test_an_advance_after_the_last_rewind_leaves_with_the_best_weights():
    # the trial: two rewinds, then a third regression advances out of the final stage
    losses = [2.4, 2.36, 2.45, 2.4, 2.5, 2.52]
    script = {3: Rewind(0.5), 5: Rewind(0.5), 6: Advance()}
    trainer = ScriptedTrainer(losses=losses)
    result = run_trial(plan(script, stage("a", tokens=150, final=True)), trainer)
    assert result.status == TrialStatus.COMPLETED
    assert result.value == 2.36 and trainer.weights == 50
    assert [e.restored_from for e in result.evals] == [None, None, 50, None, 50, 50]


def test_a_stage_visit_hands_the_next_stage_its_best_weights():
    trainer = ScriptedTrainer(losses=[3.0, 2.0, 2.5, 2.6, 1.0, 1.0, 1.0, 1.0])
    starts = []
    begin = trainer.begin_stage
    trainer.begin_stage = lambda s: (starts.append(trainer.weights), begin(s))
    run_trial(plan({}, stage("a"), stage("b", final=True)), trainer)
    assert starts == [0, 50]  # b began from a's best eval (after 50 tokens), not a's last


def test_a_policy_that_never_rewinds_keeps_the_weights_it_ends_with():
    class NoRewinds(Scripted):
        rewinds = False

    trainer = ScriptedTrainer(losses=[3.0, 2.0, 2.5, 2.6])
    p = replace(plan({}, stage("a", final=True)), policy=NoRewinds())
    result = run_trial(p, trainer)
    assert trainer.weights == 100 and result.value == 2.6
    assert result.evals[-1].restored is None and result.evals[-1].weights_from == 100
