"""The study's target (`study.target`): when a value reaches it, and when a search first did.

A trial whose study metric reaches the target at an eval ends there (the trial loop), and the
search stops the others (the driver). `first_reached` reads a run's records back: which trial
reached it first, at which of its evals, and how many tokens the whole search had trained by
then — the compute to target, the figure a user compares searches by. Pure: no Ray, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from autostage.ranking import finite
from autostage.records import TrialRecord, charged_tokens
from autostage.rundir import RunDir

#: how the reason of a trial that ended at the target begins
REACHED = "reached the study's target"


def reaches(value: object, target: float | None, mode: str) -> bool:
    """Whether `value` is a finite number at or past `target` ("min": ≤, "max": ≥)."""
    x = finite(value)
    if x is None or target is None:
        return False
    return x <= target if mode == "min" else x >= target


def reached_reason(metric: str, target: float, mode: str, tokens: int) -> str:
    sign = "≤" if mode == "min" else "≥"
    return f"{REACHED} ({metric} {sign} {target:g}) at {tokens:,} tokens"


@dataclass(frozen=True)
class Reached:
    """The first eval of a search whose metric reached the target."""

    trial: int
    tokens: int  # the trial's lineage tokens at that eval
    value: float
    compute: int | None  # tokens the search had trained by then (None: times not recorded)
    stopped: bool  # the trial ended there (the search stopped at the target)


def first_reached(records: Iterable[TrialRecord], metric: str, target: float | None,
                  mode: str) -> Reached | None:
    """The eval that first reached `target`, by the time the search's driver received it
    (records without times: by trial number), with the tokens every trial had been charged by
    that time. None when no eval reached it."""
    records = list(records)
    hits = [(e.time, r.number, r, e) for r in records for e in r.evals
            if reaches(e.eval.current.get(metric), target, mode)]
    if not hits:
        return None
    timed = [h for h in hits if h[0] is not None]
    time, _, record, hit = min(timed, key=lambda h: h[:2]) if timed else \
        min(hits, key=lambda h: (h[1], h[3].eval.tokens))
    compute = None if time is None else sum(_charged_by(r, time) for r in records)
    return Reached(record.number, hit.eval.tokens, float(hit.eval.current[metric]), compute,
                   record.reason.startswith(REACHED))


def _charged_by(record: TrialRecord, time: float) -> int:
    """The tokens `record`'s trial had been charged when the driver's clock read `time`: at
    its last eval received by then (all of them once it had ended)."""
    if record.ended is not None and record.ended <= time:
        return record.tokens
    seen = [e.eval.tokens for e in record.evals if e.time is not None and e.time <= time]
    return charged_tokens(max(seen), record.branch) if seen else 0


def target_text(reached: Reached | None, metric: str, target: float, mode: str) -> str:
    """One sentence for `best`, the search's summary and the report."""
    sign = "≤" if mode == "min" else "≥"
    goal = f"target {metric} {sign} {target:g}"
    if reached is None:
        return f"{goal}: not reached"
    compute = "" if reached.compute is None else \
        f", when the search had trained {reached.compute:,} tokens"
    end = "; the search stopped there" if reached.stopped else ""
    return (f"{goal}: reached by trial {reached.trial} ({reached.value:.6g}) at its eval at "
            f"{reached.tokens:,} tokens{compute}{end}")


def study_target_text(run: RunDir, study: object) -> str | None:
    """`target_text` for a run directory and its [study] section (a `StudySection` or the
    dict of study.json); None when the study set no target or has several metrics. The
    trials' evals are read only when there is a target to look for."""
    get = study.get if isinstance(study, dict) else lambda k: getattr(study, k, None)
    target, metric, mode = get("target"), get("metric"), get("mode") or "min"
    if target is None or not isinstance(metric, str) or not isinstance(mode, str):
        return None
    return target_text(first_reached(run.trials(), metric, target, mode), metric, target, mode)
