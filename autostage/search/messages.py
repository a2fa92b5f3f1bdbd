"""What a trial in a Ray worker tells the driver: the keys of its reports, in one place.

A Ray trial's config is its `TrialIdentity.to_config()` (its number, parameters and branch
point: `autostage.trial_identity` owns those keys).

Every report carries TRIAL (the trial's number, under the config's own key). Besides that,
a report is one of:
  - an eval: EVAL (the `Eval`, whole), EVAL_INDEX, WORKER, THREADS, `tokens` (charged: a
    branched trial's count from its branch point), the metrics of the trial's weights after
    the eval (`Eval.current`) as top-level keys (what Ray's trial schedulers and
    Optuna's intermediate values read), TIME_ATTR once
    the trial is in its final stage, and EARLIER (evals held back since the last report);
  - an outcome, the trial's last report: OUTCOME (its TrialStatus), REASON, VALUES, `tokens`,
    SEED, THREADS, EARLIER; with the trial's exported model as its Ray checkpoint, or NO_MODEL (why
    its trainer exported none) when the study keeps models and the trial has a value;
  - a retry's start: RESUMED_AT (how many evals its checkpoint already holds);
  - evals flushed before a crash: EARLIER only.
"""

from __future__ import annotations

from typing import Any

from autostage.decisions import Eval
from autostage.keys import TOKENS  # the tokens a trial was charged, as the metric `tokens`
from autostage.records import TrialStatus
from autostage.trial_identity import NUMBER

TRIAL = NUMBER
EVAL = "autostage_eval"
EVAL_INDEX = "eval_index"
EARLIER = "earlier_evals"
OUTCOME = "autostage_status"
REASON = "reason"
VALUES = "values"
SEED = "seed"
RESUMED_AT = "resumed_at"
WORKER = "worker"
THREADS = "threads"  # the torch threads the trial trains with: a replay needs the same count
NO_MODEL = "no_model"
# Trial schedulers count evals of the final stage, so rungs fall at evaluations and compare
# trials at the same point of the stage that decides the metric. Counting every eval would
# compare a trial still in its prerequisite stage with one already training on the target,
# and stop every plan with a prefix (ASHA's short-horizon bias, made worse by stages).
TIME_ATTR = "final_evals"


def eval_report(number: int, ev: Eval, index: int, final_evals: int | None,
                worker: int, threads: int, before: int = 0) -> dict[str, Any]:
    """`before`: tokens of a branched trial's prefix, which it is not charged."""
    report = {TRIAL: number, EVAL: ev.to_json(), EVAL_INDEX: index, TOKENS: ev.tokens - before,
              WORKER: worker, THREADS: threads, **ev.current}
    if final_evals is not None:
        report[TIME_ATTR] = final_evals  # absent before the final stage: schedulers wait
    return report


def outcome_report(number: int, status: TrialStatus, reason: str, values: list | None,
                   tokens: int, seed: int, threads: int, earlier: list[dict[str, Any]]
                   ) -> dict[str, Any]:
    return {TRIAL: number, OUTCOME: status.value, REASON: reason, VALUES: values,
            TOKENS: tokens, SEED: seed, THREADS: threads, EARLIER: earlier}


def is_outcome(report: dict[str, Any]) -> bool:
    return OUTCOME in report


def is_eval(report: dict[str, Any]) -> bool:
    """Whether `report` carries an eval of its own. EVAL_INDEX, a number, survives the
    flattening Ray applies before its searcher and trial schedulers see a report (EVAL, a
    dict, becomes `autostage_eval/stage`, ...)."""
    return EVAL_INDEX in report and OUTCOME not in report


def outcome_of(report: dict[str, Any]) -> TrialStatus | None:
    return TrialStatus(report[OUTCOME]) if OUTCOME in report else None
