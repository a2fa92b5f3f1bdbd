"""Ray callbacks in the driver: records in the run directory, the token budget, the view."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ray import tune

from autostage.rundir import RunDir
from autostage.search.worker import FINAL, TIME_ATTR


class Recorder(tune.Callback):
    """Writes each trial's events and outcome into the run directory as they happen."""

    def __init__(self, run: RunDir, stops: Any, view: Any) -> None:
        self.run, self.stops, self.view = run, stops, view
        self.started: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Ray pickles its run config for Tuner.restore, which autostage does not use; the
        # live view (locks, a terminal) stays in this process.
        return {**self.__dict__, "view": None}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, time.time())
        self.view.trial_started()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        number = int(result["trial_number"])
        if "resumed_at" in result:
            self.run.truncate_events(number, int(result["resumed_at"]))
            return
        for earlier in result.get("earlier_evals", []):
            self.run.append_event(number, {k: v for k, v in earlier.items() if _is_ours(k)})
        if FINAL in result or "stage" not in result:
            return  # an outcome, or evals flushed before a crash: no eval of its own
        event = {k: v for k, v in result.items() if _is_ours(k)}
        event["time"] = time.time()
        if result.get("checkpoint_dir_name"):
            event["checkpoint"] = str(Path(trial.path) / result["checkpoint_dir_name"])
        self.run.append_event(number, event)
        self.view.trial_result(result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if FINAL in last:
            self._write(trial, last[FINAL], last.get("reason", ""))
        elif (reason := self.stops.reason(trial.trial_id)) is not None:
            self._write(trial, "pruned", reason)
        # else interrupted (Ctrl-C): no record, so --resume re-queues it

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, "failed", _error_reason(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Ray stops the running trials without completing them when the budget is spent;
        # an interrupted search leaves them for --resume to re-queue.
        if not self.stops.budget.spent_out():
            return
        for trial in trials:
            number = (trial.config or {}).get("trial_number")
            if number is not None and not (self.run.trial_dir(number) / "result.json").exists():
                self._write(trial, "pruned", "stopped: the study's token budget was spent")

    def _write(self, trial: Any, status: str, reason: str) -> None:
        last = trial.last_result or {}
        config = dict(trial.config)
        number = int(config.pop("trial_number"))
        values = last.get("values") if FINAL in last else None
        evals = self.run.events(number)
        record = {
            "number": number, "status": status, "reason": reason,
            "value": values[0] if values else None, "values": values,
            "tokens": last.get("tokens", evals[-1]["tokens"] if evals else 0),
            "evals": len(evals), "seed": last.get("seed"), "config": config,
            "plan": config.get("plan.order", ""),
            "decisions": [{"stage": e["stage"], "tokens": e["tokens"], "decision": e["decision"]}
                          for e in evals if e.get("decision") not in ("continue", "", None)],
            "started": self.started.get(trial.trial_id), "ended": time.time(),
        }
        self.run.write_result(number, record)
        self.view.trial_ended(record)


def _is_ours(key: str) -> bool:
    return key.startswith(("eval.", "train.")) or key in (
        "stage", "visit", "tokens", "stage_tokens", "lr", "decision", TIME_ATTR, "trial_number",
        "pid")  # the worker process: shows which trials shared a reused actor


def _error_reason(trial: Any) -> str:
    """The exception line of a trial's error (Ray keeps the whole traceback in a file)."""
    try:
        text = Path(trial.error_file).read_text()
    except (OSError, TypeError):
        return "the trial raised an error (no details were kept)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) and " " not in head:
            return line
    return lines[-1] if lines else "the trial raised an error"


class TokenBudget(tune.Stopper):
    """Stops the whole search once the trials have trained the study's token budget."""

    def __init__(self, budget: int | None, already: int) -> None:
        self.budget, self.already = budget, already
        self.tokens: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if "tokens" in result:
            self.tokens[trial_id] = int(result["tokens"])
        return False

    def spent(self) -> int:
        return self.already + sum(self.tokens.values())

    def spent_out(self) -> bool:
        return self.budget is not None and self.spent() >= self.budget

    def stop_all(self) -> bool:
        return self.spent_out()
