"""Testing helpers for plugin authors (needs pytest): contract suites to inherit — one
fixture (`component`) buys a battery of checks —, the toy trainer (a millisecond FAKE), tiny
trials on it, a trainer run with scripted curves, and scripted histories for stage policies:

    import pytest
    from autostage.testing import StagePolicyContract

    class TestMyPolicy(StagePolicyContract):
        @pytest.fixture
        def component(self):
            return MyPolicy(patience=3)

Contract suites (pytest classes; fixtures in parentheses, optional ones after a `;`):
`OptimizerContract`, `LRScheduleContract`, `StagePolicyContract`, `SamplerContract`,
`TrialSchedulerContract` (component); `BrancherContract` (component: a trial scheduler
whose `branching()` gives a brancher; others skip it); `InitContract` (component; model_factory,
changes_parameters); `TrainerContract` (component, setup; train_tokens); `DatasetContract`
(component; preflight_context) for any data source and `TextDatasetContract` (component;
preflight_context, disjoint_splits) for a `TextDataset`; `TrackerContract` (component;
read_back: the run directory -> `{trial: Logged}` read with the tracker's own reader); all
include `ComponentContract`.

Helpers (each documented where it is defined):

    decisions(policy, values, *, stage="target", **script_kw) -> list[Decision]
    replay(policy, segments, **script_kw) -> list[tuple[History, Decision]]
    script(segments, *, every=1000, mode="min", final=True, seed=0) -> list[History]
    decision_problem(policy, history, decision) -> str | None
    run_toy_trial(policy=None, *, optimizer=None, lr_schedule=None, seed=0, order=None,
                  trainer=None, report=None) -> TrialResult
    trial_plan(policy, stages, *, every=None, seed=0, order=None, optimizer=None,
               lr_schedule=None, final=True) -> TrialPlan
    stage_plan(name, tokens, *, every=None, final=False, ...) -> StageVisit
    toy_setup(seed=0, data=None) -> TrialSetup
    CurveRun(curve, metric="loss")            a TrainerRun whose eval losses you script
    tiny_model(n_layer=2, width=16, vocab=32) -> torch.nn.Module
    builtin(kind, name, **fields) -> Component
    TOY_DATA, TOY_STAGES                      the toy curriculum run_toy_trial runs

The built-ins pass every suite; see docs/plugins.md, "Testing a plugin".
"""

try:
    import pytest  # noqa: F401  (the contract suites are pytest classes)
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("autostage.testing needs pytest: pip install 'autostage[testing]'") \
        from None

from autostage.testing.brancher_contract import BrancherContract, made_up_points
from autostage.testing.contracts import (
    ComponentContract,
    InitContract,
    LRScheduleContract,
    OptimizerContract,
    SamplerContract,
    SearchableContract,
    TrialSchedulerContract,
)
from autostage.testing.dataset_contract import DatasetContract, TextDatasetContract
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
from autostage.testing.tracker_contract import Logged, TrackerContract
from autostage.testing.trainer_contract import TrainerContract
from autostage.toy import Toy, ToyRun, ToyTask

__all__ = [
    "TOY_DATA", "TOY_STAGES", "BrancherContract", "ComponentContract", "CurveRun",
    "DatasetContract", "InitContract", "LRScheduleContract", "Logged", "OptimizerContract",
    "SamplerContract", "SearchableContract", "StagePolicyContract", "TextDatasetContract", "Toy",
    "ToyRun", "ToyTask", "TrackerContract", "TrainerContract", "TrialSchedulerContract",
    "builtin",
    "decision_problem", "decisions", "made_up_points", "replay", "run_toy_trial", "script",
    "stage_plan", "tiny_model", "toy_setup", "trial_plan",
]
