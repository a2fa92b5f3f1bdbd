"""The experiment trackers a search logs to (`[study] trackers`), called as one from the
search's driver: each tracker's failures are its own — one line naming it, and the search and
the other trackers go on. Nothing here imports a tracker's package; the plugins do, when they
start."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autostage.components import TrackerRun
    from autostage.records import Branch, EvalRecord, TrialRecord
    from autostage.spec import Study

Say = Callable[[list[str]], None]


class Trackers:
    """Every tracker of a search session, each call passed to each of them in the study's
    order. A tracker that raises is shown once (the first failure, naming the tracker and its
    plugin) and called again for what follows (a tracking server may come back); how often it
    failed in all is said as the search closes them."""

    def __init__(self, runs: Mapping[str, TrackerRun] | None = None,
                 plugins: Mapping[str, str] | None = None, say: Say | None = None) -> None:
        self.runs = dict(runs or {})
        self.plugins = dict(plugins or {})  # tracker name -> the plugin that registered it
        self.say = say or _print
        self.failures: dict[str, int] = {}

    @classmethod
    def open(cls, registry: Any, study: Study, run_dir: Path, say: Say | None = None
             ) -> Trackers:
        """Start the study's trackers for a search into `run_dir` (validation has checked
        their names, settings and packages); one that fails to start is left out, in one
        line."""
        s = study.study
        trackers = cls(plugins={name: registry.entries["tracker"][name].plugin
                                for name in s.trackers}, say=say)
        for name in s.trackers:
            tracker = registry.create("tracker", name, s.tracker_settings.get(name, {}))
            run = trackers._call(name, "start", tracker.start, run_dir, study)
            if run is not None:
                trackers.runs[name] = run
        return trackers

    def trial_started(self, number: int, params: Mapping[str, Any],
                      branch: Branch | None) -> None:
        self._each("trial_started", number, dict(params), branch)

    def eval(self, number: int, record: EvalRecord) -> None:
        self._each("eval", number, record)

    def trial_ended(self, record: TrialRecord, model: Path | None) -> None:
        self._each("trial_ended", record, model)

    def close(self) -> None:
        self._each("close")
        for name, count in self.failures.items():
            if count > 1:
                self.say([f"tracker '{name}' failed {count} times in this search (the first "
                          "is shown above); what it logged is incomplete"])
        self.runs.clear()

    def _each(self, method: str, *args: Any) -> None:
        for name, run in self.runs.items():
            self._call(name, method, getattr(run, method), *args)

    def _call(self, name: str, method: str, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except Exception as e:  # a tracker never ends a search
            self.failures[name] = self.failures.get(name, 0) + 1
            if self.failures[name] == 1:
                plugin = self.plugins.get(name, "?")
                what = "failed to start" if method == "start" else f"raised in {method}"
                rest = "left out of this search" if method == "start" else \
                    "the search goes on (its further failures are counted)"
                self.say([f"tracker '{name}' (plugin '{plugin}') {what}: "
                          f"{type(e).__name__}: {_first_line(e)}; {rest}"])
            return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""


def _print(lines: list[str]) -> None:
    import sys

    for line in lines:
        print(line, file=sys.stderr)


def stage_started(previous: Any, eval: Any) -> bool:
    """Whether `eval` (an `autostage.decisions.Eval`) is the first of a stage visit, given the
    trial's eval before it (None: it is the trial's first)."""
    return previous is None or (previous.stage, previous.visit) != (eval.stage, eval.visit)
