"""autostage against what Ray Tune and Optuna users would write themselves (a benchmark, not a
test).

The task, the model, the data, the stage lengths, the paired seeds and the compute budget are
search_efficiency.py's (read from its STUDY and constants, not copied): a tiny GPT-2 trained
general (CPython's docs) > prereq (easy sums in the target's format) > target (4-digit
reversed addition, with the prereq mixed in at a searched weight); every search gets the same
compute — training tokens plus a third of every eval token — and is stopped once it has spent
it; its best is the best final target loss of a trial that ran its plan to the end within the
budget (`best`), and how much compute it had spent when that best first reached TARGET_LOSS
(`tokens_to_target`).

Each peer is written as a user of the tool would write it from the tool's own docs: a function
trainable (Ray) or objective (Optuna) around a plain torch loop — AdamW, a fresh optimizer and
a cosine schedule per stage, gradient clipping, as autostage's trainer trains the same stage
plan. Only the search differs: the loop REUSES autostage's plugins for the model (the
`transformers` trainer's GPT-2 construction and init), the data (the `pydoc`/`arith` datasets,
their token streams and `lm_batch`; batch k drawn as the trainer draws it) and the eval
(`lm_eval.evaluate`, the same held-out sample), and uses none of autostage's search machinery
(no study, trial loop, stage policy or scheduler). One difference: a peer builds the data once
per process from the search's seed (as a Ray or Optuna user loads a dataset once), while an
autostage trial draws its 200k training problems from its own seed; init and batch order
follow each trial's seed in both.
Same search space for every peer: the AdamW peak LR (search_efficiency's range, log) and the
weight of prereq mixed into the target stage (0-1 beside the target's 1, M2-M4's range), on
the fixed order general > prereq > target (the one order M1 uses).

  ray-pbt          ray.tune.schedulers.PopulationBasedTraining (docs: "PBT function API",
                   examples/pbt_convnet_function_example.py): LR and mixture weight perturbed;
                   time_attr = training tokens, perturbation_interval = the target stage's
                   eval interval; checkpoints through tune.report(..., checkpoint=...) /
                   tune.get_checkpoint(); population = the most full plans the budget holds,
                   time-multiplexed two at a time (PBT pauses members to share the 2 CPUs)
  ray-pb2          the same with ray.tune.schedulers.pb2.PB2 (needs scikit-learn)
  ray-optuna-asha  Tuner + OptunaSearch (TPE, its defaults, a define-by-run space) +
                   ASHAScheduler (defaults; max_t = evals per trial), 2 concurrent trials
  optuna-pruner    optuna.create_study(TPESampler, HyperbandPruner).optimize(n_jobs=2):
                   trial.report at each eval, trial.should_prune() — Optuna's docs recommend
                   TPE + Hyperband
  autostage-M4     search_efficiency's M4 as it ships (its run_method)

Budget accounting, the same ledger for every method: each report charges the tokens trained
since the previous report of that run (or since the checkpoint it resumed from) plus its evals
at a third. A PBT clone resumes from its donor's checkpoint: it is charged only what it trains
after that, never the donor's tokens again, and it stops at the plan's end like any member,
so cloning buys no extra budget. autostage-M4 is replayed through the same ledger from its
run directory (every eval in the order the driver received it; the evals autostage holds
inside a prefix stage placed between their neighbours by their tokens), so a trial's compute
is counted as it is spent, not when the trial ends; its own run_method numbers are kept
beside (`m4_own`).

  python benchmarks/peers.py --smoke    # half-size stages, 2 seeds, half budget (7-9 min)
  python benchmarks/peers.py --full     # 5 seeds, search_efficiency's budget (~1.5 h)
  python benchmarks/peers.py --full --methods ray-pbt,autostage-M4 --merge   # a part

Also measured in the same run: a plain per-trial loop against autostage's trainer and trial
loop in tokens/s (one fixed config trained both ways for equal tokens). Writes
results/peers-<mode>.json, .md and .html (best-so-far vs compute, Plotly).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _efficiency() -> Any:
    """benchmarks/search_efficiency.py, whose task, budget and statistics this reuses."""
    name = "search_efficiency"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_SE = _efficiency()
TARGET_LOSS: float = _SE.TARGET_LOSS
EVAL_COST: float = _SE.EVAL_COST
SIZES: dict[str, dict[str, int]] = _SE.SIZES
RESULTS: Path = _SE.RESULTS
paired_ci = _SE.paired_ci
_STUDY = tomllib.loads(_SE.STUDY)
MODEL = {k: v for k, v in _STUDY["model"].items() if k != "trainer"}
DATA = {name: dict(table) for name, table in _STUDY["data"].items()}
LR = (_STUDY["search"]["optimizer"]["adamw"]["lr"]["low"],
      _STUDY["search"]["optimizer"]["adamw"]["lr"]["high"])
SCHEDULE = dict(_STUDY["search"]["lr_schedule"]["cosine"])  # warmup 0.05, min_ratio 0.1
ADAMW = {"betas": (0.9, 0.98), "eps": 1e-8, "weight_decay": 0.01}  # autostage's adamw defaults
MIX = (0.0, 1.0)  # prereq's weight in the target stage beside target's 1.0 (M2-M4's range)
PLAN = ("general", "prereq", "target")
PARALLEL = 2  # search_efficiency's study.parallel, on 2 CPUs
METRIC = "target_loss"
PEERS = ("ray-pbt", "ray-pb2", "ray-optuna-asha", "optuna-pruner")
METHODS = (*PEERS, "autostage-M4")
RUN_ORDER = ("autostage-M4", "ray-pbt", "ray-optuna-asha", "optuna-pruner", "ray-pb2")
SEEDS = {"smoke": [0, 1], "full": [0, 1, 2, 3, 4]}
BUDGETS = {"smoke": 900_000, "full": 6_400_000}  # search_efficiency's --smoke / --full


# --- the task ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """The stage plan's lengths and the eval interval (search_efficiency's target stage eval,
    an eighth of it). Evals fall every `every` tokens of a stage and at its end."""

    sizes: Mapping[str, int]
    every: int

    @property
    def points(self) -> tuple[tuple[int, int], ...]:
        """(stage index, tokens into that stage) of every eval, in order."""
        out = []
        for i, name in enumerate(PLAN):
            size = self.sizes[name]
            out += [(i, t) for t in range(self.every, size, self.every)] + [(i, size)]
        return tuple(out)

    @property
    def total(self) -> int:
        return sum(self.sizes[s] for s in PLAN)

    @property
    def eval_compute(self) -> float:
        """One eval of one data source: a forward pass over the trainer's held-out sample."""
        return EVAL_COST * MODEL["eval_batches"] * MODEL["batch_size"] * MODEL["context"]

    @property
    def member_compute(self) -> float:
        """A whole plan: its tokens and one target eval at every point (the peers' evals)."""
        return self.total + len(self.points) * self.eval_compute


def task_for(mode: str) -> Task:
    return Task(dict(SIZES[mode]), SIZES[mode]["target"] // 8)


def population(task: Task, budget: float) -> int:
    """PBT's population: as many whole plans as the budget holds (at least 2), so the
    population can finish and every member's final eval falls within the budget."""
    return max(2, int(budget // task.member_compute))


def segment_charges(restored_at: int, positions: Sequence[int]) -> list[int]:
    """The training tokens each report of one run of a trainable is charged: what it trained
    since its previous report, or since the checkpoint it started from (0 when fresh; its own
    when PBT resumes it; a donor's when PBT clones it). Never the tokens that brought the
    checkpoint there: the donor has paid for those."""
    return [b - a for a, b in itertools.pairwise([restored_at, *positions])]


# --- the budget ledger (pure) -------------------------------------------------------------------

@dataclass
class Ledger:
    """A search's compute, charged report by report in the order they arrive, and its
    best-so-far curve: one point (compute spent, best final target loss) per trial that ran
    its plan to the end."""

    budget: float
    eval_compute: float  # one eval of one source, in compute
    spent: float = 0.0
    trained: int = 0
    evals: int = 0
    busy_s: float = 0.0  # seconds the trials' own code ran (setup, training, evals)
    trials: set = field(default_factory=set)
    completed: set = field(default_factory=set)  # the trials that ran their plan to the end
    clones: int = 0
    curve: list = field(default_factory=list)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def charge(self, trial: Any, trained: int, evals: int, busy_s: float = 0.0,
               cloned: bool = False) -> None:
        with self._lock:
            self.trials.add(trial)
            self.trained += trained
            self.evals += evals
            self.busy_s += busy_s
            self.clones += cloned
            self.spent += trained + evals * self.eval_compute

    def complete(self, trial: Any, value: float) -> None:
        """A trial ran its plan to the end with this final target loss (a PBT member may end
        twice: cloned at its last report, it trains on from the donor's checkpoint)."""
        with self._lock:
            self.completed.add(trial)
            best = min([value, *(b for _, b in self.curve[-1:])])
            self.curve.append((round(self.spent), best))

    def __getstate__(self) -> dict:  # Ray pickles the stopper that holds it: not the lock
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    @property
    def spent_out(self) -> bool:
        return self.spent >= self.budget

    def summary(self) -> dict[str, Any]:
        """best (within the budget), tokens_to_target, and the counts, in search_efficiency's
        row shape."""
        within = [(t, b) for t, b in self.curve if t <= self.budget]
        best = min((b for _, b in within), default=math.inf)
        reached = next((t for t, b in within if b <= TARGET_LOSS), None)
        return {"best": best, "best_overall": min((b for _, b in self.curve), default=math.inf),
                "tokens": self.trained, "compute": round(self.spent),
                "tokens_to_target": reached, "trials": len(self.trials),
                "completed": len(self.completed),
                "pruned": len(self.trials - self.completed),
                "clones": self.clones, "busy_s": self.busy_s, "curve": self.curve}


# --- the plain torch loop, on autostage's model and data code ------------------------------------

_BUILD = threading.Lock()  # torch's global RNG seeds each model's init: one build at a time


@lru_cache(maxsize=1)
def shared_run(seed: int) -> Any:
    """The transformers trainer plugin started once per process and search seed: its
    tokenizer, every source's token streams and its model construction, all reused; its
    training loop is not. (A Ray or Optuna user loads the data once per worker, too.)"""
    from autostage.components import TrialSetup
    from autostage_plugins.datasets import Arith, Pydoc
    from autostage_plugins.inits import Default
    from autostage_plugins.transformers_trainer import Transformers

    kinds = {"pydoc": Pydoc, "arith": Arith}
    data = {name: kinds[t["dataset"]](**{k: v for k, v in t.items() if k != "dataset"})
            for name, t in DATA.items()}
    setup = TrialSetup(seed=seed, data=data, init=Default(), threads=1,
                       objectives=dict.fromkeys(data, "causal_lm"),
                       trains={"causal_lm": tuple(data)})
    return Transformers(**MODEL).start(setup)


class Member:
    """One model trained through the plan by a plain torch loop: AdamW (autostage's adamw
    defaults), a fresh optimizer and a cosine schedule per stage, clipping at 1.0 — the recipe
    autostage's trainer follows for the same plan. Batch k of a stage is drawn as the
    trainer draws it, from (seed, stage, k)."""

    def __init__(self, shared: Any, seed: int, task: Task) -> None:
        import torch

        self.shared, self.seed, self.task = shared, seed, task
        with _BUILD:
            torch.manual_seed(seed)
            shared.models.clear()
            self.model = shared.model("causal_lm")  # the trainer plugin's GPT-2, its init
            shared.models.clear()
        self.point = 0  # the next eval point
        self.done = 0  # tokens into the current stage
        self.position = 0  # tokens along the plan
        self.optimizer: Any = None

    @property
    def finished(self) -> bool:
        return self.point >= len(self.task.points)

    def train_segment(self, lr: float, mix: float) -> int:
        """Train to the next eval point at peak LR `lr`; return the tokens trained."""
        import torch

        from autostage_plugins.lm_data import counted_tokens
        from autostage_plugins.lr_schedules import Cosine

        stage_index, until = self.task.points[self.point]
        stage = PLAN[stage_index]
        size = self.task.sizes[stage]
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, **ADAMW)
        schedule, trained = Cosine(**SCHEDULE), 0
        self.model.train()
        while self.done < until:
            batch = self._batch(stage, self.done // MODEL["batch_size"] // MODEL["context"], mix)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * schedule.multiplier(self.done, size)
            loss = self.model(**batch).loss
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), MODEL.get("max_grad_norm",
                                                                              1.0))
            self.optimizer.step()
            n = counted_tokens(batch)
            self.done += n
            trained += n
        self.position += trained
        self.point += 1
        if until == size:  # the stage ends: the next one starts with a fresh optimizer
            self.done, self.optimizer = 0, None
        return trained

    def _batch(self, stage: str, k: int, mix: float) -> dict:
        from autostage_plugins.lm_data import lm_batch

        rng = random.Random(f"{self.seed}-{stage}-0-{k}")  # as the trainer's _Data.train_batch
        weights = {"target": 1 / (1 + mix), "prereq": mix / (1 + mix)} \
            if stage == "target" else {stage: 1.0}
        picks = rng.choices(list(weights), weights=list(weights.values()),
                            k=MODEL["batch_size"])
        streams = self.shared.data.streams
        return lm_batch([streams[s]["train"].window(rng, MODEL["context"]) for s in picks])

    def evaluate(self) -> float:
        """The target loss on the trainer's own held-out sample (lm_eval.evaluate)."""
        from autostage_plugins.lm_eval import evaluate

        run = self.shared
        return evaluate(self.model, "causal_lm", run.data, "target", run.cfg, run.tok,
                        run.device)["loss"]

    def state(self) -> dict:
        return {"model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "point": self.point, "done": self.done, "position": self.position}

    def load(self, state: dict, lr: float) -> None:
        import torch

        self.model.load_state_dict(state["model"])
        self.point, self.done, self.position = state["point"], state["done"], state["position"]
        self.optimizer = None
        if state["optimizer"] is not None:
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, **ADAMW)
            self.optimizer.load_state_dict(state["optimizer"])


# --- Ray Tune peers -----------------------------------------------------------------------------

def ray_trainable(config: dict) -> None:
    """The function trainable, as Ray's PBT function example writes it: resume from
    tune.get_checkpoint() if there is one, report the metric with a checkpoint at every
    eval."""
    import os

    import torch
    from ray import tune

    start = time.perf_counter()
    context = tune.get_context()
    trial_id = context.get_trial_id()
    task = Task(config["task"]["sizes"], config["task"]["every"])
    member_seed = config["seed"] * 1000 + config.get("member", _trial_index(trial_id))
    member = Member(shared_run(config["seed"]), member_seed, task)
    cloned = False
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(os.path.join(directory, "member.pt"), weights_only=True)
        member.load(state, config["lr"])
        cloned = state["owner"] != trial_id  # PBT's exploit: a donor's weights, our config
    last = member.position  # 0, or where the checkpoint (ours or a donor's) left the plan
    while not member.finished:
        member.train_segment(config["lr"], config["mix"])
        [trained] = segment_charges(last, [member.position])
        last = member.position
        loss = member.evaluate()
        with tempfile.TemporaryDirectory() as directory:
            torch.save({**member.state(), "owner": trial_id},
                       os.path.join(directory, "member.pt"))
            metrics = {METRIC: loss, "tokens": member.position, "trained": trained,
                       "evals": 1, "finished": member.finished, "cloned": cloned,
                       "busy_s": time.perf_counter() - start}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        start, cloned = time.perf_counter(), False


def _trial_index(trial_id: str) -> int:
    """Ray's basic variant generator numbers its trials `<prefix>_00003`."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _budget_stopper(book: Ledger) -> Any:
    from ray import tune

    class BudgetStopper(tune.Stopper):
        """Charges every report to the ledger; ends the whole search once it is spent."""

        def __call__(self, trial_id: str, result: dict) -> bool:
            if result.get("done"):  # Ray repeats a trial's last result as it returns
                return False
            book.charge(trial_id, int(result["trained"]), int(result["evals"]),
                        float(result["busy_s"]), bool(result["cloned"]))
            if result["finished"]:
                book.complete(trial_id, float(result[METRIC]))
            return False

        def stop_all(self) -> bool:
            return book.spent_out

    return BudgetStopper()


def ray_setup(method: str, task: Task, seed: int, budget: float) -> dict[str, Any]:
    """The scheduler, search algorithm, param space and sample count of a Ray peer."""
    import numpy as np
    from ray import tune

    random.seed(seed)  # PBT's explore/exploit draws from `random` and numpy (Ray's FAQ on
    np.random.seed(seed)  # reproducibility: seed both in the driver)
    constants = {"seed": seed, "task": {"sizes": dict(task.sizes), "every": task.every}}
    space = {"lr": tune.loguniform(*LR), "mix": tune.uniform(*MIX)}
    if method in ("ray-pbt", "ray-pb2"):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        if method == "ray-pbt":
            from ray.tune.schedulers import PopulationBasedTraining

            scheduler = PopulationBasedTraining(
                time_attr="tokens", perturbation_interval=task.every,
                hyperparam_mutations=space)
        else:
            from ray.tune.schedulers.pb2 import PB2

            scheduler = PB2(time_attr="tokens", perturbation_interval=task.every,
                            hyperparam_bounds={"lr": list(LR), "mix": list(MIX)})
        return {"scheduler": scheduler, "search_alg": BasicVariantGenerator(random_state=seed),
                "param_space": {**constants, **space}, "num_samples": population(task, budget),
                # every checkpoint kept: with num_to_keep, a clone's checkpoint manager deletes
                # its donor's files and Ray logs FileNotFoundError (ray-project/ray#5549, #8441)
                "keep": None}
    if method == "ray-optuna-asha":
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        return {"scheduler": ASHAScheduler(max_t=len(task.points)),
                "search_alg": OptunaSearch(space=partial(define_by_run, constants),
                                           metric=METRIC, mode="min", seed=seed),
                "param_space": {}, "num_samples": 10_000, "keep": 1}
    raise ValueError(f"no Ray peer named {method!r}; Ray peers: ray-pbt, ray-pb2, "
                     "ray-optuna-asha")


def define_by_run(constants: dict, trial: Any) -> dict:
    """OptunaSearch's space (Ray's define-by-run example): the constants it returns join the
    config, here the trial's number, which seeds its init and data order."""
    trial.suggest_float("lr", *LR, log=True)
    trial.suggest_float("mix", *MIX)
    return {**constants, "member": trial.number}


def run_ray(method: str, task: Task, seed: int, budget: float, workdir: Path) -> dict:
    """One Ray Tune search on the Ray this process started."""
    from ray import tune

    book = Ledger(budget, task.eval_compute)
    setup = ray_setup(method, task, seed, budget)
    tuner = tune.Tuner(
        ray_trainable, param_space=setup["param_space"],
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="min", scheduler=setup["scheduler"],
            search_alg=setup["search_alg"], num_samples=setup["num_samples"],
            max_concurrent_trials=PARALLEL, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"{method}-{seed}", storage_path=str(workdir), stop=_budget_stopper(book),
            verbose=0, checkpoint_config=tune.CheckpointConfig(num_to_keep=setup["keep"])))
    start = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.errors:
        raise RuntimeError(f"{method} seed {seed}: {len(grid.errors)} trials failed: "
                           f"{grid.errors[0]}")
    extra = {"population": setup["num_samples"]} if "pb" in method else {}
    return {**book.summary(), "wall_s": wall, **extra}


# --- plain Optuna -------------------------------------------------------------------------------

def run_optuna(task: Task, seed: int, budget: float) -> dict:
    """What Optuna's docs show: a define-by-run objective reporting the target loss at every
    eval, TPE with the HyperbandPruner, two trials at a time (n_jobs), in this process."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    book = Ledger(budget, task.eval_compute)
    shared = shared_run(seed)
    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.HyperbandPruner())

    def objective(trial: optuna.Trial) -> float:
        start = time.perf_counter()
        lr = trial.suggest_float("lr", *LR, log=True)
        mix = trial.suggest_float("mix", *MIX)
        member = Member(shared, seed * 1000 + trial.number, task)
        while True:
            if book.spent_out:  # another trial spent the budget: end this one unranked
                study.stop()
                raise optuna.TrialPruned("the budget is spent")
            trained = member.train_segment(lr, mix)
            loss = member.evaluate()
            book.charge(trial.number, trained, 1, time.perf_counter() - start)
            start = time.perf_counter()
            if member.finished:
                book.complete(trial.number, loss)
                return loss
            trial.report(loss, member.point)
            if trial.should_prune():
                raise optuna.TrialPruned()

    start = time.perf_counter()
    study.optimize(objective, n_trials=10_000, n_jobs=PARALLEL)
    return {**book.summary(), "wall_s": time.perf_counter() - start}


# --- autostage ----------------------------------------------------------------------------------

def run_autostage(mode: str, task: Task, seed: int, budget: float, workdir: Path) -> dict:
    """search_efficiency's M4 through its own run_method, then replayed through the ledger."""
    from autostage.keys import parse_metric
    from autostage.rundir import RunDir

    own = _SE.run_method("M4", seed, int(budget), workdir, mode)
    book = Ledger(budget, task.eval_compute)
    records = RunDir(workdir / f"M4-{seed}").trials()
    evals = []
    for r in records:
        times = eval_times(r.started, r.ended, [(e.time, e.eval.tokens) for e in r.evals])
        evals += [(t, r.number, i, e) for i, (t, e) in enumerate(zip(times, r.evals,
                                                                     strict=True))]
    last = {r.number: len(r.evals) - 1 for r in records}
    value = {r.number: r.ranked_value for r in records}
    seen: dict[int, int] = {}
    for _, number, i, ev in sorted(evals, key=lambda x: x[:3]):
        sources = sum(1 for k in ev.eval.metrics
                      if (key := parse_metric(k)) and key.source and key.name == "loss")
        book.charge(number, ev.eval.tokens - seen.get(number, 0), sources)
        seen[number] = ev.eval.tokens
        if i == last[number] and value[number] is not None:
            book.complete(number, value[number])
    book.busy_s = sum((r.ended - r.started) for r in records if r.ended and r.started)
    keep = ("best", "tokens_to_target", "compute", "trials", "pruned", "curve")
    return {**book.summary(), "pruned": own["pruned"], "wall_s": own["wall_s"],
            "best_config": own["best_config"], "best_plan": own["best_plan"],
            "m4_own": {k: own[k] for k in keep}}


def eval_times(started: float | None, ended: float | None,
               evals: Sequence[tuple[float | None, int]]) -> list[float]:
    """When each of a trial's evals (time received or None, trial tokens) happened. autostage
    holds the evals inside a prefix stage and sends them with the next report, so they carry
    no time of their own: place them between their timed neighbours (the trial's start and
    end at the edges) in proportion to their tokens."""
    anchors = [(started, 0)] + [(t, k) for t, k in evals if t is not None] + \
        [(ended, evals[-1][1] if evals else 0)]
    anchors = [(t, k) for t, k in anchors if t is not None]
    if not anchors:
        return [math.inf] * len(evals)
    out = []
    for t, tokens in evals:
        if t is None:
            before = max((a for a in anchors if a[1] <= tokens), key=lambda a: a[1],
                         default=anchors[0])
            after = min((a for a in anchors if a[1] >= tokens), key=lambda a: a[1],
                        default=anchors[-1])
            span = after[1] - before[1]
            t = before[0] + (after[0] - before[0]) * ((tokens - before[1]) / span if span
                                                      else 0.0)
        out.append(t)
    return out


# --- one method, in a process of its own -------------------------------------------------------

def run_one(method: str, mode: str, seeds: list[int], budget: float) -> list[dict]:
    """Every seed of one method (this process: its peak RSS is the method's driver's)."""
    import ray

    task = task_for(mode)
    rows = []
    start_ray()
    try:
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                if method == "autostage-M4":
                    row = run_autostage(mode, task, seed, budget, Path(tmp))
                elif method == "optuna-pruner":
                    row = run_optuna(task, seed, budget)
                else:
                    row = run_ray(method, task, seed, budget, Path(tmp))
            row = {"method": method, "seed": seed, **row}
            row["overhead_s_per_trial"] = (PARALLEL * row["wall_s"] - row["busy_s"]) / \
                max(1, row["trials"])
            row["peak_rss_mb"] = peak_rss_mb()
            print(f"{method:>16} seed {seed}: best {row['best']:.3f}, to target "
                  f"{row['tokens_to_target']}, {row['compute']:,} compute, {row['trials']} "
                  f"trials ({row['pruned']} pruned, {row['clones']} clones), "
                  f"{row['wall_s']:.0f} s", flush=True)
            rows.append(row)
    finally:
        ray.shutdown()
    return rows


def peak_rss_mb() -> float:
    """This process's peak resident set since it started: VmHWM of /proc/self/status (Linux).
    Not getrusage's ru_maxrss, which Linux carries across fork + exec: a child started by a
    parent that had grown to 0.8 GB reports 0.8 GB from its first line."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_ray() -> None:
    """A Ray of this process's own, never one that is already running here (`address=
    "local"`), with its own temp dir (a new local Ray writes its address there, where a
    plain `ray.init()` elsewhere on this machine would otherwise find and join it)."""
    import os

    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 is quiet with the old one
    ray.init(address="local", num_cpus=PARALLEL, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", _temp_dir="/tmp/ray-peers")


def run_method_process(method: str, mode: str, seeds: list[int], budget: float) -> list[dict]:
    """run_one in a fresh Python process: one Ray and one peak-RSS reading per method. It
    imports this file as the module `peers` (on PYTHONPATH, which Ray's workers inherit), so
    Ray ships the trainable by reference."""
    import os

    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, "-c", "import peers; peers.child()", method, mode,
                        ",".join(map(str, seeds)), str(budget), out.name],
                       check=True, env={**os.environ, "PYTHONPATH": path})
        return json.loads(Path(out.name).read_text())


def child() -> None:
    """The child process's entry: METHOD MODE SEEDS BUDGET OUT."""
    method, mode, seeds, budget, out = sys.argv[1:6]
    rows = run_one(method, mode, [int(s) for s in seeds.split(",")], float(budget))
    Path(out).write_text(json.dumps(rows))


# --- the plain loop vs autostage's trainer, tokens per second ----------------------------------

THROUGHPUT = {"smoke": ({s: t // 4 for s, t in SIZES["smoke"].items()}, 1),
              "full": (SIZES["smoke"], 5)}  # stage sizes, rounds


def throughput_check(mode: str, seed: int = 0) -> dict:
    """One fixed config (the full plan, AdamW 3e-3, prereq mixed in 1:2) trained both ways for
    the same tokens, one thread, each round all four back to back. `train`: training only —
    autostage's trainer (`begin_stage` + `train`, a stage at a time) vs the peers' Member.
    `trial`: a whole trial with its own evals — autostage's trial loop (two sources at each of
    its evals) vs the peers' loop (the target at each of theirs). Timed from a built
    trainer / data on, after one untimed round; the final target loss of each, untimed, shows
    they trained the same."""
    from autostage import load_registry, load_study, prepare_trial, sample_config

    sizes, rounds = THROUGHPUT[mode]
    task, registry = Task(sizes, sizes["target"] // 8), load_registry()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.toml"
        path.write_text(_SE.STUDY)
        study = load_study(path, registry, [
            *(f"stage.{s}.tokens={t}" for s, t in sizes.items()),
            f"stage.target.eval_every={task.every}",
            "search.plan={order = 'general>prereq>target'}",
            "stage.target.data={target = 1.0, prereq = 0.5}",
            "search.optimizer={adamw = {lr = 3e-3}}"])
    params = sample_config(study, registry, seed)
    shared = shared_run(seed)

    def ours_train() -> tuple[int, float, float]:
        trial = prepare_trial(study, registry, params, seed, threads=1)
        run, tokens = trial.trainer, 0
        start = time.perf_counter()
        for name in trial.plan.order:
            stage = trial.plan.stages[name]
            run.begin_stage(stage)
            tokens += run.train(stage.tokens, partial(_stage_lr, stage)).tokens
        seconds = time.perf_counter() - start
        return tokens, seconds, run.evaluate(["target"])["target"]["loss"]

    def ours_trial() -> tuple[int, float, float]:
        trial = prepare_trial(study, registry, params, seed, threads=1)
        start = time.perf_counter()
        result = trial.run()
        return result.tokens, time.perf_counter() - start, result.value

    def plain(evaluate: bool) -> tuple[int, float, float]:
        member = Member(shared, seed, task)
        start, tokens = time.perf_counter(), 0
        while not member.finished:
            tokens += member.train_segment(3e-3, 0.5)
            if evaluate:
                member.evaluate()
        seconds = time.perf_counter() - start
        return tokens, seconds, member.evaluate()

    runs = {"autostage train": ours_train, "plain train": lambda: plain(False),
            "autostage trial": ours_trial, "plain trial": lambda: plain(True)}
    for fn in runs.values():  # warm up: a process's first torch steps run slower
        fn()
    out: dict[str, list[dict]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            tokens, seconds, loss = fn()
            out[name].append({"tokens": tokens, "s": seconds, "tokens_per_s": tokens / seconds,
                              "loss": loss})
    ratio = {kind: statistics.median(
        p["tokens_per_s"] / o["tokens_per_s"]
        for p, o in zip(out[f"plain {kind}"], out[f"autostage {kind}"], strict=True))
        for kind in ("train", "trial")}
    return {"sizes": sizes, "rounds": out,
            "tokens_per_s": {k: statistics.median(r["tokens_per_s"] for r in v)
                             for k, v in out.items()},
            "ratio_plain_over_autostage": ratio}


def _stage_lr(stage: Any, done: int) -> float:
    """The LR the trial loop gives a stage's trainer after `done` of its tokens."""
    return stage.optimizer.lr * stage.lr_schedule.multiplier(done, stage.tokens)


# --- the report ----------------------------------------------------------------------------------

def reached(row: dict, budget: float) -> float:
    """Compute until the target loss; a search that never reached it counts the budget."""
    return budget if row["tokens_to_target"] is None else row["tokens_to_target"]


def best_peer(by: Mapping[str, list[dict]], measure: Callable[[dict], float]) -> str | None:
    """The peer with the lowest mean `measure` over the seeds."""
    peers = [m for m in by if m in PEERS and by[m]]
    return min(peers, key=lambda m: statistics.fmean(map(measure, by[m])), default=None)


def versus(by: Mapping[str, list[dict]], measure: Callable[[dict], float], ref: str | None,
           m: str, fmt: str) -> str:
    if ref is None or m == ref:
        return "—"
    mine, base = _paired(by[m], by[ref])
    values, refs = [measure(r) for r in mine], [measure(r) for r in base]
    if not values:
        return "n/a (no common seeds)"
    if not all(map(math.isfinite, [*values, *refs])):
        return "n/a (a search ended no trial within the budget)"
    d, lo, hi = paired_ci(values, refs)
    return f"{d:+{fmt}} [{lo:+{fmt}}, {hi:+{fmt}}]"


def _paired(a: list[dict], b: list[dict]) -> tuple[list[dict], list[dict]]:
    seeds = sorted({r["seed"] for r in a} & {r["seed"] for r in b})
    pick = lambda rows: [next(r for r in rows if r["seed"] == s) for s in seeds]  # noqa: E731
    return pick(a), pick(b)


def table(rows: list[dict], budget: float, mode: str, extra: Mapping[str, Any]) -> str:
    by = {m: sorted((r for r in rows if r["method"] == m), key=lambda r: r["seed"])
          for m in METHODS if any(r["method"] == m for r in rows)}
    seeds = sorted({r["seed"] for r in rows})
    to_target = lambda r: reached(r, budget)  # noqa: E731
    ref_best, ref_reach = best_peer(by, lambda r: r["best"]), best_peer(by, to_target)
    lines = [f"# autostage vs Ray Tune and Optuna peers ({mode}): {len(seeds)} paired seeds, "
             f"{budget:,.0f} of compute per search", "",
             f"Command: `python benchmarks/peers.py --{mode}`. 2 shared CPU cores: wall times "
             "are noisy (another engineer's tests ran beside it).", "",
             "## Best target loss at the budget (lower is better)", "",
             "Best = the best final target loss of a trial that ran its plan to the end "
             "within the budget (compute = training tokens + a third of every eval token, "
             "charged report by report). Best peer = the peer with the lowest mean.", "",
             f"| method | mean | per seed | vs best peer ({ref_best}): diff [95% CI] | trials "
             "(pruned) | PBT clones | wall s | overhead s/trial | peak driver RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, rs in by.items():
        best = [r["best"] for r in rs]
        lines.append(
            f"| {m} | {statistics.fmean(best):.3f} | {_join(best)} | "
            f"{versus(by, lambda r: r['best'], ref_best, m, '.3f')} | "
            f"{statistics.fmean(r['trials'] for r in rs):.1f} "
            f"({statistics.fmean(r['pruned'] for r in rs):.1f}) | "
            f"{statistics.fmean(r['clones'] for r in rs):.1f} | "
            f"{statistics.fmean(r['wall_s'] for r in rs):.0f} | "
            f"{statistics.fmean(r['overhead_s_per_trial'] for r in rs):.2f} | "
            f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
    lines += ["", f"## Compute until the best-so-far first reaches {TARGET_LOSS} nats (lower "
              "is better)", "",
              "A search that never reached it counts as the whole budget, so differences "
              "involving it understate the gap. Best peer = the peer with the lowest mean.", "",
              f"| method | reached | median | mean | vs best peer ({ref_reach}): diff [95% CI] "
              "| median / best peer's median |", "|---|---|---|---|---|---|"]
    ref_median = statistics.median(map(to_target, by[ref_reach])) if ref_reach else None
    for m, rs in by.items():
        median = statistics.median(map(to_target, rs))
        ratio = f"{median / ref_median:.2f}" if ref_median else "—"
        lines.append(
            f"| {m} | {sum(r['tokens_to_target'] is not None for r in rs)}/{len(rs)} | "
            f"{median:,.0f} | {statistics.fmean(map(to_target, rs)):,.0f} | "
            f"{versus(by, to_target, ref_reach, m, ',.0f')} | {ratio} |")
    lines += ["", *_aim(by, budget, ref_best, ref_reach), "", *_notes(by, extra)]
    return "\n".join(lines)


def _aim(by: Mapping[str, list[dict]], budget: float, ref_best: str | None,
         ref_reach: str | None) -> list[str]:
    """The issue's aim: M4 reaches the target with <= half the best peer's compute and ends at
    least as low."""
    m4 = by.get("autostage-M4")
    if not m4 or ref_best is None or ref_reach is None:
        return ["Aim: not judged (autostage-M4 or every peer missing)."]
    mine = statistics.median(reached(r, budget) for r in m4)
    theirs = statistics.median(reached(r, budget) for r in by[ref_reach])
    lower = statistics.fmean(r["best"] for r in m4) <= \
        statistics.fmean(r["best"] for r in by[ref_best])
    half = mine <= theirs / 2
    return [f"Aim (compute to target ≤ ½ the best peer's, and ends at least as low): "
            f"compute {mine:,.0f} vs {theirs:,.0f} ({ref_reach}) → "
            f"{'met' if half else 'not met'}; mean best loss "
            f"{'at least as low as' if lower else 'higher than'} {ref_best} → "
            f"{'met' if lower else 'not met'}."]


def _notes(by: Mapping[str, list[dict]], extra: Mapping[str, Any]) -> list[str]:
    out = []
    if (t := extra.get("throughput")):
        tokens = sum(t["sizes"].values())
        out += ["## A plain per-trial loop vs autostage's trainer (one fixed config, "
                f"{tokens:,} tokens each way, one thread)", "",
                "| way | tokens/s (median) | tokens/s per round | final target loss per round |",
                "|---|---|---|---|"]
        out += [f"| {way} | {t['tokens_per_s'][way]:,.0f} | "
                f"{_join((r['tokens_per_s'] for r in rounds), ',.0f')} | "
                f"{_join(r['loss'] for r in rounds)} |" for way, rounds in t["rounds"].items()]
        ratio = t["ratio_plain_over_autostage"]
        out += ["", f"Ratio plain / autostage in tokens/s: training {ratio['train']:.3f}x, "
                f"whole trial {ratio['trial']:.3f}x (medians of the per-round ratios, "
                f"{len(t['rounds']['plain train'])} interleaved rounds after a warm-up one). "
                "`train`: the training loops alone; `trial`: with each one's evals "
                "(autostage evaluates two sources at 4 evals per prefix stage and 8 in the "
                "target, the plain loop the target at the peers' 11)."
                + (f" Measured by `{t['command']}`." if "command" in t else ""), ""]
    if (m4 := by.get("autostage-M4")) and all("m4_own" in r for r in m4):
        own = [r["m4_own"] for r in m4]
        out += ["autostage-M4 by search_efficiency's own run_method (a trial's compute "
                f"counted when it ends): best per seed {_join(o['best'] for o in own)}; "
                f"compute to target {', '.join(str(o['tokens_to_target']) for o in own)}.", ""]
    out += ["Overhead s/trial = (2 × wall − seconds inside the trials' own code) / trials: "
            "the slot time the search machinery (scheduling, checkpoints, PBT's pause and "
            "restore, actor starts) took per trial. For autostage-M4 the trials' time is its "
            "records' start-to-end, seen by the driver. Peak driver RSS = VmHWM of the "
            "method's own process (/proc/self/status), a fresh one per method, over all its "
            "seeds: Ray's workers not included; optuna-pruner trains in its driver."]
    if (s := extra.get("settings")):
        out += ["", f"Settings: {json.dumps(s)}"]
    return out


def _join(values: Any, spec: str = ".3f") -> str:
    return ", ".join(format(v, spec) for v in values)


def figure(rows: list[dict], mode: str) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for r in sorted(rows, key=lambda r: (METHODS.index(r["method"]), r["seed"])):
        xs = [t for t, b in r["curve"] if math.isfinite(b)]
        ys = [b for t, b in r["curve"] if math.isfinite(b)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers",
                                 name=f"{r['method']} seed {r['seed']}",
                                 legendgroup=r["method"], line_shape="hv"))
    fig.add_hline(y=TARGET_LOSS, line_dash="dot", annotation_text="target loss")
    fig.update_layout(title="Best target loss so far vs compute spent (paired seeds)",
                      xaxis_title="compute (training tokens + evals at a third)",
                      yaxis_title="best final target loss", yaxis_type="log")
    fig.write_html(RESULTS / f"peers-{mode}.html", include_plotlyjs="cdn")


def settings(mode: str, budget: float) -> dict:
    task = task_for(mode)
    return {"plan": ">".join(PLAN), "sizes": dict(task.sizes), "eval_every": task.every,
            "lr": LR, "mix": MIX, "pbt_population": population(task, budget),
            "pbt_perturbation_interval_tokens": task.every, "parallel": PARALLEL,
            "asha": {"time_attr": "training_iteration", "max_t": len(task.points),
                     "grace_period": 1, "reduction_factor": 4},
            "hyperband": "optuna HyperbandPruner() defaults (min_resource 1, "
                         "reduction_factor 3)",
            "tpe": "TPESampler(seed) defaults (10 start-up trials)"}


def write(rows: list[dict], args: argparse.Namespace, extra: dict, show: bool = True) -> None:
    text = table(rows, args.budget, args.mode, extra)
    if show:
        print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"peers-{args.mode}.md").write_text(text + "\n")
    (RESULTS / f"peers-{args.mode}.json").write_text(json.dumps(
        {"rows": rows, "budget": args.budget, "seeds": args.seeds, "target_loss": TARGET_LOSS,
         "eval_cost": EVAL_COST, **extra}, indent=1))
    figure(rows, args.mode)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--smoke", action="store_true")
    group.add_argument("--full", action="store_true")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated, of {', '.join(METHODS)}")
    p.add_argument("--merge", action="store_true",
                   help="keep the other methods' rows of an earlier results/peers-<mode>.json")
    p.add_argument("--no-throughput", action="store_true", help="skip the tokens/s check")
    args = p.parse_args()
    args.mode = "smoke" if args.smoke else "full"
    args.seeds, args.budget = SEEDS[args.mode], BUDGETS[args.mode]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := [m for m in methods if m not in METHODS]:
        p.error(f"unknown methods {unknown}; methods: {', '.join(METHODS)}")
    path = RESULTS / f"peers-{args.mode}.json"
    rows, extra = [], {"settings": settings(args.mode, args.budget)}
    if args.merge and path.exists():
        old = json.loads(path.read_text())
        rows = [r for r in old["rows"] if r["method"] not in methods]
        extra["throughput"] = old.get("throughput")
    if not args.no_throughput:
        extra["throughput"] = {**throughput_check(args.mode),
                               "command": "python benchmarks/peers.py " + " ".join(
                                   a if a else "''" for a in sys.argv[1:])}
        print(f"tokens/s: {json.dumps(extra['throughput']['tokens_per_s'])}; plain / "
              f"autostage: {json.dumps(extra['throughput']['ratio_plain_over_autostage'])}",
              flush=True)
    for method in sorted(methods, key=RUN_ORDER.index):
        if method == "ray-pb2" and importlib.util.find_spec("sklearn") is None:
            print("ray-pb2 skipped: PB2 needs scikit-learn (pip install scikit-learn)")
            continue
        rows += run_method_process(method, args.mode, args.seeds, args.budget)
        write(rows, args, extra, show=False)  # after every method: a crash keeps the rest
    write(rows, args, extra)


if __name__ == "__main__":
    main()
