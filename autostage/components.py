"""The kinds of component a plugin registers, and the base class of each.

A component is a small pydantic model: its fields are its hyperparameters (type, default and
bounds in one declaration, which the study check, the search space and the report all read),
and one method does its work. Components are immutable; per-trial state lives elsewhere.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from autostage.errors import AutostageError, Problem
from autostage.fields import LocalPath, PathOrName  # noqa: F401  (for plugins' path fields)
from autostage.kinds import TABLE

if TYPE_CHECKING:  # heavy imports only for type checkers
    from pathlib import Path

    from autostage.branching import Brancher
    from autostage.decisions import Decision, History
    from autostage.records import Branch, EvalRecord, TrialRecord
    from autostage.spec import Study


class Component(BaseModel):
    """A named piece of a study that a plugin registers; fields are hyperparameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""


@dataclass(frozen=True)
class PreflightContext:
    """What a data source's or trainer's `preflight` may look at besides its own fields: the
    rest of the study, as far as it is known before any trial."""

    #: every data source the study defines, by name (also those whose table has problems)
    sources: tuple[str, ...] = ()
    #: data source name -> its configured dataset (those whose settings are valid)
    data: Mapping[str, Dataset] = field(default_factory=dict)
    #: the study's configured trainer (None when its settings are not valid)
    trainer: Trainer | None = None
    #: data source -> the objective it is evaluated with (that of the stage training on it)
    objectives: Mapping[str, str] = field(default_factory=dict)


class _Preflighted(Component):
    """A component with a `preflight`: the data sources and the trainer."""

    def preflight(self, context: PreflightContext) -> list[Problem | str]:
        """What would stop a trial before it trains — a missing file, a text too short for
        its settings, a device that is not there —, found cheaply: stat files, read a header
        (or a corpus that is read whole anyway), but build no model, tokenize nothing, use
        no network.

        `autostage validate` (and `search`, before it starts) calls it for every data source
        and the trainer and reports every problem, exit 2; every trial calls it again as it
        starts and fails with the first one (a file deleted since). Return `Problem(field,
        message)`s, `field` the field of this component's own table at fault ("" for the
        table; autostage prefixes `data.<name>.` or `model.`), or plain strings (the table);
        an empty list when all is well (the default)."""
        return []


class Optimizer(Component):
    """Builds a torch optimizer. Every optimizer has a peak learning rate `lr`."""

    kind: ClassVar[str] = "optimizer"
    lr: float = Field(1e-3, gt=0, le=10, description="peak learning rate")

    @abstractmethod
    def build(self, params: Any) -> Any:
        """Return a `torch.optim.Optimizer` over `params` (an iterable of tensors or groups)."""


class LRSchedule(Component):
    """A learning-rate multiplier over one stage, a pure function of progress."""

    kind: ClassVar[str] = "lr_schedule"

    @abstractmethod
    def multiplier(self, done: int, total: int) -> float:
        """Multiplier of the peak LR after `done` of `total` units (tokens) of the stage."""


class StagePolicy(Component):
    """Decides inside a trial, after every eval, what happens next.

    `decide` is a pure function of the history (and the policy's fields): a trial can be
    checkpointed, resumed or cloned at any eval without saving policy state.
    """

    kind: ClassVar[str] = "stage_policy"
    #: True when the policy may return Rewind: the trial loop then keeps the best snapshot.
    rewinds: ClassVar[bool] = False

    @abstractmethod
    def decide(self, history: History) -> Decision:
        """Return Continue, ScaleLR, Advance, Rewind or Stop for the latest eval."""


class Init(Component):
    """Initialises a freshly built model's weights."""

    kind: ClassVar[str] = "init"

    @abstractmethod
    def apply(self, model: Any) -> None:
        """Initialise `model` (a torch module) in place."""


class Dataset(_Preflighted):
    """A data source: what it yields is a contract with the trainers that read it.

    Its fields come from the study's `[data.<name>]` table (minus `dataset`).
    """

    kind: ClassVar[str] = "dataset"


@dataclass(frozen=True)
class Example:
    """One text example. For language modelling only `text` is scored (a `prompt` before it is
    context, e.g. "00417+03905="); for classification `label` is the class: a name ("comedy",
    as a csv or jsonl file gives it), which the trainer numbers through one label vocabulary
    per study (the sorted names of its training data), or a class id (int) used as it is; for
    regression it is the target, a number (a float, or a name that reads as one: "3.5")."""

    text: str
    label: int | float | str | None = None
    prompt: str = ""


#: The splits a trainer asks a TextDataset for: "train", what it trains on, and "val", the
#: held-out examples every eval scores.
SPLITS: tuple[str, ...] = ("train", "val")


def check_split(split: str) -> str:
    """`split` when it is one of `SPLITS`; else a ValueError naming it. Call it first thing in
    `TextDataset.examples`, so a misspelt split is never quietly read as another one."""
    if split not in SPLITS:
        raise ValueError(f"no split {split!r}: a TextDataset's splits are "
                         f"{' and '.join(map(repr, SPLITS))}")
    return split


class TextDataset(Dataset):
    """A dataset of text examples, deterministic given a seed: what real trainers read (the
    transformers trainer, through `read_examples`).

    The contract (`autostage.testing.TextDatasetContract` checks it):

    - `examples(split, seed)` returns a non-empty list of `Example`s for each of `SPLITS`,
      "train" and "val", and raises ValueError naming any other split (`check_split`);
    - the same (split, seed) gives the same list, in any process (seed `random.Random` with
      ints or strings, never with `hash()`);
    - "val" does not depend on the seed: every trial of a study is judged on the same
      held-out examples; and no val example is also a train example;
    - labels are on every example of a split or on none; names (str) or class ids (int),
      not both;
    - what `examples` would trip on (a missing file, too little text) `preflight` finds
      first, so `autostage validate` reports it.
    """

    @abstractmethod
    def examples(self, split: str, seed: int) -> Sequence[Example]:
        """The examples of `split` ("train" or "val"): a non-empty list of `Example`s, the same
        for the same seed; "val" the same for every seed. Another split: ValueError."""


def read_examples(dataset: TextDataset, split: str, seed: int, source: str = ""
                  ) -> list[Example]:
    """`dataset.examples(split, seed)`, checked where a trainer first reads it: a non-empty
    list (or tuple) of `Example`s whose `text` and `prompt` are strings and whose `label` is
    None, an int, a float or a str. Anything else — strings instead of Examples, a generator, an
    empty split — is an AutostageError naming the data source (`source`), the dataset's
    class, the split and the first wrong item, instead of an AttributeError deep in
    training."""
    where = f"data source {source!r} (dataset {type(dataset).__name__}, {split} split)" \
        if source else f"dataset {type(dataset).__name__} ({split} split)"
    got = dataset.examples(split, seed)
    if not isinstance(got, list | tuple):
        raise AutostageError(f"{where}: examples() returned {_shown(got)}, not a list of "
                             "autostage.components.Example")
    if not got:
        raise AutostageError(f"{where}: examples() returned no examples; every split needs "
                             "at least one (train to learn from, val to evaluate)")
    for i, example in enumerate(got):
        if (problem := _example_problem(example)) is not None:
            raise AutostageError(f"{where}: examples() item {i} {problem}")
    return list(got)


_EXAMPLE = 'Example(text, label=None, prompt="") from autostage.components'


def _example_problem(example: object) -> str | None:
    """What is wrong with one item `examples()` returned, or None."""
    if not isinstance(example, Example):
        return f"is {_shown(example)}, not an Example: return {_EXAMPLE}"
    if not isinstance(example.text, str):
        return f"has a text that is {_shown(example.text)}, not a str"
    if not isinstance(example.prompt, str):
        return f"has a prompt that is {_shown(example.prompt)}, not a str"
    label = example.label
    if label is not None and (isinstance(label, bool) or not isinstance(label, int | float | str)):
        return (f"has a label that is {_shown(label)}: give None, a class name (str), a "
                "class id (int) or a regression target (float)")
    return None


def _shown(value: object) -> str:
    """A value for an error message: its type and a short repr."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__} ({text})"


class Sampler(Component):
    """Builds an Optuna sampler: decides across trials what to try next."""

    kind: ClassVar[str] = "sampler"
    #: True when the sampler handles several objectives at once.
    multi_objective: ClassVar[bool] = False

    @abstractmethod
    def build(self, seed: int) -> Any:
        """Return an `optuna.samplers.BaseSampler` seeded with `seed`."""

    def sized(self, trials: int) -> Sampler:
        """This sampler for a study of `trials` trials: a field `n_startup_trials` the study
        left unset (None) becomes `startup_trials(trials)`. A search builds its sampler
        from this; a sampler with no such field is returned as it is."""
        if "n_startup_trials" in type(self).model_fields and self.n_startup_trials is None:
            return self.model_copy(update={"n_startup_trials": startup_trials(trials)})
        return self


def startup_trials(trials: int) -> int:
    """Random start-up trials for a study of `trials`: a quarter of them, 2 to 10. Optuna's
    own default, 10, is most of a 12-16-trial study: TPE, GP and random would draw the same
    configurations until the study is nearly over."""
    return max(2, min(10, trials // 4))


class TrialScheduler(Component):
    """Builds a Ray Tune trial scheduler: decides across trials whom to stop early."""

    kind: ClassVar[str] = "trial_scheduler"

    def branching(self, metric: str, mode: str) -> Brancher | None:
        """None (the default): every trial starts from scratch. An
        `autostage.branching.Brancher` (ranking by `metric`, better by `mode`): trials take
        checkpoints at every eval of the final stage too, and it decides which one each new
        trial branches from. Called once per search session."""
        return None

    @abstractmethod
    def build(self, metric: str, mode: str, time_attr: str, max_t: int) -> Any:
        """Return a `ray.tune.schedulers.TrialScheduler` on `metric`.

        Time is counted by the reported field `time_attr` (evals or tokens so rungs fall at
        evaluations); `max_t` is the most any trial can reach.
        """


class TrackerRun(Protocol):
    """A tracker started for one search session (`Tracker.start`). The search's driver calls
    it — never a trial's worker, so only the driver needs to reach a tracking server — as
    trials start, evaluate and end, in that order per trial; trials interleave. A call that
    raises is one line in the search's output naming the plugin, and the search goes on."""

    def trial_started(self, number: int, params: Mapping[str, Any],
                      branch: Branch | None) -> None:
        """Trial `number` started with the sampled `params` (`<kind>.<name>.<field>` keys,
        `plan.order`, ...). `branch`: where a branched trial started (`branch.parent` is its
        parent's number, `branch.tokens` the branch point), None for a fresh trial. A trial
        a resumed search runs again is started again."""

    def eval(self, number: int, record: EvalRecord) -> None:
        """An eval of trial `number`, in order: `record.eval` has its stage and visit, its
        `tokens` (the lineage's: the step to log at), lr, metrics (`eval.<source>.<metric>`,
        `train.<metric>`) and the stage policy's `decision` (`record.decision_label`)."""

    def trial_ended(self, record: TrialRecord, model: Path | None) -> None:
        """Trial `record.number` ended: its status, reason, values and charged tokens.
        `model`: the folder of the model its trainer exported when it is among those the
        search keeps (`study.keep_models`) as the trial ends, else None; the search may
        remove it once better trials end, so copy it now."""

    def close(self) -> None:
        """The search session ends (done, interrupted or failed): flush and let go."""


class Tracker(Component):
    """Logs a search's trials to an experiment tracker (MLflow, TensorBoard, ...). Its fields
    are its `[study] tracker_settings.<name>` table."""

    kind: ClassVar[str] = "tracker"
    #: True when its runs keep a trial's model as an artifact
    keeps_models: ClassVar[bool] = False

    def check(self) -> list[str]:
        """What would stop it logging, found before any trial without touching the network:
        a package that is not installed (say the `pip install` line: `missing_package`), a
        setting that cannot work. `autostage validate` and `search` report each, exit 2."""
        return []

    @abstractmethod
    def start(self, run_dir: Path, study: Study) -> TrackerRun:
        """Open the tracker for a search (or --resume) of `study` into `run_dir`."""


def missing_package(module: str, install: str) -> list[str]:
    """[] when `module` can be imported (found without importing it); else the problem,
    naming what to install: `missing_package("mlflow", "pip install mlflow-skinny")`."""
    import importlib.util

    try:
        if importlib.util.find_spec(module) is not None:
            return []
    except (ImportError, ValueError):
        pass
    return [f"needs the '{module}' package, which is not installed: {install}"]


@dataclass(frozen=True)
class StageVisit:
    """One visit of a stage with its components resolved: what the trial loop runs and the
    trainer trains (a repeated stage's later visits differ only in `visit`)."""

    name: str
    objective: str
    mix: Mapping[str, float]  # data source -> weight, summing to 1
    tokens: int  # this visit's token budget
    eval_every: int
    evals: tuple[str, ...]  # data sources evaluated after every segment
    optimizer: Optimizer
    lr_schedule: LRSchedule
    watch: str = ""  # the metric a stage policy judges this stage by
    watch_mode: str = "min"  # whether `watch` is better "min" or "max"
    visit: int = 0  # how many times this stage ran before in this trial
    final: bool = False


@dataclass(frozen=True)
class TrialSetup:
    """What a trainer needs to start a trial."""

    seed: int
    data: Mapping[str, Dataset]  # data source name -> configured dataset
    init: Init
    threads: int = 0  # torch threads; 0 leaves the default
    workdir: str | None = None  # this trial's own directory
    cache_dir: str | None = None  # shared by the trials of a study (e.g. a trained tokenizer)
    #: data source -> the objective it is evaluated with (that of the stage that trains on it)
    objectives: Mapping[str, str] = field(default_factory=dict)
    #: objective -> the data sources its stages train on (e.g. what teaches a classifier)
    trains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: data parallel (`study.resources.workers`): this process is replica `rank` of
    #: `workers`, each running the same trial loop in lockstep; torch.distributed's process
    #: group is set up (by Ray Train). 1: the trial is this process alone
    workers: int = 1
    rank: int = 0


@dataclass(frozen=True)
class TrainResult:
    """What one training segment did."""

    tokens: int  # tokens actually trained (a trainer rounds to whole batches)
    metrics: Mapping[str, float] = field(default_factory=dict)  # e.g. loss, grad_norm


class TrainerRun(Protocol):
    """A trainer started for one trial. The trial loop drives it stage by stage."""

    def begin_stage(self, stage: StageVisit) -> None:
        """Called when a stage visit starts (set objective, data mix, optimizer)."""

    def train(self, tokens: int, lr: Callable[[int], float]) -> TrainResult:
        """Train about `tokens` tokens; `lr(done)` is the LR after `done` of them.

        Raise `autostage.decisions.TrialFailed` for a non-finite loss or gradient.
        """

    def evaluate(self, sources: Sequence[str]) -> dict[str, dict[str, float]]:
        """Return metrics per data source, e.g. `{"target": {"loss": 1.2}}`."""

    def snapshot(self) -> Any:
        """Return an in-memory copy of everything `restore` needs (used by Rewind)."""

    def restore(self, snapshot: Any) -> None:
        """Return to the state captured by `snapshot`."""

    def save(self, directory: str) -> None:
        """Write everything needed to continue this run into `directory` (a stage boundary
        checkpoint). Use safe formats (safetensors, JSON): never pickle."""

    def load(self, directory: str) -> None:
        """Continue from what `save` wrote (called on a freshly started run)."""

    # Optional: without it, trials are checkpointed (and branched) at stage boundaries only.
    def continue_stage(self, stage: StageVisit) -> None:
        """Like `begin_stage`, for a visit that `load` left part-way (a checkpoint taken at
        an eval inside the final stage): keep what the visit had — the optimizer's state
        when `stage.optimizer` is the kind saved, the position in the data."""

    # Optional: a run without it keeps no model (`autostage search` says so at its end).
    def export(self, directory: str) -> None:
        """Write the trial's final model into `directory` in the trainer's native shareable
        format (for transformers: what `from_pretrained` opens, with its tokenizer). Called
        once, after the last stage, for trials the study may keep (`study.keep_models`)."""


class Trainer(_Preflighted):
    """Trains and evaluates a model for a trial; its fields are the `[model]` table."""

    kind: ClassVar[str] = "trainer"
    #: objectives a stage may name with this trainer
    objectives: ClassVar[tuple[str, ...]] = ()
    #: metric names its evaluate() returns per data source
    metrics: ClassVar[tuple[str, ...]] = ("loss",)
    #: the metrics among those where higher is better (accuracy, f1); the rest are minimised
    maximize: ClassVar[tuple[str, ...]] = ()
    #: the metrics a source evaluated under each objective gets (empty: `metrics` for all)
    objective_metrics: ClassVar[dict[str, tuple[str, ...]]] = {}

    @abstractmethod
    def start(self, setup: TrialSetup) -> TrainerRun:
        """Build the model and return a running trainer for one trial."""

    def check_objectives(self, objectives: set[str]) -> list[str]:
        """Problems with training these stage objectives under these settings (e.g. a
        decoder-only model asked for masked LM); `validate` reports them before any compute."""
        return []

    def check_workers(self, workers: int) -> list[str]:
        """Problems with training one trial on `workers` data-parallel replicas
        (`study.resources.workers`, > 1) under these settings; `validate` reports them. The
        default: none can, since the run must then split batches and reduce gradients across
        replicas (docs/plugins.md, "Data-parallel trials")."""
        return [f"{type(self).__name__} trains a trial in one process: it cannot split one "
                f"across {workers} data-parallel workers; use study.resources.workers = 1"]


#: kind -> its base class, as autostage.kinds names them (this module imports kinds, never
#: the other way round).
BASES: dict[str, type[Component]] = {k.name: globals()[k.base] for k in TABLE}
