"""The peers of benchmarks/hpo.py: Ray Tune's PBT, PB2 and OptunaSearch + ASHA, and plain
Optuna with its Hyperband pruner, each configured as an expert user of the tool would,
every setting justified from the tool's docs. All of them:

- search the task's own space (`autostage.space`): the stage plan as a categorical of the same
  allowed plans as autostage's, the final stage's mixture, the LR — no stage policy;
- train each trial with `hpo_member.Member` (autostage's trainer plugin in a plain loop) and
  report at every eval of the final stage, with `final_tokens` (tokens into it) as the time
  attribute: rungs and perturbations count the stage whose value is ranked, not the prefix
  stages a plan may or may not run;
- run two trials at a time (2 CPUs) and stop once the ledger has spent the budget;
- share TPE's start-up allowance with autostage's M4 (3 random trials: its setting since
  2026-11-23, chosen on the tuning seeds), and the task's PLATEAU (the rung/burn-in knowledge
  every method gets, from the tuning seeds).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from functools import partial
from typing import Any

from hpo_ledger import Ledger, segment_charges
from hpo_member import Member, space
from hpo_task import Task, load_task

METRIC = "value"
PARALLEL = 2
STARTUP_TRIALS = 3  # = autostage M4's n_startup_trials: the same TPE allowance for all
REDUCTION_FACTOR = 2  # ASHA paper (Li et al. 2020) and Ray's docs: 2-4; 2 = M4's
PBT_POPULATION = 4  # PB2's docs: "designed for small population sizes" (its paper: 4);
# fewer when the budget holds fewer whole plans (population()), at least 2
RAY_PEERS = ("ray-pbt", "ray-pb2", "ray-optuna-asha")
PEERS = (*RAY_PEERS, "optuna-pruner")
CONSTANTS = ("task", "scale", "seed", "offset", "member", "checkpoint")


def settings(task: Task) -> dict[str, Any]:
    """Every peer's settings on this task (sized), as the JSON records them."""
    final = task.final
    return {
        "time_attr": "final_tokens (tokens into the final stage)",
        "asha": {"max_t": final["tokens"], "grace_period": task.plateau_tokens,
                 "reduction_factor": REDUCTION_FACTOR},
        "pbt": {"population": population(task), "burn_in_period": task.plateau_tokens,
                "perturbation_interval": 2 * final["eval_every"], "quantile_fraction": 0.25,
                "resample_probability": 0.25, "perturbation_factors": [1.2, 0.8],
                "bounded": True, "mutated": mutated(task)},
        "pb2": {"population": population(task), "burn_in_period": task.plateau_tokens,
                "perturbation_interval": 2 * final["eval_every"], "bounds": bounds(task)},
        "optuna_hyperband": {"min_resource": task.plateau_tokens,
                             "max_resource": final["tokens"],
                             "reduction_factor": REDUCTION_FACTOR},
        "tpe": {"n_startup_trials": STARTUP_TRIALS, "constant_liar": True},
        "parallel": PARALLEL}


def population(task: Task, registry: Any = None) -> int:
    """PBT_POPULATION, or as many of the longest plans as the budget holds (at least 2): a
    population must be able to end its plans within the budget."""
    from hpo_member import registry as default
    from hpo_member import study

    per_eval = task.eval_compute(registry or default())
    final = task.final
    longest = sum(s.tokens for s in study(task).stage) + \
        final["tokens"] // final["eval_every"] * per_eval
    return max(2, min(PBT_POPULATION, int(task.budget // longest)))


def mutated(task: Task) -> list[str]:
    """The parameters PBT and PB2 may change part-way: those that act inside the final stage
    (its mixture, the optimizer's float settings: a fresh optimizer per stage reads them).
    The plan is chosen at the start and copied with the weights on exploit: the stages it
    ran are behind the checkpoint."""
    final = task.final["name"]
    return [p.key for p in _floats(task)
            if p.key.startswith(("optimizer.", f"mix.{final}."))]


def bounds(task: Task) -> dict[str, list[float]]:
    return {p.key: [p.low, p.high] for p in _floats(task) if p.key in mutated(task)}


def _floats(task: Task) -> list[Any]:
    s = space(task)
    params = [p for ks in s.kinds for name in ks.names for p in ks.params_of(name)]
    return [p for p in [*params, *s.mixes] if p.type == "float"]


def ray_space(task: Task) -> dict[str, Any]:
    """The task's space as Ray Tune's search space: categoricals as tune.choice (the plan
    too), floats as tune.uniform / loguniform, fixed values as constants."""
    from ray import tune

    s, out = space(task), {}
    for ks in s.kinds:
        out[ks.kind] = tune.choice(list(ks.names)) if len(ks.names) > 1 else ks.names[0]
        for name in ks.names:
            out.update({p.key: _domain(p) for p in ks.params_of(name)})
    from autostage.keys import PLAN_KEY

    out[PLAN_KEY] = tune.choice(list(s.plans)) if len(s.plans) > 1 else s.plans[0]
    out.update({p.key: _domain(p) for p in s.mixes})
    return out


def _domain(p: Any) -> Any:
    from ray import tune

    if p.type == "float":
        return (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
    if p.type == "int":
        return (tune.lograndint if p.log else tune.randint)(p.low, p.high + 1)
    if p.type == "categorical":
        return tune.choice(list(p.choices))
    return p.value


def clip(task: Task, config: dict) -> dict:
    """PBT's custom_explore_fn: Ray's PBT multiplies a value by 1.2 or 0.8 with no regard to
    its domain (ray/tune/schedulers/pbt.py `_explore`); its docs' example explore function
    clips to the bounds, as here."""
    for key, (low, high) in bounds(task).items():
        config[key] = min(max(config[key], low), high)
    return config


# --- the trainable -------------------------------------------------------------------------------

def trainable(config: dict) -> None:
    """A function trainable as Ray's PBT guide writes one: resume from tune.get_checkpoint()
    when there is one, report the metric (with a checkpoint, for PBT) at every eval."""
    from ray import tune

    task = replace(load_task(config["task"]), scale=config["scale"])
    trial_id = tune.get_context().get_trial_id()
    index = config.get("member", _trial_index(trial_id)) + config.get("offset", 0)
    params = {k: v for k, v in config.items() if k not in CONSTANTS}
    member = Member(task, params, config["seed"] * 1000 + index)
    cloned = False
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as directory:
            cloned = member.load(directory) != trial_id  # PBT's exploit: a donor's weights
    last = member.position  # 0, or where the checkpoint (ours or a donor's) left the plan
    while not member.finished:
        _, value = member.step()
        [trained] = segment_charges(last, [member.position])
        last = member.position
        metrics = {METRIC: value, "final_tokens": member.final_tokens or
                   task.final["tokens"], "trained": trained, "evals": 1,
                   "finished": member.finished, "cloned": cloned}
        if config.get("checkpoint"):
            with tempfile.TemporaryDirectory() as directory:
                member.save(directory, trial_id)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
        cloned = False


def _trial_index(trial_id: str) -> int:
    """Ray's basic variant generator numbers its trials `<prefix>_00003`."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _stopper(book: Ledger, changed: set) -> Any:
    from ray import tune

    class BudgetStopper(tune.Stopper):
        """Charges every report to the ledger; ends the whole search once it is spent."""

        def __call__(self, trial_id: str, result: dict) -> bool:
            if result.get("done"):  # Ray repeats a trial's last result as it returns
                return False
            if result["cloned"]:
                changed.add(trial_id)
            book.charge(trial_id, int(result["trained"]), int(result["evals"]),
                        bool(result["cloned"]))
            if result["finished"]:
                config = {k: v for k, v in result.get("config", {}).items()
                          if k not in CONSTANTS}
                book.complete(trial_id, float(result[METRIC]),
                              None if trial_id in changed else config)
            return False

        def stop_all(self) -> bool:
            return book.spent_out

    return BudgetStopper()


def ray_setup(method: str, task: Task, seed: int, restart: int = 0) -> dict[str, Any]:
    """The scheduler, search algorithm, param space and sample count of a Ray peer; PBT's
    `restart`-th population."""
    import random

    import numpy as np

    final = task.final
    base = {"task": task.name, "scale": task.scale, "seed": seed}
    if method in ("ray-pbt", "ray-pb2"):
        from ray.tune.search.basic_variant import BasicVariantGenerator

        random.seed(seed * 100 + restart)  # PBT's explore draws from `random` and numpy in
        np.random.seed(seed * 100 + restart)  # the driver (Ray's FAQ on reproducibility)
        common = {
            # Ray's PBT docs: time_attr must increase monotonically; reported at every eval
            "time_attr": "final_tokens",
            # two evals: a change has evals to show its effect before the next one
            "perturbation_interval": 2 * final["eval_every"],
            "custom_explore_fn": partial(clip, task)}
        if method == "ray-pbt":
            from ray.tune.schedulers import PopulationBasedTraining

            # burn_in_period (Ray's PBT API): no exploit while every member sits on the plateau
            scheduler = PopulationBasedTraining(
                **common, burn_in_period=task.plateau_tokens,
                hyperparam_mutations={k: _domain(p) for p in _floats(task)
                                      if (k := p.key) in mutated(task)})
        else:
            from ray.tune.schedulers.pb2 import PB2

            # PB2's bounds keep every suggestion inside the space (its GP-UCB optimises
            # within them); PB2 takes no burn_in_period argument, but inherits PBT's check
            scheduler = PB2(**common, hyperparam_bounds=bounds(task))
            scheduler._burn_in_period = task.plateau_tokens
        return {"scheduler": scheduler,
                "search_alg": BasicVariantGenerator(random_state=seed * 100 + restart),
                "param_space": {**base, **ray_space(task), "checkpoint": True,
                                "offset": restart * population(task)},
                "num_samples": population(task),
                # every checkpoint kept: with num_to_keep, a clone's checkpoint manager deletes
                # its donor's files (ray-project/ray#5549, #8441)
                "keep": None}
    if method == "ray-optuna-asha":
        import optuna
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        # ASHA (Ray's docs): time_attr in the unit ranked; grace_period >= the plateau, so no
        # rung compares trials that sit on it; max_t the final stage (its end completes)
        scheduler = ASHAScheduler(time_attr="final_tokens", max_t=final["tokens"],
                                  grace_period=task.plateau_tokens,
                                  reduction_factor=REDUCTION_FACTOR)
        # Optuna's TPESampler docs: constant_liar for parallel trials (n_jobs / 2 slots)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS,
                                             constant_liar=True)
        return {"scheduler": scheduler,
                "search_alg": OptunaSearch(space=partial(define_by_run, task, base),
                                           metric=METRIC, mode=task.mode, sampler=sampler),
                "param_space": {}, "num_samples": 10_000, "keep": 1}
    raise ValueError(f"no Ray peer named {method!r}; Ray peers: {', '.join(RAY_PEERS)}")


def define_by_run(task: Task, base: dict, trial: Any) -> dict:
    """OptunaSearch's define-by-run space (Ray's optuna_define_by_run_example.py): autostage's
    own `suggest` over the task's space; the constants it returns join the config."""
    from autostage.space import suggest

    return {**base, **suggest(space(task), trial), "member": trial.number}


def run_ray(method: str, task: Task, seed: int, workdir: str, registry: Any) -> dict:
    """One Ray Tune search on the Ray this process started. PBT and PB2 run populations
    (population()) one after another (each a fresh Tuner) until the budget is spent: a
    population ends when its members end their plans."""
    from ray import tune

    book = Ledger(task.budget, task.eval_compute(registry), task.mode, task.target)
    changed: set = set()
    start, restart = time.perf_counter(), 0
    while not book.spent_out:
        setup = ray_setup(method, task, seed, restart)
        tuner = tune.Tuner(
            trainable, param_space=setup["param_space"],
            tune_config=tune.TuneConfig(
                metric=METRIC, mode=task.mode, scheduler=setup["scheduler"],
                search_alg=setup["search_alg"], num_samples=setup["num_samples"],
                max_concurrent_trials=PARALLEL, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"{method}-{seed}-{restart}", storage_path=workdir,
                stop=_stopper(book, changed), verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=setup["keep"])))
        grid = tuner.fit()
        if grid.errors:
            raise RuntimeError(f"{method} seed {seed}: {len(grid.errors)} trials failed: "
                               f"{grid.errors[0]}")
        restart += 1
    return {**book.summary(), "wall_s": time.perf_counter() - start, "restarts": restart}


# --- plain Optuna --------------------------------------------------------------------------------

def run_optuna(task: Task, seed: int, registry: Any) -> dict:
    """Optuna as its docs show: a define-by-run objective reporting at every eval, TPE
    (constant_liar, for n_jobs=2) and the HyperbandPruner with an explicit resource range, in
    this process."""
    import optuna

    from autostage.space import suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    book = Ledger(task.budget, task.eval_compute(registry), task.mode, task.target)
    final = task.final
    # HyperbandPruner's docs: min_resource where the first rung may compare (here past the
    # plateau), max_resource the most a trial reports (explicit: "auto" waits for a trial
    # to complete before it prunes anything). Steps are final-stage tokens, as ASHA's.
    pruner = optuna.pruners.HyperbandPruner(min_resource=task.plateau_tokens,
                                            max_resource=final["tokens"],
                                            reduction_factor=REDUCTION_FACTOR)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS,
                                         constant_liar=True)
    study = optuna.create_study(direction="maximize" if task.mode == "max" else "minimize",
                                sampler=sampler, pruner=pruner)

    def objective(trial: optuna.Trial) -> float:
        constants = suggest(space(task), trial)
        params = {**trial.params, **constants}
        member = Member(task, params, seed * 1000 + trial.number)
        while True:
            if book.spent_out:  # another trial spent the budget: end this one unranked
                study.stop()
                raise optuna.TrialPruned("the budget is spent")
            trained, value = member.step()
            book.charge(trial.number, trained, 1)
            if member.finished:
                book.complete(trial.number, value, member.params)
                return value
            trial.report(value, member.final_tokens)
            if trial.should_prune():
                raise optuna.TrialPruned()

    start = time.perf_counter()
    study.optimize(objective, n_trials=10_000, n_jobs=PARALLEL)
    return {**book.summary(), "wall_s": time.perf_counter() - start}
