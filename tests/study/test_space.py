"""The compiled search space: define-by-run, conditional fields, decoding, stage plans."""

import functools
import pickle

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from support.studies import toy_study

from autostage.check import load_study
from autostage.space import compile_space, decode, stage_plans, suggest
from autostage.spec import PlanSection, StageSection

STUDY = toy_study(
    "study.name=space",
    "stage.prereq.tokens=1000", "stage.prereq.optimizer=sgd",
    "stage.target.data={ target = 1.0, prereq = { low = 0.0, high = 1.0 } }",
    "stage.target.tokens=1000",
    'search.plan.skip=["prereq"]',
    "search.optimizer.adamw.lr={ low = 1e-4, high = 1e-2, log = true }",
    "search.optimizer.adamw.beta2=[0.95, 0.98]",
    "search.optimizer.sgd.lr={ low = 1, high = 3 }",
    "search.lr_schedule.constant={}",
    "search.lr_schedule.wsd.decay={ low = 0.1, high = 0.3 }",
    "search.stage_policy.plateau.patience={ low = 1, high = 4 }",
    "search.stage_policy.plateau.factor=0.5",
    drop=("study.trials", "study.parallel", "study.trial_scheduler",
          "data.target.prerequisite"))


@pytest.fixture
def space(tmp_path, registry):
    path = tmp_path / "space.toml"
    path.write_text(STUDY)
    return compile_space(load_study(path, registry), registry)


def sampled(space, n=40):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(n):
        trial = study.ask()
        constants = suggest(space, trial)
        study.tell(trial, 0.0)
        out.append((trial, {**trial.params, **constants}))
    return out


def test_component_fields_are_sampled_only_with_their_component(space):
    for trial, config in sampled(space):
        wsd = any(k.startswith("lr_schedule.wsd.") for k in trial.params)
        assert wsd == (config["lr_schedule"] == "wsd")
        adamw = any(k.startswith("optimizer.adamw.") for k in trial.params)
        assert adamw == (config["optimizer"] == "adamw")


def test_a_component_pinned_by_a_stage_is_always_sampled(space):
    # stage "prereq" pins sgd, so sgd's lr is needed whichever optimizer is chosen
    assert all("optimizer.sgd.lr" in trial.params for trial, _ in sampled(space))


def test_int_or_float_follows_the_field_type_not_the_range_ends(space):
    trial, _ = next((t, c) for t, c in sampled(space) if "optimizer.sgd.lr" in t.params)
    assert isinstance(trial.distributions["optimizer.sgd.lr"], FloatDistribution)  # {1, 3}
    assert isinstance(trial.distributions["stage_policy.plateau.patience"], IntDistribution)


def test_fixed_values_and_single_choices_are_constants_not_parameters(space):
    trial, config = sampled(space, 1)[0]
    assert "stage_policy.plateau.factor" not in trial.params
    assert config["stage_policy.plateau.factor"] == 0.5
    assert config["stage_policy"] == "plateau" and "stage_policy" not in trial.params


def test_compiled_space_and_define_by_run_function_pickle(space):
    assert pickle.loads(pickle.dumps(space)) == space
    fn = pickle.loads(pickle.dumps(functools.partial(suggest, space)))
    trial = optuna.create_study().ask()
    constants = fn(trial)  # still samples after the round trip
    assert {"plan.order", "optimizer", "lr_schedule"} <= set(trial.params)
    assert constants["stage_policy"] == "plateau"


def test_decode_gives_components_settings_plan_and_normalised_mixture(space):
    for _, config in sampled(space, 10):
        tc = decode(space, config)
        assert tc.choice["optimizer"] == config["optimizer"]
        assert tc.settings_of("optimizer", "sgd") == {"lr": config["optimizer.sgd.lr"]}
        assert tc.plan in (("prereq", "target"), ("target",))
        mix = tc.mix["target"]
        assert abs(sum(mix.values()) - 1.0) < 1e-9
        assert mix["target"] == pytest.approx(1.0 / (1.0 + config["mix.target.prereq"]))


def stages(*names, final=None):
    return [StageSection(name=n, data=n, tokens=10, final=(n == final)) for n in names]


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (PlanSection(), {"a>b>f"}),
        (PlanSection(reorder=["a", "b"]), {"a>b>f", "b>a>f"}),
        (PlanSection(skip=["a"]), {"a>b>f", "b>f"}),
        (PlanSection(skip=["a", "b"]), {"a>b>f", "a>f", "b>f", "f"}),
        (PlanSection(reorder=["a", "b"], repeat={"a": 2}), {"a>b>f", "b>a>f", "a>b>a>f"}),
    ],
)
def test_stage_plans(plan, expected):
    plans = stage_plans(stages("a", "b", "f", final="f"), plan)
    assert {">".join(p) for p in plans} == expected
    assert ">".join(plans[0]) == "a>b>f"  # the declared order comes first
    assert len(plans) == len(set(plans))
