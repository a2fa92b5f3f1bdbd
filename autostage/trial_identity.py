"""Who a trial of a search is, in one place (as Optuna's `FrozenTrial` is for Optuna): its
Optuna trial number, its parameters, where it branched from (or None), the seed it trains
with, and the tokens it is charged.

The searcher makes one from an Optuna trial; it travels to the Ray worker as the trial's
config (`to_config`: the only keys that dict has) and back to the driver with each of Ray's
trial events (`from_config`); storage makes one from an Optuna trial on --resume. The seed
rule and the charged-tokens rule live here and nowhere else. Pure: no Ray, no Optuna import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autostage.keys import BRANCH_ATTR
from autostage.records import Branch, charged_tokens, prefix_tokens

# The keys of a trial's Ray config: the number and the branch point travel beside the
# parameters, never among them (a parameter key is `<kind>.<name>.<field>`).
NUMBER, PARAMS, BRANCH = "trial_number", "params", "branch"


@dataclass(frozen=True)
class TrialIdentity:
    number: int  # the Optuna trial number: the trial's name in records, reports, the CLI
    params: Mapping[str, Any] = field(default_factory=dict)  # sampled, and fixed by a branch
    seed: int = 0  # what its trainer is seeded with (`of` applies the rule)
    branch: Branch | None = None  # where it started; None: a fresh trial

    @classmethod
    def of(cls, number: int, params: Mapping[str, Any], study_seed: int,
           branch: Branch | None = None) -> TrialIdentity:
        """Trial `number` of a study seeded `study_seed`. It trains with `study_seed + number`;
        a branch with its lineage root's seed, so its data goes on where its parent's would
        have, and a replay of the lineage (`autostage best --export`) draws the same batches."""
        if branch is not None and branch.seed is not None:
            seed = branch.seed
        else:
            seed = study_seed + number
        return cls(number, dict(params), seed, branch)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], study_seed: int) -> TrialIdentity:
        """The trial a Ray config (`to_config`) names."""
        data = config.get(BRANCH)
        return cls.of(int(config[NUMBER]), config.get(PARAMS) or {}, study_seed,
                      Branch.from_json(data) if data else None)

    @classmethod
    def from_optuna(cls, trial: Any, study_seed: int,
                    params: Mapping[str, Any] | None = None) -> TrialIdentity:
        """The trial an Optuna (frozen) trial is: its number, `params` (default: its own) and
        the branch point its user attribute names."""
        data = trial.user_attrs.get(BRANCH_ATTR)
        return cls.of(trial.number, trial.params if params is None else params, study_seed,
                      Branch.from_json(data) if data else None)

    def to_config(self) -> dict[str, Any]:
        """What the Ray worker gets: plain, picklable data."""
        config: dict[str, Any] = {NUMBER: self.number, PARAMS: dict(self.params)}
        if self.branch is not None:
            config[BRANCH] = self.branch.to_json()
        return config

    @property
    def prefix_tokens(self) -> int:
        """Tokens its lineage trained before it started (`records.prefix_tokens`)."""
        return prefix_tokens(self.branch)

    @property
    def prefix_evals(self) -> int:
        """Evals its lineage recorded before it started (its parent's, up to the point)."""
        return self.branch.evals if self.branch is not None else 0

    def charged(self, lineage_tokens: int) -> int:
        """The tokens it is charged when its lineage has trained `lineage_tokens`: what it
        trained itself (`records.charged_tokens`)."""
        return charged_tokens(lineage_tokens, self.branch)
