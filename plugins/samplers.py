"""Built-in Optuna samplers. Optuna is imported inside `build`, so validation stays fast."""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import Field

from autostage.components import Sampler, startup_trials
from autostage.hookspecs import hookimpl

STARTUP = ("random trials before the sampler models the results; default: a quarter of "
           "study.trials, 2 to 10 (Optuna's own default, 10, would leave a 12-trial study "
           "random nearly to its end)")
# what `build` uses where no study sized the sampler (`Sampler.sized`): a 40-trial study's
UNSIZED = startup_trials(40)


def _quiet(build):
    """Build without Optuna's ExperimentalWarning: a user chose the sampler on purpose."""

    def wrapper(self, seed: int) -> Any:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return build(self, seed)

    return wrapper


class TPE(Sampler):
    """Tree-structured Parzen estimator; the constant liar keeps parallel trials apart."""

    multi_objective = True

    n_startup_trials: int | None = Field(None, ge=0, le=1000, description=STARTUP)
    multivariate: bool = True
    constant_liar: bool = True

    @_quiet
    def build(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=_startup(self), multivariate=self.multivariate,
            constant_liar=self.constant_liar, group=self.multivariate,
        )


class Random(Sampler):
    """Independent uniform sampling: the baseline every other sampler must beat."""

    multi_objective = True

    def build(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


class CmaEs(Sampler):
    """CMA-ES over the numeric parameters (categorical ones fall back to random)."""

    n_startup_trials: int | None = Field(None, ge=0, le=1000, description=STARTUP)

    def build(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=_startup(self), warn_independent_sampling=False,
        )


class GP(Sampler):
    """Gaussian-process Bayesian optimisation: strong when trials are few and costly."""

    multi_objective = True

    n_startup_trials: int | None = Field(None, ge=0, le=1000, description=STARTUP)

    def build(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup(self))


class QMC(Sampler):
    """Quasi-Monte Carlo (Sobol): covers the space more evenly than random."""

    multi_objective = True

    @_quiet
    def build(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)


class NSGA2(Sampler):
    """NSGA-II for studies with several metrics (e.g. target loss vs tokens spent)."""

    multi_objective = True
    population_size: int = Field(16, ge=2, le=1000)

    def build(self, seed: int) -> Any:
        from autostage_plugins.optuna_fixes import NSGAIISampler

        return NSGAIISampler(seed=seed, population_size=self.population_size)


def _startup(sampler: Any) -> int:
    return UNSIZED if sampler.n_startup_trials is None else sampler.n_startup_trials


@hookimpl
def register_samplers(register):
    register("tpe", TPE)
    register("random", Random)
    register("cmaes", CmaEs)
    register("gp", GP)
    register("qmc", QMC)
    register("nsga2", NSGA2)
