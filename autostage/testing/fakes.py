"""Fast fakes: tiny trials on the toy trainer, a trainer run with scripted curves, and a tiny
torch model with GPT-2's module names."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from autostage.components import (
    LRSchedule,
    Optimizer,
    StagePolicy,
    StageVisit,
    TrainResult,
    TrialSetup,
)
from autostage.host import Registry, load_registry
from autostage.toy import Toy, ToyTask
from autostage.trial import Report, TrialPlan, TrialResult, run_trial

# The quickstart's curriculum, which `run_toy_trial` runs: a general stage, a prerequisite
# that makes the target easier, and the target, pinned last — data source name -> ToyTask, and
# (stage name, tokens) in plan order, each stage training on the source of its name. 48 toy
# steps per prefix stage: a whole trial takes milliseconds.
TOY_DATA: dict[str, ToyTask] = {
    "general": ToyTask(difficulty=0.5),
    "prereq": ToyTask(difficulty=1.0),
    "target": ToyTask(difficulty=4.0, prerequisite="prereq", floor=0.3),
}
TOY_STAGES: tuple[tuple[str, int], ...] = (("general", 98_304), ("prereq", 98_304),
                                           ("target", 196_608))


@cache
def _registry() -> Registry:
    return load_registry()


def builtin(kind: str, name: str, **params: Any) -> Any:
    """The component `kind` registers as `name` (a built-in's or an installed plugin's),
    built with `params` as its fields, through the plugin registry (loaded once): to
    combine with yours. Unknown names and fields raise as a study file would.

        adamw = builtin("optimizer", "adamw", lr=3e-3)
        result = run_toy_trial(MyPolicy(), optimizer=adamw)

    The test kit imports no plugin package: the built-ins it defaults to (AdamW, Constant,
    Fixed, Default) come from here."""
    return _registry().create(kind, name, params)


def stage_plan(name: str, tokens: int, *, every: int | None = None, final: bool = False,
               metric_source: str | None = None, optimizer: Optimizer | None = None,
               lr_schedule: LRSchedule | None = None, mode: str = "min") -> StageVisit:
    """One stage visit, a `StageVisit`: training on the data source of its own name,
    `tokens` long, an eval every `every` tokens (default: a quarter), watched by that
    source's loss (by its accuracy for mode "max") and also evaluating `metric_source`;
    AdamW at 3e-3 and a constant schedule unless given.

        stage = stage_plan("target", 4096, final=True)
        run.begin_stage(stage)
    """
    metric = "accuracy" if mode == "max" else "loss"
    evals = tuple(dict.fromkeys([name, metric_source or name]))
    return StageVisit(
        name=name, objective="causal_lm", mix={name: 1.0}, tokens=tokens,
        eval_every=every or max(1, tokens // 4), evals=evals, watch=f"eval.{name}.{metric}",
        watch_mode=mode, optimizer=optimizer or builtin("optimizer", "adamw", lr=3e-3),
        lr_schedule=lr_schedule or builtin("lr_schedule", "constant"), final=final,
    )


def trial_plan(policy: StagePolicy | None, stages: Sequence[tuple[str, int]], *,
               every: int | None = None, seed: int = 0, order: Sequence[str] | None = None,
               optimizer: Optimizer | None = None, lr_schedule: LRSchedule | None = None,
               final: bool = True) -> TrialPlan:
    """A `TrialPlan` (`autostage.trial`) over `stages` — (name, tokens) pairs, each stage
    training on the data source of its name (`stage_plan`), the last one final unless
    `final` is False — judged by the last stage's loss (mode "min"), run in `order` (default:
    as given) under `policy` (default: the built-in `fixed`). Run it with
    `autostage.trial.run_trial(plan, run)` on any trainer run, e.g. a `CurveRun`:

        plan = trial_plan(MyPolicy(), [("a", 1000), ("b", 500)], every=100)
        result = run_trial(plan, CurveRun(lambda source, trained: 3.0 / (1 + sum(
            trained.values()) / 500)))
    """
    last = stages[-1][0]
    plans = {name: stage_plan(name, tokens, every=every, final=final and name == last,
                              metric_source=last, optimizer=optimizer, lr_schedule=lr_schedule)
             for name, tokens in stages}
    policy = policy or builtin("stage_policy", "fixed")
    return TrialPlan(stages=plans, order=tuple(order or plans), policy=policy,
                     metric=f"eval.{last}.loss", mode="min", seed=seed)


def toy_setup(seed: int = 0, data: Mapping[str, ToyTask] | None = None) -> TrialSetup:
    """The `TrialSetup` a toy trainer starts from: `data` (default: `TOY_DATA`), the
    built-in `default` init, `seed`. `Toy().start(toy_setup())` is a toy run of the toy
    curriculum, to drive by hand or give `TrainerContract` as its `setup`."""
    return TrialSetup(seed=seed, data=dict(data or TOY_DATA), init=builtin("init", "default"))


def run_toy_trial(policy: StagePolicy | None = None, *, optimizer: Optimizer | None = None,
                  lr_schedule: LRSchedule | None = None, seed: int = 0,
                  order: Sequence[str] | None = None, trainer: Toy | None = None,
                  report: Report | None = None) -> TrialResult:
    """One whole trial of the toy curriculum (`TOY_STAGES`: general, prereq, then target,
    final; the study metric `eval.target.loss`) on the toy trainer — a FAKE with analytic
    curves, a few hundred steps, milliseconds — under `policy` (default: `fixed`), with
    `optimizer` (default: AdamW at 3e-3) and `lr_schedule` (default: constant), evaluated
    every quarter of a stage; `order` reorders the stages, `trainer` sets the toy's fields
    (e.g. `Toy(noise=0.0)`), `report(eval)` is called after every eval.

    Returns an `autostage.trial.TrialResult`: `status` (a `TrialStatus`: COMPLETED,
    STOPPED — the policy's Stop — or FAILED), `reason`, `metric`, `evals` (every `Eval`:
    stage, visit, tokens, lr, metrics, value, decision), `tokens` and `value` (the metric at
    the last eval). It holds no plan: the stages run are `[e.stage for e in result.evals]`,
    and `trial_plan(policy, TOY_STAGES, ...)` builds the plan itself.

        result = run_toy_trial(MyPolicy(), seed=1)
        assert result.status == TrialStatus.COMPLETED and result.evals[-1].stage == "target"
    """
    plan = trial_plan(policy, TOY_STAGES, seed=seed, order=order, optimizer=optimizer,
                      lr_schedule=lr_schedule)
    run = (trainer or Toy()).start(toy_setup(seed))
    return run_trial(plan, run, report)


Curve = Callable[[str, Mapping[str, int]], float]


class CurveRun:
    """A trainer run (the `TrainerRun` protocol) whose eval loss is scripted, to drive
    with `run_trial(trial_plan(...), CurveRun(curve))`: `curve(source, trained)` gives the
    loss (or `metric`) of data source `source` when `trained` maps each stage name to the
    tokens trained on it so far. `trained` is the run's "weights": snapshot/restore/save/
    load carry it, so a Rewind or a resume is visible in the losses that follow. Records
    every stage it begins in `stages` (names, in order) and the LR at the start of every
    segment in `lrs` ((stage, lr) pairs).

        run = CurveRun(lambda source, trained: 3.0 - trained.get(source, 0) / 1000)
        run_trial(trial_plan(builtin("stage_policy", "fixed"), [("a", 1000)]), run)
        assert run.stages == ["a"] and run.trained == {"a": 1000}
    """

    def __init__(self, curve: Curve, metric: str = "loss") -> None:
        self.curve, self.metric = curve, metric
        self.trained: dict[str, int] = {}
        self.stage: StageVisit | None = None
        self.stages: list[str] = []
        self.lrs: list[tuple[str, float]] = []

    def begin_stage(self, stage: StageVisit) -> None:
        self.stage = stage
        self.stages.append(stage.name)

    def continue_stage(self, stage: StageVisit) -> None:
        """A visit continued part-way from a checkpoint: `stages` shows it as `name+`."""
        self.stage = stage
        self.stages.append(f"{stage.name}+")

    def train(self, tokens: int, lr: Callable[[int], float]) -> TrainResult:
        name = self.stage.name
        self.lrs.append((name, lr(0)))
        self.trained[name] = self.trained.get(name, 0) + tokens
        return TrainResult(tokens=tokens, metrics={"loss": self.curve(name, dict(self.trained))})

    def evaluate(self, sources: Sequence[str]) -> dict[str, dict[str, float]]:
        return {s: {self.metric: self.curve(s, dict(self.trained))} for s in sources}

    def snapshot(self) -> Any:
        return dict(self.trained)

    def restore(self, snapshot: Any) -> None:
        self.trained = dict(snapshot)

    def save(self, directory: str) -> None:
        (Path(directory) / "curve.json").write_text(json.dumps(self.trained))

    def load(self, directory: str) -> None:
        self.trained = json.loads((Path(directory) / "curve.json").read_text())


def tiny_model(n_layer: int = 2, width: int = 16, vocab: int = 32) -> Any:
    """A tiny GPT-like `torch.nn.Module` (no forward: for inits) with GPT-2's module names
    — `wte`, `h.<i>.attn.c_attn`, `h.<i>.attn.c_proj`, `h.<i>.mlp.c_fc`, `h.<i>.mlp.c_proj`,
    layer norms — and an output head tied to the token embedding (`InitContract`'s default
    `model_factory`).

        model = tiny_model()
        MyInit().apply(model)
        assert model.lm_head.weight is model.wte.weight
    """
    from torch import nn

    def block() -> nn.Module:
        b = nn.Module()
        b.ln_1, b.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        b.attn, b.mlp = nn.Module(), nn.Module()
        b.attn.c_attn, b.attn.c_proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        b.mlp.c_fc, b.mlp.c_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
        return b

    model = nn.Module()
    model.wte = nn.Embedding(vocab, width)
    model.h = nn.ModuleList(block() for _ in range(n_layer))
    model.ln_f = nn.LayerNorm(width)
    model.lm_head = nn.Linear(width, vocab, bias=False)
    model.lm_head.weight = model.wte.weight
    return model
