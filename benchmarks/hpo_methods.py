"""autostage's methods and the two baselines of benchmarks/hpo.py.

  autostage-M4  TPE (3 start-up trials) + autostage's ASHA on final-stage evals (grace = the
                task's PLATEAU in evals, factor 2) + a searched stage policy (fixed, plateau,
                bandit): search_efficiency's M4 as it shipped
  autostage-M5  M4's space and sampler with branching trials (`trial_scheduler =
                "population"`, quantile 0.25, fresh 0.2; grace = PLATEAU in evals, as M4's —
                it shipped with 2)
  autostage-early  M5 branching before a breakthrough (issue 27): a point alone at its place
                may be branched from (`min_points = 1`) and places rank by improvement
                (`rank_by = "improvement"`, FIRE-PBT's rule)
  autostage-pasha  M4 with PASHA instead of ASHA (same grace and factor; epsilon from the
                noise, the paper's default)
  autostage-curve  M4 with learning-curve extrapolation instead of ASHA (`min_evals` =
                PLATEAU in evals: no curve is judged on the plateau; margin 0.02, its default)
  oracle        the best static configuration of the pooled records (every method's completed
                trials that ran one configuration throughout), retrained once per seed: what
                a search that knew the answer would spend
  top-k         one-fidelity top-K (Egele et al. 2023, "Is one epoch all you need for
                multi-fidelity HPO?"): random configurations each trained to the first point
                where they can be ranked (the plan's prefix stages and PLATEAU of the final
                stage), the best K=2 continued to the end; as many configurations as the
                budget holds with the K continuations reserved
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hpo_ledger import Ledger, eval_times
from hpo_member import Member, complete, sample, study
from hpo_task import Task

K = 2  # top-k: as many continuations as slots
AUTOSTAGE = ("autostage-M4", "autostage-M5", "autostage-early", "autostage-pasha",
             "autostage-curve")
POLICIES = "search.stage_policy={fixed = {}, plateau = {patience = {low = 1, high = 3}}, " \
    "bandit = {}}"


def autostage_overrides(method: str, task: Task) -> list[str]:
    """M4's and M5's study overrides on top of the task's study."""
    grace = task.plateau_evals
    common = ["study.sampler=tpe", "study.sampler_settings={n_startup_trials = 3}", POLICIES]
    if method == "autostage-M4":
        return [*common, "study.trial_scheduler=asha", "study.trial_scheduler_settings="
                f"{{grace_period = {grace}, reduction_factor = 2}}"]
    if method == "autostage-M5":
        return [*common, "study.trial_scheduler=population", "study.trial_scheduler_settings="
                f"{{quantile = 0.25, fresh = 0.2, grace_period = {grace}}}"]
    if method == "autostage-early":
        return [*common, "study.trial_scheduler=population", "study.trial_scheduler_settings="
                f"{{quantile = 0.25, fresh = 0.2, grace_period = {grace}, min_points = 1, "
                'rank_by = "improvement"}']
    if method == "autostage-pasha":
        return [*common, "study.trial_scheduler=pasha", "study.trial_scheduler_settings="
                f"{{grace_period = {grace}, reduction_factor = 2}}"]
    if method == "autostage-curve":
        return [*common, "study.trial_scheduler=curve",
                f"study.trial_scheduler_settings={{min_evals = {max(grace, 2)}}}"]
    raise ValueError(f"no autostage method named {method!r}; methods: {', '.join(AUTOSTAGE)}")


def run_autostage(method: str, task: Task, seed: int, workdir: Path, registry: Any) -> dict:
    """One autostage search as it ships, then replayed through the ledger from its run
    directory: every eval in the order the driver received it (the evals autostage holds
    inside a prefix stage placed between their neighbours by their tokens)."""
    from autostage.live import QuietView
    from autostage.rundir import RunDir
    from autostage.search import run_search

    # autostage's token_budget counts training tokens only: the ledger, evals too, judges
    # within its own budget; what the search trains past it is not counted
    run_study = task.load(registry, [*autostage_overrides(method, task), f"study.seed={seed}",
                                     f"study.token_budget={int(task.budget)}"])
    run = RunDir(workdir / f"{method}-{seed}")
    start = time.perf_counter()
    run_search(run_study, registry, run, resume=False, address=None, view=QuietView())
    wall = time.perf_counter() - start
    book = replay(RunDir(run.path).trials(), task, registry)
    return {**book.summary(), "wall_s": wall}


def replay(records: list, task: Task, registry: Any) -> Ledger:
    """An autostage run's records through the ledger."""
    from autostage.keys import parse_metric

    book = Ledger(task.budget, task.eval_compute(registry), task.mode, task.target)
    evals = []
    for r in records:
        times = eval_times(r.started, r.ended, [(e.time, e.eval.tokens) for e in r.evals])
        evals += [(t, r.number, i, e) for i, (t, e) in enumerate(zip(times, r.evals,
                                                                     strict=True))]
    last = {r.number: len(r.evals) - 1 for r in records}
    by = {r.number: r for r in records}
    # a branch's evals count lineage tokens: it is charged from its branch point on
    seen = {r.number: r.branch.tokens if r.branch else 0 for r in records}
    for _, number, i, ev in sorted(evals, key=lambda x: x[:3]):
        sources = sum(1 for k in ev.eval.metrics
                      if (key := parse_metric(k)) and key.source and key.name == "loss")
        book.charge(number, ev.eval.tokens - seen[number], sources, by[number].branch is not None)
        seen[number] = ev.eval.tokens
        r = by[number]
        if i == last[number] and r.ranked_value is not None:
            static = r.branch is None and r.config.get("stage_policy", "fixed") == "fixed"
            book.complete(number, r.ranked_value, dict(r.config) if static else None)
    return book


# --- the baselines -------------------------------------------------------------------------------

def pooled_best(rows: list[dict], mode: str) -> tuple[float, dict] | None:
    """The best static configuration among the rows' kept ones (each row keeps its best
    few), the oracle's own rows left out."""
    pool = [(v, c) for r in rows if r["method"] != "oracle" for v, c in r.get("configs", [])]
    if not pool:
        return None
    return (max if mode == "max" else min)(pool, key=lambda vc: vc[0])


def run_oracle(task: Task, seed: int, config: dict, registry: Any) -> dict:
    """The pooled best configuration trained once on this seed, its evals charged."""
    book = Ledger(task.budget, task.eval_compute(registry), task.mode, task.target)
    start = time.perf_counter()
    member = Member(task, config, seed)
    while not member.finished:
        trained, value = member.step()
        book.charge(0, trained, 1)
    book.complete(0, value, member.params)
    return {**book.summary(), "wall_s": time.perf_counter() - start, "config": member.params}


def topk_draws(task: Task, registry: Any) -> int:
    """How many configurations top-k trains to the ranking point: the budget less the K
    continuations, over the longest plan's cost to that point."""
    s, final = study(task), task.final
    prefix = sum(st.tokens for st in s.stage if not st.final)
    rank_at = prefix + task.plateau_tokens + task.plateau_evals * task.eval_compute(registry)
    evals_after = final["tokens"] // final["eval_every"] - task.plateau_evals
    rest = final["tokens"] - task.plateau_tokens + evals_after * task.eval_compute(registry)
    return max(K + 1, math.floor((task.budget - K * rest) / rank_at))


def run_topk(task: Task, seed: int, registry: Any) -> dict:
    book = Ledger(task.budget, task.eval_compute(registry), task.mode, task.target)
    configs = [sample(task, seed * 1000 + i) for i in range(topk_draws(task, registry))]
    start = time.perf_counter()

    def train(i: int, member: Member, until: int) -> float:
        value = math.nan
        while not member.finished and (member.final_tokens < until or math.isnan(value)):
            if book.spent_out:
                return math.nan
            trained, value = member.step()
            book.charge(i, trained, 1)
        if member.finished:
            book.complete(i, value, member.params)
        return value

    with ThreadPoolExecutor(2) as pool:
        members = list(pool.map(lambda ic: Member(task, ic[1], seed * 1000 + ic[0]),
                                enumerate(configs)))
        ranked = list(pool.map(lambda i: train(i, members[i], task.plateau_tokens),
                               range(len(members))))
        order = sorted((i for i, v in enumerate(ranked) if math.isfinite(v)),
                       key=lambda i: ranked[i], reverse=task.mode == "max")
        list(pool.map(lambda i: train(i, members[i], math.inf), order[:K]))
    return {**book.summary(), "wall_s": time.perf_counter() - start, "draws": len(configs)}


def oracle_config(rows: list[dict], task: Task) -> dict | None:
    best = pooled_best(rows, task.mode)
    return None if best is None else complete(task, best[1])
