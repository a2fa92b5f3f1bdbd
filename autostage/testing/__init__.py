"""Testing helpers for plugin authors (needs pytest): the toy trainer (a millisecond FAKE),
tiny trials on it, a trainer run with scripted curves, scripted histories for stage policies,
and contract suites to inherit — one fixture (`component`) buys a battery of checks:

    import pytest
    from autostage.testing import StagePolicyContract

    class TestMyPolicy(StagePolicyContract):
        @pytest.fixture
        def component(self):
            return MyPolicy(patience=3)

The built-ins pass every suite; see docs/plugins.md.
"""

try:
    import pytest  # noqa: F401  (the contract suites are pytest classes)
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("autostage.testing needs pytest: pip install 'autostage[testing]'") \
        from None

from autostage.testing.contracts import (
    ComponentContract,
    InitContract,
    LRScheduleContract,
    OptimizerContract,
    SamplerContract,
    SearchableContract,
    TrialSchedulerContract,
)
from autostage.testing.fakes import (
    TOY_DATA,
    TOY_STAGES,
    CurveRun,
    builtin,
    run_toy_trial,
    stage_plan,
    tiny_model,
    toy_setup,
    trial_plan,
)
from autostage.testing.histories import decisions, replay, script
from autostage.testing.policy_contract import StagePolicyContract, decision_problem
from autostage.testing.trainer_contract import TrainerContract
from autostage.toy import Toy, ToyRun, ToyTask

__all__ = [
    "TOY_DATA", "TOY_STAGES", "ComponentContract", "CurveRun", "InitContract",
    "LRScheduleContract", "OptimizerContract", "SamplerContract", "SearchableContract",
    "StagePolicyContract", "Toy", "ToyRun", "ToyTask", "TrainerContract",
    "TrialSchedulerContract", "builtin", "decision_problem", "decisions", "replay",
    "run_toy_trial", "script", "stage_plan", "tiny_model", "toy_setup", "trial_plan",
]
