"""The private names of Ray and Optuna autostage uses live in two adapters,
autostage/search/ray_internals.py and optuna_internals.py. Each name still exists with the
shape used there: when a release drops or reshapes one, its test fails in one line naming the
installed version and the adapter to fix. And no module outside the adapters reaches for one.

The Ray checks import Ray (slow lane); the Optuna ones and the guard are fast."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
RAY_ADAPTER = "autostage/search/ray_internals.py"
OPTUNA_ADAPTER = "autostage/search/optuna_internals.py"

# what a changed release raises when a name is gone or reshaped
CHANGED = (AttributeError, ImportError, TypeError, KeyError, ValueError, AssertionError)


def still_has(library: str, what: str, adapter: str, probe: Callable[[], Any]) -> None:
    """Run `probe`; if the installed `library` no longer has `what`, fail in one line."""
    try:
        probe()
    except CHANGED as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        pytest.fail(f"{library} {importlib.metadata.version(library)} no longer has {what} "
                    f"({detail}): see {adapter}", pytrace=False)


def parameters(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_a_missing_name_fails_in_one_line_naming_the_version():
    with pytest.raises(pytest.fail.Exception) as failed:
        still_has("optuna", "optuna.study.Study._gone", OPTUNA_ADAPTER,
                  lambda: __import__("optuna").study.Study._gone)
    message = str(failed.value)
    version = importlib.metadata.version("optuna")
    assert message.startswith(f"optuna {version} no longer has optuna.study.Study._gone (")
    assert message.endswith(f": see {OPTUNA_ADAPTER}") and "\n" not in message
    assert failed.value.pytrace is False  # no traceback: the line is the whole report


# --- Optuna (fast) -----------------------------------------------------------------------------


def test_optuna_keeps_a_queued_trials_parameters_as_fixed_params():
    import optuna

    from autostage.search.optuna_internals import fixed_params

    study = optuna.create_study()
    study.enqueue_trial({"x": 0.5, "k": 3})

    def probe() -> None:
        waiting = study.get_trials(deepcopy=False)[0]
        assert waiting.params == {}, "a WAITING trial with params (a public reader?)"
        assert fixed_params(waiting) == {"x": 0.5, "k": 3}, "fixed_params of a WAITING trial"
        trial = study.ask()  # taken from the queue, nothing suggested yet
        assert fixed_params(study.get_trials(deepcopy=False)[trial.number]) == \
            {"x": 0.5, "k": 3}, "fixed_params of a RUNNING trial from the queue"

    still_has("optuna", 'the parameters enqueue_trial queued in system_attrs["fixed_params"]',
              OPTUNA_ADAPTER, probe)
    assert fixed_params(optuna.trial.create_trial(value=1.0)) == {}  # a trial never queued


def test_a_trials_state_is_set_through_public_storage_methods(tmp_path):
    """What `storage.settle` and `storage.reconcile` do with Optuna's storage, where
    `study.tell` serves neither: fail a WAITING trial, prune a trial with the value its record
    gives (not Optuna's last intermediate value)."""
    import optuna

    from autostage.search.storage import _set_state, open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.enqueue_trial({"x": 0.5})
    study.enqueue_trial({"x": 0.7})
    running = study.ask()
    running.report(9.0, 0)
    study_id = storage.get_study_id_from_name("s")
    _set_state(storage, study_id, 1, optuna.trial.TrialState.FAIL)
    _set_state(storage, study_id, 0, optuna.trial.TrialState.PRUNED, [2.5])
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED,
                                         optuna.trial.TrialState.FAIL]
    assert trials[0].values == [2.5] and trials[1].values is None


# --- Ray (slow: imports Ray) ------------------------------------------------------------------


@pytest.mark.slow
def test_ray_still_has_its_key_value_store():
    def probe() -> None:
        from ray.experimental import internal_kv

        assert parameters(internal_kv._internal_kv_put)[:2] == ["key", "value"], "(key, value)"
        assert parameters(internal_kv._internal_kv_get)[:1] == ["key"], "(key)"
        assert parameters(internal_kv._internal_kv_del)[:1] == ["key"], "(key)"

    still_has("ray", "ray.experimental.internal_kv._internal_kv_put/_get/_del", RAY_ADAPTER,
              probe)


@pytest.mark.slow
def test_the_key_value_store_round_trip(ray_session):
    from autostage.search import ray_internals

    key = "autostage/test/internals/kv"
    ray_internals.kv_del(key)  # nothing there: no error
    assert ray_internals.kv_get(key) is None
    ray_internals.kv_put(key, b"why")
    ray_internals.kv_put(key, b"why, again")  # overwrites
    assert ray_internals.kv_get(key) == b"why, again"
    ray_internals.kv_del(key)
    assert ray_internals.kv_get(key) is None


@pytest.mark.slow
def test_ray_optuna_search_still_keeps_its_study_and_trials():
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from autostage.search import ray_internals

    searcher = OptunaSearch(space={"x": optuna.distributions.FloatDistribution(0, 1)},
                            metric="loss", mode="min")

    def probe() -> None:
        assert isinstance(ray_internals.searcher_study(searcher), optuna.Study), "a Study"
        assert ray_internals.searcher_trials(searcher) == {}, "a dict"
        assert ray_internals.completed_trials(searcher) == set(), "a set"
        assert searcher.suggest("t0") is not None
        trial = ray_internals.searcher_trials(searcher)["t0"]
        assert isinstance(trial, optuna.Trial), "Ray trial id -> optuna.Trial"
        assert trial.study is ray_internals.searcher_study(searcher), "of its own study"
        searcher.on_trial_complete("t0", {"loss": 1.0})
        assert "t0" in ray_internals.completed_trials(searcher), "told trials in the set"

    still_has("ray", "OptunaSearch._ot_study/_ot_trials/_completed_trials as used",
              RAY_ADAPTER, probe)


@pytest.mark.slow
def test_ray_async_hyperband_still_keeps_its_brackets():
    from ray.tune.schedulers import AsyncHyperBandScheduler

    from autostage_plugins.ray_trial_schedulers import BracketsInTurn

    def probe() -> None:
        plain = AsyncHyperBandScheduler(metric="m", mode="min", brackets=3)
        assert isinstance(plain._brackets, list) and len(plain._brackets) == 3, "a list"
        assert plain._trial_info == {}, "a dict: trial id -> bracket"
        turns = BracketsInTurn(metric="m", mode="min", max_t=81, grace_period=1,
                               reduction_factor=3, brackets=3)
        for k in range(5):
            turns.on_trial_add(None, SimpleNamespace(trial_id=f"t{k}"))
        assert [turns._trial_info[f"t{k}"] for k in range(5)] == \
            [turns._brackets[k % 3] for k in range(5)], "each trial's bracket in _trial_info"

    still_has("ray", "AsyncHyperBandScheduler._brackets/_trial_info as used", RAY_ADAPTER,
              probe)


@pytest.mark.slow
def test_ray_still_counts_a_trials_reports_in_its_session():
    from autostage.search import ray_internals

    def probe() -> None:
        from ray.train._internal.session import _TrainSession, get_session
        from ray.train._internal.storage import StorageContext

        assert get_session() is None, "get_session() is None outside a trial"
        names = {name for f in vars(_TrainSession).values() if inspect.isfunction(f)
                 for name in f.__code__.co_names}
        assert {"iteration", "storage"} <= names, "session.iteration and session.storage"
        assert "current_checkpoint_index" in parameters(StorageContext), \
            "StorageContext.current_checkpoint_index"

    still_has("ray", "ray.train._internal.session.get_session and its report counts",
              RAY_ADAPTER, probe)
    ray_internals.checkpoint_rewinder()()  # outside a trial: nothing to rewind, no error


@pytest.mark.slow
def test_ray_train_still_keeps_a_workers_exception():
    from autostage.search import ray_internals

    def probe() -> None:
        from ray.train.v2._internal.exceptions import (
            UserExceptionWithTraceback,
            WorkerHealthCheckFailedError,
        )

        raised = ValueError("in a worker")
        assert ray_internals.worker_exception(
            UserExceptionWithTraceback(raised, "Traceback ...")) is raised, "its _base_exc"
        assert not ray_internals.worker_died(raised)
        assert ray_internals.worker_died(WorkerHealthCheckFailedError("died", raised)), \
            "WorkerHealthCheckFailedError(message, failure)"

    still_has("ray", "ray.train.v2._internal.exceptions' worker failures as used",
              RAY_ADAPTER, probe)


@pytest.mark.slow
def test_ray_still_counts_a_machines_cpus():
    def probe() -> None:
        from ray._private.utils import get_num_cpus

        assert get_num_cpus() > 0, "a positive count"

    still_has("ray", "ray._private.utils.get_num_cpus", RAY_ADAPTER, probe)


@pytest.mark.slow
def test_ray_still_resolves_an_auto_address(monkeypatch):
    from autostage.search import ray_internals

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")

    def probe() -> None:
        from ray._private.services import canonicalize_bootstrap_address_or_die

        # (a loopback address comes back as this machine's)
        assert canonicalize_bootstrap_address_or_die("auto").endswith(":6379"), \
            "RAY_ADDRESS resolved"

    still_has("ray", "ray._private.services.canonicalize_bootstrap_address_or_die",
              RAY_ADAPTER, probe)
    assert ray_internals.auto_address().endswith(":6379")


@pytest.mark.slow
def test_median_never_yields_continues_where_ray_would_pause():
    """The public replacement of a private hook (`_on_insufficient_samples`): with too few
    other trials, Ray's rule PAUSEs while trials wait; this one CONTINUEs."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import MedianStoppingRule, TrialScheduler

    from autostage_plugins.ray_trial_schedulers import MedianNeverYields

    class Added:  # a trial as the rule sees it (hashable: it keys its results by trial)
        trial_id = "t0"

    waiting = SimpleNamespace(status=Trial.PENDING)
    controller = SimpleNamespace(get_live_trials=lambda: [waiting])
    result = {"t": 5, "m": 1.0}
    for rule, expected in ((MedianStoppingRule, TrialScheduler.PAUSE),
                           (MedianNeverYields, TrialScheduler.CONTINUE)):
        scheduler = rule(metric="m", mode="min", time_attr="t", grace_period=1,
                         min_samples_required=3, hard_stop=True)
        trial = Added()
        scheduler.on_trial_add(controller, trial)
        assert scheduler.on_trial_result(controller, trial, result) == expected, rule.__name__
    with pytest.raises(ValueError, match="stops trials hard"):
        MedianNeverYields(metric="m", mode="min", hard_stop=False)


# --- the guard (fast: reads the source) -------------------------------------------------------

ADAPTERS = {RAY_ADAPTER, OPTUNA_ADAPTER}
# Ray's and Optuna's private names autostage has used: read as attributes or defined as
# overrides anywhere else, they are a reach-in the adapters should hold
KNOWN = {"_ot_study", "_ot_trials", "_completed_trials", "_trial_info", "_brackets",
         "_counter", "_trial_id", "_study_id", "_storage", "_internal_kv_get",
         "_internal_kv_put", "_internal_kv_del", "_contains", "_thread_lock",
         "_on_insufficient_samples", "_private", "_internal", "_raylet"}
KNOWN_TEXT = {"fixed_params", "_thread_lock"}  # as string keys (a system attribute's name)
# Call sites the lead switches to the adapters in the same step (the TrialIdentity and
# lifecycle work): remove a file once it no longer reaches in.
NOT_YET_SWITCHED: set[str] = set()


def _private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in ("ray", "optuna") and any(p.startswith("_") for p in parts[1:])


def reach_ins(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for each use of a Ray or Optuna private name in a module's syntax."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _private_module(alias.name):
                    yield node.lineno, f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if _private_module(node.module):
                yield node.lineno, f"from {node.module} import ..."
            elif node.module.split(".")[0] in ("ray", "optuna"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        yield node.lineno, f"from {node.module} import {alias.name}"
        elif isinstance(node, ast.Attribute) and node.attr in KNOWN:
            yield node.lineno, f".{node.attr}"
        elif isinstance(node, ast.ClassDef):  # a method overriding a private hook
            for method in node.body:
                if isinstance(method, ast.FunctionDef) and method.name in KNOWN:
                    yield method.lineno, f"def {method.name}"
        elif isinstance(node, ast.Constant) and node.value in KNOWN_TEXT:
            yield node.lineno, repr(node.value)


def test_the_guard_sees_each_kind_of_reach_in():
    tree = ast.parse("import ray._private.utils\n"
                     "from ray.train._internal.session import get_session\n"
                     "from ray.experimental.internal_kv import _internal_kv_get\n"
                     "x = searcher._ot_study\n"
                     "class S:\n    def _on_insufficient_samples(self): ...\n"
                     "y = trial.system_attrs['fixed_params']\n"
                     "from ray.tune.search.optuna import OptunaSearch\n"
                     "z = self._own_thing\n"
                     "def _contains(): ...\n")
    assert sorted(line for line, _ in reach_ins(tree)) == [1, 2, 3, 4, 6, 7]


def test_no_module_outside_the_adapters_uses_a_private_name_of_ray_or_optuna():
    found, clean = [], []
    for path in sorted([*(REPO / "autostage").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]):
        name = path.relative_to(REPO).as_posix()
        if name in ADAPTERS:
            continue
        uses = [f"{name}:{line}: {what}" for line, what in reach_ins(ast.parse(path.read_text()))]
        if name in NOT_YET_SWITCHED:
            clean += [] if uses else [name]
        else:
            found += uses
    assert found == [], ("Ray or Optuna private names outside the adapters: move each into "
                         f"{RAY_ADAPTER} or {OPTUNA_ADAPTER}, with why no public API serves "
                         "and a test here")
    assert clean == [], "no private name left in these: remove them from NOT_YET_SWITCHED"
