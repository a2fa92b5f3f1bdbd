"""The tracker contract: a scripted search session (two fresh trials, one branched from the
first, stage visits, policy decisions, a kept model, a failure) goes through the tracker as
the search's driver would call it, again after a resume; and, given a reader of the
tracker's store, what it logged reads back: each trial's parameters, every metric at its
step, its stage starts and decisions, its parent, and its model where it keeps models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from autostage.components import Tracker
from autostage.decisions import Advance, Continue, Eval, ScaleLR
from autostage.records import Branch, EvalRecord, TrialRecord, TrialStatus
from autostage.spec import Study
from autostage.testing.contracts import ComponentContract

METRIC = "eval.target.loss"


@dataclass
class Logged:
    """One trial as a tracker's own store holds it, read back by the `read_back` fixture."""

    params: dict[str, str] = field(default_factory=dict)  # as strings
    #: metric key -> its (step, value) points
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    notes: str = ""  # every tag or text it logged for the trial, joined: stages, decisions, ...
    parent: int | None = None  # the trial it links as the parent run (None: none)
    model_files: list[str] = field(default_factory=list)  # the model's files, relative


def contract_study(name: str = "tracker-contract") -> Study:
    """A small valid study (the toy trainer's) for a tracker's `start`."""
    return Study(
        study={"name": name, "metric": METRIC},
        model={"trainer": "toy"},
        data={"prereq": {"dataset": "toy_task"}, "target": {"dataset": "toy_task"}},
        stage=[{"name": "prereq", "data": "prereq", "tokens": 2000},
               {"name": "target", "data": "target", "tokens": 4000, "final": True}])


def _eval(stage: str, tokens: int, stage_tokens: int, loss: float,
          decision: Any = None) -> EvalRecord:
    ev = Eval(stage=stage, visit=0, tokens=tokens, stage_tokens=stage_tokens,
              stage_budget=2000 if stage == "prereq" else 4000, lr=1e-3 * loss,
              metrics={METRIC: loss, "eval.prereq.loss": loss + 0.5, "train.loss": loss + 0.1},
              watch=METRIC, decision=decision or Continue())
    return EvalRecord(ev, time=1_700_000_000.0 + tokens / 1000)


#: the scripted session: trial -> (params, branch, evals, status, reason)
BRANCH = Branch(parent=0, stage="prereq", tokens=2000, evals=2, checkpoint="trial-0/ckpt-1",
                prefix={"optimizer.adamw.lr": 0.001}, seed=0, done=("prereq",))
SESSION: dict[int, tuple[dict[str, Any], Branch | None, list[EvalRecord], TrialStatus, str]] = {
    0: ({"optimizer.adamw.lr": 0.001, "plan.order": "prereq>target"}, None,
        [_eval("prereq", 1000, 1000, 3.0), _eval("prereq", 2000, 2000, 2.5, Advance()),
         _eval("target", 3000, 1000, 2.0), _eval("target", 4000, 2000, 1.5, ScaleLR(0.5)),
         _eval("target", 6000, 4000, 1.2)], TrialStatus.COMPLETED, ""),
    1: ({"optimizer.adamw.lr": 0.002, "plan.order": "prereq>target"}, BRANCH,
        [_eval("target", 3000, 1000, 1.9), _eval("target", 6000, 4000, 1.1)],
        TrialStatus.COMPLETED, ""),
    2: ({"optimizer.adamw.lr": 0.5, "plan.order": "target"}, None,
        [_eval("target", 1000, 1000, 9.0)], TrialStatus.FAILED, "the loss went non-finite"),
}


def run_session(tracker: Tracker, run_dir: Path, model: Path | None,
                numbers: tuple[int, ...] = (0, 1, 2)) -> None:
    """Drive `tracker` through SESSION's trials `numbers` as the search's driver would."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run = tracker.start(run_dir, contract_study())
    for number in numbers:
        params, branch, evals, status, reason = SESSION[number]
        run.trial_started(number, params, branch)
        for record in evals:
            run.eval(number, record)
        value = evals[-1].eval.metrics[METRIC] if status != TrialStatus.FAILED else None
        result = TrialRecord(number, status, reason, (value,) if value else None,
                             tokens=evals[-1].eval.tokens - (branch.tokens if branch else 0),
                             config=params, ended=evals[-1].time, branch=branch)
        run.trial_ended(result, model if number == 0 else None)
    run.close()


_SESSIONS: dict[tuple[str, str], dict[int, Logged]] = {}


class TrackerContract(ComponentContract):
    """Fixtures: `component` (the tracker, with settings that log under `tmp_path` or the run
    directory it is given); optionally `read_back`, a function of the run directory returning
    `{trial number: Logged}` read with the tracker's own reader (without it, the read-back
    checks skip)."""

    @pytest.fixture
    def read_back(self) -> Any:
        return None

    @pytest.fixture
    def model(self, tmp_path: Path) -> Path:
        folder = tmp_path / "models" / "trial-0"
        folder.mkdir(parents=True)
        (folder / "toy-model.json").write_text('{"fake": "a model"}')
        return folder

    @pytest.fixture
    def logged(self, component: Tracker, read_back: Any, tmp_path_factory: Any
               ) -> dict[int, Logged]:
        """What one session logged, read back (once per tracker configuration)."""
        if read_back is None:
            pytest.skip("no read_back fixture: what the tracker logged is not read back")
        key = (type(self).__qualname__, repr(component))
        if key not in _SESSIONS:
            root = tmp_path_factory.mktemp("tracker-contract")
            model = root / "models" / "trial-0"
            model.mkdir(parents=True)
            (model / "toy-model.json").write_text('{"fake": "a model"}')
            run_session(component, root / "run", model)
            _SESSIONS[key] = read_back(root / "run")
        return _SESSIONS[key]

    def test_is_a_tracker(self, component: Any) -> None:
        assert isinstance(component, Tracker)

    def test_check_returns_problems_as_strings(self, component: Tracker) -> None:
        problems = component.check()
        assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
        assert problems == [], f"installed here, yet: {problems}"

    def test_takes_a_whole_session_and_a_resumed_one(self, component: Tracker,
                                                     tmp_path: Path, model: Path) -> None:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        run_session(component, run_dir, model, numbers=(0, 2))
        run_session(component, run_dir, None, numbers=(1, 2))  # --resume: trial 2 again

    def test_a_session_cut_short_closes(self, component: Tracker, tmp_path: Path) -> None:
        run = component.start(tmp_path, contract_study())
        params, _, evals, _, _ = SESSION[0]
        run.trial_started(0, params, None)
        run.eval(0, evals[0])
        run.close()  # interrupted: the trial never ended

    def test_logs_every_trial_with_its_parameters(self, logged: dict[int, Logged]) -> None:
        assert sorted(logged) == sorted(SESSION)
        for number, (params, *_) in SESSION.items():
            assert {k: logged[number].params.get(k) for k in params} == \
                {k: str(v) for k, v in params.items()}, number

    def test_logs_every_metric_at_its_step(self, logged: dict[int, Logged]) -> None:
        for number, (_, _, evals, _, _) in SESSION.items():
            for key in (METRIC, "eval.prereq.loss", "train.loss", "lr"):
                want = [(r.eval.tokens, r.eval.metrics[key] if key != "lr" else r.eval.lr)
                        for r in evals]
                got = sorted(logged[number].metrics.get(key, []))
                assert [step for step, _ in got] == [step for step, _ in want], (number, key)
                assert [v for _, v in got] == pytest.approx([v for _, v in want]), (number, key)

    def test_notes_stage_starts_and_decisions(self, logged: dict[int, Logged]) -> None:
        notes = logged[0].notes
        assert "prereq" in notes and "target" in notes
        assert "advance" in notes.lower() and "0.5" in notes

    def test_links_a_branch_to_its_parent(self, logged: dict[int, Logged]) -> None:
        assert logged[1].parent == 0
        assert logged[0].parent is None and logged[2].parent is None

    def test_keeps_the_model_where_it_keeps_models(self, component: Tracker,
                                                   logged: dict[int, Logged]) -> None:
        if not type(component).keeps_models:
            assert all(not t.model_files for t in logged.values())
            return
        assert [Path(f).name for f in logged[0].model_files] == ["toy-model.json"]
        assert not logged[1].model_files
