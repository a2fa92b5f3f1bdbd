"""The typed record of a run: statuses, evals and trials round-trip through JSON, files of the
previous version still read, one `better`, and an eval reaches the driver whole."""

import dataclasses
import json
import math
import subprocess
import sys

import pytest

import autostage
from autostage.decisions import Advance, Continue, Eval, Rewind, ScaleLR, Stop, describe
from autostage.ranking import better
from autostage.records import EvalRecord, TrialRecord, TrialStatus, best_trial

DECISIONS = [Continue(), ScaleLR(0.5), Advance(), Advance("prereq"), Rewind(), Rewind(0.3),
             Stop("good enough: loss 0.1"), None]


def an_eval(decision=None, **changes) -> Eval:
    fields = dict(stage="target", visit=1, tokens=4096, stage_tokens=2048, stage_budget=8192,
                  lr=1e-3, metrics={"eval.target.loss": 1.5, "train.loss": 1.7},
                  watch="eval.target.loss", watch_mode="min", decision=decision)
    return Eval(**{**fields, **changes})


def test_statuses_say_what_counts_and_what_ranks():
    finished = {s for s in TrialStatus if s.finished}
    ranked = {s for s in TrialStatus if s.ranked}
    assert finished == {TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.PRUNED,
                        TrialStatus.FAILED}
    assert ranked == {TrialStatus.COMPLETED, TrialStatus.STOPPED}
    assert TrialStatus("pruned") is TrialStatus.PRUNED and TrialStatus.PRUNED == "pruned"


@pytest.mark.parametrize("decision", DECISIONS, ids=repr)
def test_an_eval_round_trips_with_its_decision_structured(decision):
    ev = an_eval(decision)
    data = json.loads(json.dumps(EvalRecord(ev, time=12.5, worker=7).to_json()))
    if decision is not None:
        assert data["decision"]["type"] == type(decision).__name__  # never a parsed label
    back = EvalRecord.from_json(data)
    assert back.eval == ev and back.time == 12.5 and back.worker == 7
    assert back.decision_label == (describe(decision) if decision else "")


def test_every_eval_field_reaches_the_driver_without_a_list_of_keys():
    """The worker sends the Eval whole; a field added to Eval needs no second edit."""
    from autostage.search import messages as msg

    ev = an_eval(ScaleLR(0.5))
    report = json.loads(json.dumps(msg.eval_report(3, ev, index=5, final_evals=2, worker=9,
                                                  threads=2)))
    assert Eval.from_json(report[msg.EVAL]) == ev
    assert {f.name for f in dataclasses.fields(Eval)} <= set(report[msg.EVAL])
    # what Ray's trial schedulers and Optuna's intermediate values read, at the top level
    assert report["eval.target.loss"] == 1.5 and report[msg.TIME_ATTR] == 2
    assert report[msg.TRIAL] == 3 and report[msg.EVAL_INDEX] == 5


def test_a_trial_record_round_trips_and_derives_its_decisions():
    evals = (EvalRecord(an_eval(Continue())), EvalRecord(an_eval(ScaleLR(0.5), tokens=8192)))
    record = TrialRecord(4, TrialStatus.STOPPED, "good enough", values=(0.25, 9000.0),
                         tokens=8192, seed=5, config={"plan.order": "prereq>target"},
                         started=1.0, ended=2.0, evals=evals)
    data = json.loads(json.dumps(record.to_json()))
    assert data["status"] == "stopped" and data["value"] == 0.25 and data["evals"] == 2
    assert data["decisions"] == [{"stage": "target", "visit": 1, "tokens": 8192,
                                  "decision": {"type": "ScaleLR", "factor": 0.5},
                                  "label": "scale_lr x0.5"}]
    assert TrialRecord.from_json(data, evals) == record
    assert record.plan == "prereq>target" and record.ranked_value == 0.25
    assert [d.eval.tokens for d in record.decisions] == [8192]


def test_records_of_the_previous_version_still_read():
    old_eval = {"stage": "target", "visit": 0, "tokens": 2048, "stage_tokens": 2048,
                "lr": 0.001, "eval.target.loss": 2.0, "train.loss": 2.2,
                "decision": "rewind, lr x0.5", "final_evals": 1, "trial_number": 0,
                "pid": 42, "time": 3.0}
    ev = EvalRecord.from_json(old_eval)
    assert ev.eval.metrics == {"eval.target.loss": 2.0, "train.loss": 2.2}
    assert ev.eval.decision == Rewind(0.5) and ev.worker == 42 and ev.time == 3.0
    old_result = {"number": 2, "status": "completed", "value": 1.25, "tokens": 100,
                  "seed": 2, "config": {}, "plan": "", "evals": 1, "decisions": []}
    record = TrialRecord.from_json(old_result)
    assert record.values == (1.25,) and record.ranked_value == 1.25


def test_better_is_one_rule_for_min_and_max_and_never_prefers_a_non_finite_value():
    assert better(1.0, 2.0, "min") and not better(2.0, 1.0, "min")
    assert better(2.0, 1.0, "max") and not better(1.0, 1.0, "max")
    assert better(1.0, None, "min") and better(1.0, math.nan, "max")
    assert not better(math.nan, 1.0, "min") and not better(-math.inf, 1.0, "min")
    assert not better(None, None, "min")


def test_the_best_trial_ranks_finished_finite_values_and_ties_go_to_the_earlier():
    records = [TrialRecord(0, TrialStatus.COMPLETED, values=(1.0,)),
               TrialRecord(1, TrialStatus.COMPLETED, values=(1.0,)),
               TrialRecord(2, TrialStatus.PRUNED, values=(0.1,)),
               TrialRecord(3, TrialStatus.INTERRUPTED)]
    assert best_trial(records, "min").number == 0
    assert best_trial(records, "max").number == 0


def test_the_public_api_is_small_and_imports_lazily():
    for name in autostage.__all__:
        assert getattr(autostage, name) is not None
    code = ("import sys, autostage; heavy = [m for m in ('pydantic', 'ray', 'torch', 'optuna')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"  # `autostage --help` stays fast


def test_a_trial_that_kept_earlier_weights_says_which_eval_they_are():
    import io

    from rich.console import Console

    from autostage.live import print_trial

    best = an_eval(Continue(), tokens=4096)
    last = an_eval(Advance(), tokens=6144, metrics={"eval.target.loss": 1.9},
                   restored=best.metrics, restored_from=4096)
    record = TrialRecord(2, TrialStatus.COMPLETED, values=(1.5,), tokens=6144,
                         evals=(EvalRecord(best), EvalRecord(last)))
    data = json.loads(json.dumps(record.to_json()))
    assert data["weights_from"] == 4096 and data["value"] == 1.5
    assert TrialRecord.from_json(data).threads is None  # a run that did not record them
    shown = io.StringIO()
    print_trial(Console(file=shown, width=200), record, ["eval.target.loss"])
    assert ("kept weights: its eval at 4,096 tokens, restored by the stage policy (its last "
            "eval, at 6,144, measured worse)") in shown.getvalue()
    assert record.with_evals([EvalRecord(best)]).weights_from == 4096  # its own, unrestored
