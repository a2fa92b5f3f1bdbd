"""Scripted histories: feed a stage policy an eval curve, eval by eval, as the trial loop
would, without training anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from autostage.components import StagePolicy
from autostage.decisions import Decision, Eval, History

Segment = tuple[str, Sequence[float]]  # a stage visit: its name and its watched values


def script(segments: Sequence[Segment], *, every: int = 1000, mode: str = "min",
           final: bool = True, seed: int = 0) -> list[History]:
    """The history after each eval of a scripted trial — a list of `History`, one per value
    of every segment, in order, each holding every eval so far.

    `segments` are (stage name, watched values) pairs, one stage visit each (a name seen
    again is a repeat visit); `every` tokens between evals; each visit's budget exactly its
    evals. The watched metric is `eval.<stage>.loss` (`eval.<stage>.accuracy` with mode
    "max"), and every eval also reports the study metric, the last segment's. The last
    segment's stage is the final one unless `final` is False. `seed` is `History.seed`.
    Evals carry no decision (`decision` is None): `replay` fills in a policy's own.

        histories = script([("prereq", [3.0, 2.5]), ("target", [3.0, 2.0])])
        assert len(histories) == 4 and histories[-1].final == "target"
    """
    names = list(dict.fromkeys(name for name, _ in segments))
    last = segments[-1][0]
    metric = _watch(last, mode)
    evals: list[Eval] = []
    out: list[History] = []
    for i, (name, values) in enumerate(segments):
        visit = sum(1 for other, _ in segments[:i] if other == name)
        remaining = tuple(dict.fromkeys(n for n, _ in segments[i + 1:] if n != name))
        for k, value in enumerate(values):
            ev = Eval(stage=name, visit=visit, tokens=(len(evals) + 1) * every,
                      stage_tokens=(k + 1) * every, stage_budget=len(values) * every, lr=1e-3,
                      # every eval reports the study metric too, as in a real trial
                      metrics={_watch(name, mode): float(value), metric: float(value)},
                      watch=_watch(name, mode), watch_mode=mode)
            evals.append(ev)
            out.append(History(evals=tuple(evals), metric=metric, mode=mode,
                               stages=tuple(names), remaining=remaining,
                               final=last if final else None, seed=seed))
    return out


def replay(policy: StagePolicy, segments: Sequence[Segment], **kw) -> list[
        tuple[History, Decision]]:
    """`policy`'s decision after each eval of `script(segments, **kw)`, as a list of
    `(History, Decision)` pairs — the history the policy saw and what it answered —, each
    earlier eval carrying the decision the policy made there (as the trial loop records
    them). The script does not react to the decisions (an Advance does not end the segment):
    it tests what a policy says, not what it causes. `kw`: `script`'s every, mode, final,
    seed.

        fixed = builtin("stage_policy", "fixed")
        steps = replay(fixed, [("prereq", [3.0, 2.5]), ("target", [3.0, 2.0])])
        assert [d for _, d in steps] == [Continue(), Continue(), Continue(), Continue()]
    """
    out: list[tuple[History, Decision]] = []
    decided: list[Eval] = []
    for history in script(segments, **kw):
        history = replace(history, evals=(*decided, history.last))
        decision = policy.decide(history)
        decided.append(replace(history.last, decision=decision))
        out.append((history, decision))
    return out


def decisions(policy: StagePolicy, values: Sequence[float], *, stage: str = "target",
              **kw) -> list[Decision]:
    """The decisions of `policy` — bare `Decision`s, one per value — along ONE stage visit,
    named `stage` ("target"), whose watched values are `values`: the trial's only stage,
    and its final one (`final=False`: a trial without a final stage). `kw`: `script`'s
    every, mode, final, seed. `replay` gives the histories too, and takes several stages.

        got = decisions(Patience(evals=2), [3.0, 2.0, 2.5, 2.1])
        assert got == [Continue(), Continue(), Continue(), Advance()]
    """
    return [d for _, d in replay(policy, [(stage, values)], **kw)]


def _watch(stage: str, mode: str) -> str:
    return f"eval.{stage}.{'accuracy' if mode == 'max' else 'loss'}"
