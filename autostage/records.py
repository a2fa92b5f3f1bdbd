"""The typed record of a run: a trial's status, its evals as recorded, its outcome, and the
best-trial rule. Everything that crosses worker -> driver -> disk -> report is one of these.

On disk (a run directory, see `autostage.rundir`):
  trials/<n>/events.jsonl   one `EvalRecord.to_json()` per line
  trials/<n>/result.json    `TrialRecord.to_json()`, written once the trial ended

Each file, and each events line, states its record format (`"format": "autostage.result/2"`;
docs/records.md gives the schema of each and what changed between versions). Files without it
are version 1 — among them those written before these types existed (flat eval lines,
decisions as text labels), which `from_json` reads too: a run directory of an earlier version
still opens in `best` and `report`. A newer major version is refused in one line
(`check_format`).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from autostage.decisions import Advance, Continue, Decision, Eval, Rewind, ScaleLR, Stop, describe
from autostage.errors import AutostageError
from autostage.keys import PLAN_KEY, parse_metric
from autostage.ranking import better, finite

#: The major version of the record formats this autostage writes, and the newest it reads.
#: A minor version (`2.1`) only adds fields, which readers ignore; a major one changes or
#: drops a field. Files that state no format are version 1.
FORMAT_VERSION = 2
FORMAT_KEY = "format"
_FORMAT = re.compile(r"autostage\.([a-z_]+)/(\d+)(?:\.\d+)?")


def format_tag(kind: str) -> str:
    """The `format` value of a `kind` record (study, result, branch, eval) as written now."""
    return f"autostage.{kind}/{FORMAT_VERSION}"


def check_format(data: Any, kind: str, source: object) -> int:
    """The major format version of a `kind` record read from `source` (a file, named in the
    error): 1 when it states none. A newer major version than this autostage knows, or a
    record of another kind, is one line (an AutostageError) — never a misreading."""
    if not isinstance(data, Mapping) or FORMAT_KEY not in data:
        return 1
    tag = data[FORMAT_KEY]
    match = _FORMAT.fullmatch(tag) if isinstance(tag, str) else None
    if match is None or match[1] != kind:
        raise AutostageError(f"{source}: format {tag!r} is not an autostage {kind} record "
                             f"(expected {format_tag(kind)}); restore the file from a copy "
                             "of the run")
    major = int(match[2])
    if major > FORMAT_VERSION:
        raise AutostageError(f"{source}: written in format {tag}, newer than this autostage "
                             f"reads ({format_tag(kind)}); upgrade autostage "
                             "(pip install -U autostage)")
    return major


class TrialStatus(StrEnum):
    """Where a trial stands. Stored as its value ("completed", ...)."""

    COMPLETED = "completed"  # ran its stage plan to the end
    STOPPED = "stopped"  # a stage policy's Stop ended it: its value stands
    PRUNED = "pruned"  # a trial scheduler or the token budget ended it early
    FAILED = "failed"  # it raised, or its loss went non-finite
    INTERRUPTED = "interrupted"  # the search was killed while it ran; --resume re-queues it
    RUNNING = "running"  # it has evals and no outcome yet

    @property
    def finished(self) -> bool:
        """It ran to an outcome: it counts towards the study's trials."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED, TrialStatus.PRUNED,
                        TrialStatus.FAILED)

    @property
    def ranked(self) -> bool:
        """Its value is a final result that may be compared (a pruned trial's last eval is
        not: it stopped part-way)."""
        return self in (TrialStatus.COMPLETED, TrialStatus.STOPPED)


@dataclass(frozen=True)
class EvalRecord:
    """One eval as the run directory keeps it: the trial loop's `Eval`, and what the search
    driver knew of it when it arrived."""

    eval: Eval
    time: float | None = None  # when the driver received it (None: it travelled later)
    checkpoint: str | None = None  # the checkpoint reported with it (relative to the store)
    worker: int | None = None  # the worker's process id: which trials shared a reused actor

    @property
    def decision_label(self) -> str:
        """The stage policy's decision in words ("" when none was recorded)."""
        return describe(self.eval.decision) if self.eval.decision is not None else ""

    def metric(self, key: str) -> float | None:
        """A metric of this eval (or `lr`, `tokens`), when it is a finite number."""
        if key in ("lr", "tokens", "stage_tokens"):
            return finite(getattr(self.eval, key))
        return finite(self.eval.metrics.get(key))

    def to_json(self) -> dict[str, Any]:
        data = self.eval.to_json()
        extra = {"time": self.time, "checkpoint": self.checkpoint, "worker": self.worker}
        return {FORMAT_KEY: format_tag("eval"), **data,
                **{k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalRecord:
        ev = Eval.from_json(data) if "metrics" in data else _legacy_eval(data)
        return cls(ev, data.get("time"), data.get("checkpoint"),
                   data.get("worker", data.get("pid")))


@dataclass(frozen=True)
class Branch:
    """Where a branched trial started: a checkpoint its parent trial took at a stage boundary
    or at an eval inside the final stage. What happened before it (the prefix) ran with the
    parent's parameters and seed; the branch trains only what comes after, and is charged
    only that."""

    parent: int  # the parent's trial number
    stage: str  # the stage of the parent's eval the checkpoint was taken at
    tokens: int  # tokens the lineage had trained at the branch point (not charged again)
    evals: int  # the lineage's evals up to the branch point
    checkpoint: str  # relative to the checkpoint store (`CheckpointStore.resolve`)
    prefix: Mapping[str, Any] = field(default_factory=dict)  # the parameters the prefix ran with
    seed: int | None = None  # the prefix's seed (the parent's)
    done: tuple[str, ...] = ()  # at a stage boundary: the stage visits run, in order

    def to_json(self) -> dict[str, Any]:
        return {"parent": self.parent, "stage": self.stage, "tokens": self.tokens,
                "evals": self.evals, "checkpoint": self.checkpoint, "prefix": dict(self.prefix),
                "seed": self.seed, "done": list(self.done)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Branch:
        return cls(int(data["parent"]), str(data["stage"]), int(data["tokens"]),
                   int(data["evals"]), str(data["checkpoint"]), dict(data.get("prefix") or {}),
                   data.get("seed"), tuple(data.get("done") or ()))


def prefix_tokens(branch: Branch | None) -> int:
    """Tokens a trial's lineage trained before it started: a branch's parent's up to its
    branch point, never charged to it (0 for a fresh trial)."""
    return branch.tokens if branch is not None else 0


def charged_tokens(lineage_tokens: int, branch: Branch | None) -> int:
    """The tokens a trial is charged when its lineage has trained `lineage_tokens`: what it
    trained itself (the one rule: records, budgets and reports count these)."""
    return lineage_tokens - prefix_tokens(branch)


@dataclass(frozen=True)
class TrialRecord:
    """A trial as its run directory records it: outcome and evals."""

    number: int
    status: TrialStatus
    reason: str = ""
    values: tuple[float | None, ...] | None = None  # one per study metric; None: no result
    tokens: int = 0  # training tokens this trial was charged
    seed: int | None = None
    config: Mapping[str, Any] = field(default_factory=dict)  # the sampled parameters
    started: float | None = None
    ended: float | None = None
    evals: tuple[EvalRecord, ...] = ()  # from events.jsonl, retries' replays dropped
    branch: Branch | None = None  # a branched trial: where it started (its evals come after)
    threads: int | None = None  # torch threads it trained with (None: not recorded)

    @property
    def lineage_tokens(self) -> int:
        """Tokens its model was trained on: its own, and its prefix's when it branched."""
        return self.tokens + prefix_tokens(self.branch)

    @property
    def continuation(self) -> dict[str, Any]:
        """A branched trial's parameters that differ from its prefix's: what it changed at
        its branch point ({} when it did not branch)."""
        if self.branch is None:
            return {}
        prefix = self.branch.prefix
        return {k: v for k, v in self.config.items() if k not in prefix or prefix[k] != v}

    @property
    def value(self) -> float | None:
        """The first study metric's value, as recorded."""
        return self.values[0] if self.values else None

    @property
    def ranked_value(self) -> float | None:
        """The value this trial ranks by: set when its status ranks and the value is finite."""
        return finite(self.value) if self.status.ranked else None

    @property
    def weights_from(self) -> int | None:
        """The lineage tokens of the eval whose weights the trial ended with: its last eval's,
        or an earlier one's where a rewinding stage policy restored them (None: no evals)."""
        return self.evals[-1].eval.weights_from if self.evals else None

    @property
    def plan(self) -> str:
        """The sampled stage plan (`plan.order`), "" when the study searched none."""
        return str(self.config.get(PLAN_KEY, ""))

    @property
    def decisions(self) -> tuple[EvalRecord, ...]:
        """The evals whose stage-policy decision was not Continue."""
        return tuple(e for e in self.evals
                     if e.eval.decision is not None and not isinstance(e.eval.decision, Continue))

    def with_evals(self, evals: Iterable[EvalRecord]) -> TrialRecord:
        return replace(self, evals=tuple(evals))

    def to_json(self) -> dict[str, Any]:
        """What result.json holds; `value`, `plan`, `evals`, `weights_from`, `continuation` and
        `decisions` are derived, for people and tools reading the file (from_json ignores them)."""
        return {
            FORMAT_KEY: format_tag("result"),
            "number": self.number, "status": self.status.value, "reason": self.reason,
            "value": self.value, "values": list(self.values) if self.values else None,
            "tokens": self.tokens, "seed": self.seed, "config": dict(self.config),
            "plan": self.plan, "started": self.started, "ended": self.ended,
            "evals": len(self.evals), "threads": self.threads,
            "weights_from": self.weights_from,
            "branch": self.branch.to_json() if self.branch else None,
            "continuation": self.continuation if self.branch else None,
            "decisions": [{"stage": e.eval.stage, "visit": e.eval.visit, "tokens": e.eval.tokens,
                           "decision": e.eval.to_json()["decision"], "label": e.decision_label}
                          for e in self.decisions],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], evals: Iterable[EvalRecord] = ()) -> TrialRecord:
        values = data.get("values")
        if values is None and data.get("value") is not None:  # before `values` existed
            values = [data["value"]]
        return cls(
            number=int(data["number"]), status=TrialStatus(data["status"]),
            reason=str(data.get("reason") or ""),
            values=tuple(values) if values is not None else None,
            tokens=int(data.get("tokens") or 0), seed=data.get("seed"),
            config=dict(data.get("config") or {}), started=data.get("started"),
            ended=data.get("ended"), evals=tuple(evals),
            branch=Branch.from_json(data["branch"]) if data.get("branch") else None,
            threads=data.get("threads"),
        )


def best_trial(records: Iterable[TrialRecord], mode: str) -> TrialRecord | None:
    """The best trial by its ranked value; failed, pruned and running trials never win. Ties
    go to the earlier trial."""
    best: TrialRecord | None = None
    for record in records:
        if record.ranked_value is not None and (
                best is None or better(record.ranked_value, best.ranked_value, mode)):
            best = record
    return best


def pareto_front(records: Iterable[TrialRecord], modes: list[str]) -> list[TrialRecord]:
    """The trials no other ranked trial dominates (at least as good in every metric, better in
    one), by trial number. With one metric: the best trial (ties: the earlier one)."""
    ranked = [r for r in records if r.status.ranked and r.values is not None
              and len(r.values) == len(modes)
              and all(finite(v) is not None for v in r.values)]
    if len(modes) == 1:
        best = best_trial(ranked, modes[0])
        return [best] if best is not None else []

    def dominates(a: TrialRecord, b: TrialRecord) -> bool:
        pairs = list(zip(a.values, b.values, modes, strict=True))
        return (all(not better(y, x, m) for x, y, m in pairs)
                and any(better(x, y, m) for x, y, m in pairs))

    front = [r for r in ranked if not any(dominates(o, r) for o in ranked if o is not r)]
    return sorted(front, key=lambda r: r.number)


def lineage(record: TrialRecord, by_number: Mapping[int, TrialRecord], *,
            source: object = "", partial: bool = False) -> list[TrialRecord]:
    """`record` and its ancestors by `branch.parent`, root first: the one walk up a lineage
    (export, the report, the lineage's evals all follow parents through it). Records are
    files a person can edit or damage, so the walk never trusts them: a parent missing from
    `by_number` is an AutostageError (`partial`: it ends the chain instead, for callers
    given only some records), and so is a cycle — each trial is visited once, so no chain is
    longer than the trials there are. `source`: where the records are (a run directory),
    named in the error."""
    chain, seen = [record], {record.number}
    while (branch := chain[-1].branch) is not None:
        parent = by_number.get(branch.parent)
        if parent is None:
            if partial:
                break
            raise _missing_parent(chain[-1].number, branch.parent, source)
        if branch.parent in seen:
            raise _lineage_cycle([r.number for r in chain] + [branch.parent], source)
        seen.add(branch.parent)
        chain.append(parent)
    return chain[::-1]


def _missing_parent(number: int, parent: int, source: object) -> AutostageError:
    where = f"{source}/trials" if source else "the records given"
    return AutostageError(
        f"trial {number} branched from trial {parent}, and {where} holds no record of trial "
        f"{parent}: restore trials/{parent} from a copy of the run (or move trials/{number} "
        "out of it)")


def _lineage_cycle(numbers: list[int], source: object) -> AutostageError:
    loop = numbers[numbers.index(numbers[-1]):]  # from the first trial met twice
    where = f" in {source}" if source else ""
    folders = ", ".join(f"trials/{n}" for n in dict.fromkeys(loop))
    return AutostageError(
        f"the lineage of trial {numbers[0]}{where} loops (trial {loop[0]} branched from "
        + ", and ".join(f"trial {b}" if i == 0 else f"trial {a} from trial {b}"
                        for i, (a, b) in enumerate(itertools.pairwise(loop)))
        + "): a search never records that, so a branch.parent in their result.json (or "
        f"branch.json) was edited or damaged: restore {folders} from a copy of the run (or "
        "move them out of it)")


def lineage_evals(record: TrialRecord, by_number: Mapping[int, TrialRecord]
                  ) -> list[EvalRecord]:
    """The evals of a trial's whole lineage: for a branched trial its parent's lineage up to
    the branch point, then its own; a parent not in `by_number` contributes nothing (a
    resumed search is given the records it has); a cycle is an AutostageError."""
    chain = lineage(record, by_number, partial=True)
    top = chain[0]
    missing = top.branch.evals if top.branch else 0  # lineage evals of a parent not given
    evals = list(top.evals)
    for child in chain[1:]:
        evals = evals[:child.branch.evals - missing] + list(child.evals)
    return evals


def without_replays(evals: Iterable[EvalRecord]) -> list[EvalRecord]:
    """A retried trial restarts from its last stage-boundary checkpoint and evaluates again
    from there: keep the retry's evals, drop the first attempt's beyond that point."""
    kept: list[EvalRecord] = []
    for record in evals:
        while kept and kept[-1].eval.tokens >= record.eval.tokens:
            kept.pop()
        kept.append(record)
    return kept


# --- run directories written before the typed records ------------------------------------------

_LEGACY_EVAL_KEYS = ("stage", "visit", "tokens", "stage_tokens", "stage_budget", "lr")


def _legacy_eval(data: Mapping[str, Any]) -> Eval:
    """An eval line of an earlier version: metrics were top-level keys, the decision a label."""
    metrics = {k: float(v) for k, v in data.items()
               if parse_metric(k) is not None and isinstance(v, int | float)}
    known = {k: data[k] for k in _LEGACY_EVAL_KEYS if k in data}
    label = data.get("decision")
    return Eval(**{"visit": 0, "tokens": 0, "stage_tokens": 0, "stage_budget": 0, "lr": 0.0,
                   **known}, metrics=metrics, watch="",
                decision=_legacy_decision(label) if isinstance(label, str) and label else None)


_LEGACY_LABELS: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"continue"), lambda m: Continue()),
    (re.compile(r"scale_lr x(\S+)"), lambda m: ScaleLR(float(m[1]))),
    (re.compile(r"advance"), lambda m: Advance()),
    (re.compile(r"advance to (.+)"), lambda m: Advance(m[1])),
    (re.compile(r"rewind"), lambda m: Rewind()),
    (re.compile(r"rewind, lr x(\S+)"), lambda m: Rewind(float(m[1]))),
    (re.compile(r"stop: (.*)", re.S), lambda m: Stop(m[1])),
)


def _legacy_decision(label: str) -> Decision | None:
    """Earlier versions stored `describe(decision)`: the one place a label is read back, and
    only for their files. A label none of these patterns knows is kept as a Stop-free None."""
    for pattern, make in _LEGACY_LABELS:
        if (match := pattern.fullmatch(label)) is not None:
            return make(match)
    return None
