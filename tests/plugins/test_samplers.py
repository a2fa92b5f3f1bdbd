"""The built-in samplers' random start-up fits the study: a sampler choice matters within it."""

import math
import warnings

import pytest
from support import STUDIES

from autostage.components import startup_trials


def drawn(registry, sampler, trials, settings=None):
    """The parameters `sampler` draws over the quickstart-toy study's space, one trial after
    another, each told a value that prefers an LR near 3e-3."""
    import optuna

    from autostage import load_study
    from autostage.space import compile_space, suggest

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = compile_space(load_study(STUDIES / "quickstart-toy.toml", registry, []), registry)
    built = registry.create("sampler", sampler, settings or {}).sized(trials).build(seed=0)
    study = optuna.create_study(sampler=built)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(trials):
            trial = study.ask()
            suggest(space, trial)
            lr = next(v for k, v in trial.params.items() if k.endswith(".lr"))
            study.tell(trial, (math.log10(lr) + 2.5) ** 2)
            out.append(dict(trial.params))
    return out


@pytest.mark.parametrize("trials", [12, 16])
@pytest.mark.parametrize("sampler", ["tpe", "cmaes"])
def test_a_sampler_parts_from_random_search_after_its_start_up_trials(registry, sampler,
                                                                      trials):
    # Optuna's default of 10 start-up trials made tpe draw random's configurations for most
    # of a 12-16-trial study; sized to the study, it models the results from a quarter on
    startup = startup_trials(trials)
    assert startup == trials // 4
    ours, random = drawn(registry, sampler, trials), drawn(registry, "random", trials)
    assert ours[:startup] == random[:startup]  # the same seeded start-up draws
    assert ours[startup] != random[startup]


def test_a_start_up_count_the_study_sets_is_kept(registry):
    tpe = registry.create("sampler", "tpe", {"n_startup_trials": 7})
    assert tpe.sized(100).n_startup_trials == 7
    assert registry.create("sampler", "gp", {}).sized(100).n_startup_trials == 10
    assert registry.create("sampler", "gp", {}).sized(4).n_startup_trials == 2
    random = registry.create("sampler", "random", {})
    assert random.sized(12) is random  # nothing to size
