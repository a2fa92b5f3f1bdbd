"""Every built-in passes the contract suite of its kind (autostage.testing): the same suites
a third-party plugin's tests inherit."""

from __future__ import annotations

from typing import Any

import pytest

from autostage.components import TrialSetup
from autostage.host import load_registry
from autostage.testing import (
    ComponentContract,
    InitContract,
    LRScheduleContract,
    OptimizerContract,
    SamplerContract,
    StagePolicyContract,
    TrainerContract,
    TrialSchedulerContract,
    toy_setup,
)
from autostage_plugins.inits import Default

REGISTRY = load_registry()

# Settings for built-ins with required fields (constructing one reads no file).
SETTINGS = {
    ("dataset", "text"): {"path": "corpus.txt"},
    ("dataset", "jsonl"): {"path": "rows.jsonl"},
    ("dataset", "csv"): {"path": "rows.csv"},
    ("dataset", "hf"): {"name": "imdb"},
}


def builtins(kind: str) -> list[str]:
    """Names the built-in plugins register (third-party plugins installed beside them are
    their authors' to test)."""
    return sorted(name for name, entry in REGISTRY.entries[kind].items()
                  if REGISTRY.host.info[entry.plugin].builtin)


# Built-ins whose contract tests train with torch (the transformers trainer; optuna's GP
# sampler fits a torch model): in the slow lane only.
SLOW = {("trainer", "transformers"), ("sampler", "gp")}


def params(kind: str) -> list[Any]:
    """`builtins(kind)` as fixture params, the SLOW ones marked slow."""
    return [pytest.param(name, marks=pytest.mark.slow) if (kind, name) in SLOW else name
            for name in builtins(kind)]


def every_builtin(kind: str) -> Any:
    """A `component` fixture that is each built-in of `kind` in turn, with default fields."""

    @pytest.fixture(params=params(kind))
    def component(self, request):
        return REGISTRY.create(kind, request.param, SETTINGS.get((kind, request.param), {}))

    return component


def test_the_catalogue_is_complete():
    expected = {
        "optimizer": ["adafactor", "adagrad", "adam", "adamw", "lion", "rmsprop", "sgd"],
        "lr_schedule": ["constant", "cosine", "exponential", "inverse_sqrt", "linear",
                        "one_cycle", "step", "wsd"],
        "stage_policy": ["bandit", "budget_split", "fixed", "plateau", "rewind"],
        "init": ["default", "kaiming", "normal", "scaled_residual", "xavier_uniform"],
    }
    assert {kind: builtins(kind) for kind in expected} == expected


class TestOptimizers(OptimizerContract):
    component = every_builtin("optimizer")


class TestLRSchedules(LRScheduleContract):
    component = every_builtin("lr_schedule")


class TestStagePolicies(StagePolicyContract):
    component = every_builtin("stage_policy")


class TestInits(InitContract):
    component = every_builtin("init")

    @pytest.fixture
    def changes_parameters(self, component):
        return not isinstance(component, Default)


def tiny_gpt2() -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                      n_positions=32))


@pytest.mark.slow
class TestInitsOnGPT2(TestInits):
    """The same suite on transformers' GPT-2 (Conv1D layers, a tied output head)."""

    @pytest.fixture
    def model_factory(self):
        return tiny_gpt2


class TestSamplers(SamplerContract):
    component = every_builtin("sampler")


class TestTrialSchedulers(TrialSchedulerContract):
    component = every_builtin("trial_scheduler")


class TestDatasets(ComponentContract):
    component = every_builtin("dataset")


def transformers_case() -> tuple[dict, TrialSetup, int]:
    from autostage_plugins.datasets import Arith

    # small data (tokenized at every start) and 4 steps of 8 x 32 tokens per training call
    model = {"n_layer": 1, "n_embd": 32, "n_head": 2, "context": 32, "batch_size": 8,
             "eval_batches": 2}
    data = {"prereq": Arith(digits=1, train_size=500), "target": Arith(digits=2, train_size=500)}
    setup = TrialSetup(seed=0, data=data, init=Default(),
                       objectives=dict.fromkeys(data, "causal_lm"))
    return model, setup, 1024


# trainer -> (its settings, a setup with data it reads, tokens per training call). The toy's
# eval noise is off: the contract needs evaluation to be a function of the weights.
TRAINER_CASES = {
    "toy": lambda: ({"noise": 0.0}, toy_setup(seed=0), 4096),
    "transformers": transformers_case,
}


class TestTrainers(TrainerContract):
    @pytest.fixture(params=params("trainer"))
    def case(self, request):
        assert request.param in TRAINER_CASES, (
            f"add a contract case for the built-in trainer '{request.param}' to TRAINER_CASES")
        settings, setup, tokens = TRAINER_CASES[request.param]()
        return REGISTRY.create("trainer", request.param, settings), setup, tokens

    @pytest.fixture
    def component(self, case):
        return case[0]

    @pytest.fixture
    def setup(self, case):
        return case[1]

    @pytest.fixture
    def train_tokens(self, case):
        return case[2]
