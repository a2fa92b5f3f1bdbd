"""The `transformers` trainer: GPT-2 / BERT models from `transformers`, trained stage by stage
by our own lean torch loop (HF's Trainer needs `accelerate` and hides the step we steer).

Objectives: causal_lm (GPT-2), mlm (BERT), classify and regression (either). Every objective's
model shares one backbone, so weights move between stages: an MLM-pretrained encoder is the
classifier's.
`norm` picks where and how the blocks normalise, as another transformers architecture where
GPT-2's own has no switch for it (OPT for post-norm, Llama for RMSNorm): `norms`.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from autostage.components import (
    PathOrName,
    PreflightContext,
    StageVisit,
    TextDataset,
    Trainer,
    TrainResult,
    TrialSetup,
    read_examples,
)
from autostage.decisions import TrialFailed
from autostage.errors import AutostageError, Problem
from autostage.hookspecs import hookimpl
from autostage_plugins.norms import problem as norm_problem

OBJECTIVES = {"gpt2": ("causal_lm", "classify", "regression"),
              "bert": ("mlm", "classify", "regression")}
#: the objectives whose model reads one example and answers with a sequence head
SEQUENCE = ("classify", "regression")


class Transformers(Trainer):
    """A GPT-2 or BERT model sized here (or a `pretrained` directory), trained by autostage."""

    objectives = ("causal_lm", "mlm", "classify", "regression")
    metrics = ("loss", "perplexity", "accuracy", "f1", "mse", "mae", "r2", "examples")
    maximize = ("accuracy", "f1", "r2")
    objective_metrics = {"causal_lm": ("loss", "perplexity", "examples"),
                         "mlm": ("loss", "perplexity", "examples"),
                         "classify": ("loss", "accuracy", "f1", "examples"),
                         "regression": ("loss", "mse", "mae", "r2", "examples")}

    arch: Literal["gpt2", "bert"] = Field("gpt2", description="gpt2: causal_lm, classify, "
                                          "regression; bert: mlm, classify, regression "
                                          "(ignored with pretrained)")
    n_layer: int = Field(2, ge=1, le=96, description="transformer blocks (ignored with "
                         "pretrained)")
    n_embd: int = Field(64, ge=8, le=16384, description="width; a multiple of n_head "
                        "(ignored with pretrained)")
    n_head: int = Field(4, ge=1, le=128, description="attention heads (ignored with "
                        "pretrained)")
    context: int = Field(64, ge=8, le=32768, description="tokens per sequence (the model's "
                         "positions; with pretrained, at most the model's)")
    dropout: float = Field(0.0, ge=0, le=0.9, description="dropout probability everywhere "
                           "(ignored with pretrained)")
    norm: Literal["pre-layernorm", "post-layernorm", "pre-rmsnorm"] | None = Field(
        None, description=(
            "where the blocks normalise, and with what; unset: the arch's own. gpt2: "
            '"pre-layernorm" (GPT-2), "post-layernorm" (OPT with do_layer_norm_before = '
            "false: GPT-2's block with the LayerNorm after each residual add, no final "
            'norm), "pre-rmsnorm" (a Llama block: with RMSNorm come rotary positions, a '
            "gated SiLU MLP of GPT-2's MLP parameters, no biases, attention-only dropout); "
            'bert: "post-layernorm" (BERT) only. Not with pretrained'))
    tokenizer: PathOrName | None = Field(None, description=(
        '"byte", "bpe", or a tokenizer directory; default: the pretrained model\'s own '
        'tokenizer when pretrained is set, else "byte"'))
    bpe_vocab: int = Field(1024, ge=300, le=262144, description="vocabulary of a bpe tokenizer")
    pretrained: PathOrName | None = Field(None, description="a from_pretrained directory, or a hub "
                                   "name org/name (needs a network); the model then comes "
                                   "with its own architecture, size and weights: arch, the "
                                   "size fields, dropout and the study's init are ignored")
    batch_size: int = Field(16, ge=1, le=65536, description="sequences per micro-batch")
    grad_accum: int = Field(1, ge=1, le=4096, description="micro-batches per optimizer step")
    max_grad_norm: float = Field(1.0, ge=0, le=1e6, description="gradient clipping (0: off)")
    eval_batches: int = Field(4, ge=1, le=10000, description=(
        "an eval scores eval_batches x batch_size held-out examples (language models: windows "
        "of context tokens) of each source, one fixed seeded sample per study; the whole val "
        "split when it is no larger"))
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="share of tokens masked "
                                   "in mlm stages")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA where "
                                                   "torch sees it, else the CPU")
    bf16: bool = Field(True, description="bf16 autocast on CUDA")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Transformers:
        if not self.pretrained and self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head "
                             f"({self.n_head})")
        return self

    @model_validator(mode="after")
    def _norm_exists(self) -> Transformers:
        if (why := norm_problem(self.arch, self.norm, bool(self.pretrained))) is not None:
            raise ValueError(why)
        return self

    def tokenizer_source(self) -> str:
        """What the trial tokenizes with: "byte", "bpe", or where a tokenizer is loaded from
        (`tokenizer`, else the `pretrained` model's own: byte ids fed to a model trained on
        another vocabulary would train it on noise, silently)."""
        if self.tokenizer is not None:
            return self.tokenizer
        if not self.pretrained:
            return "byte"
        if _byte_model_without_tokenizer(Path(self.pretrained)):
            return "byte"  # a model autostage trained on byte ids, saved without them
        return self.pretrained

    def preflight(self, context: PreflightContext) -> list[Problem]:
        problems = []
        if (why := _not_text(context.data)) is not None:
            problems.append(Problem("trainer", why))
        model = self.pretrained and _missing_directory(self.pretrained, "config.json", "a model")
        if model:
            problems.append(Problem("pretrained", model))
        if not (model and self.tokenizer is None) and (why := self._tokenizer_problem()):
            problems.append(Problem("tokenizer", why))
        if self.device == "cuda" and (why := _no_cuda()) is not None:
            problems.append(Problem("device", why))
        return problems

    def _tokenizer_problem(self) -> str | None:
        source = self.tokenizer_source()
        if source in ("byte", "bpe"):
            return None
        named, path = self.tokenizer is not None, Path(source)
        if path.is_dir():
            if _holds_tokenizer(path):
                return None
            if named:
                return (f"cannot load {source}: it holds no tokenizer (tokenizer_config.json, "
                        "tokenizer.json, a vocabulary); name the directory save_pretrained "
                        'wrote it to, or "byte" or "bpe"')
            return (f"the pretrained directory {source} holds no tokenizer, and none is "
                    "named: set tokenizer to the directory of the one the model was trained "
                    "with (\"byte\" only if it was trained on autostage's byte ids)")
        if not named:
            return None  # the pretrained model's own: a problem there is pretrained's
        hint = difflib.get_close_matches(source, ["byte", "bpe"], n=1)
        did = f"did you mean \"{hint[0]}\"? " if hint else ""
        return _missing_directory(source, None, "a tokenizer", f'{did}tokenizer is "byte", '
                                  '"bpe", a directory, or a hub name (org/name: needs a '
                                  'network)')

    def check_workers(self, workers: int) -> list[str]:
        # each worker takes an equal share of every batch (`lm_parallel`)
        if self.batch_size % workers:
            return [f"model.batch_size = {self.batch_size} does not split among {workers} "
                    "workers, each of which takes an equal share of every batch: make "
                    f"batch_size a multiple of {workers}"]
        return []

    def check_objectives(self, objectives: set[str]) -> list[str]:
        if self.pretrained:
            return []  # the architecture comes from the checkpoint
        wrong = sorted(objectives - set(OBJECTIVES[self.arch]))
        return [f"arch '{self.arch}' cannot train {', '.join(wrong)}; it trains "
                f"{', '.join(OBJECTIVES[self.arch])}"] if wrong else []

    def start(self, setup: TrialSetup) -> TransformersRun:
        return TransformersRun(self, setup)


class TransformersRun:
    """One trial: the models, the data of every source, the current stage's optimizer."""

    def __init__(self, cfg: Transformers, setup: TrialSetup) -> None:
        import torch
        import transformers

        transformers.logging.set_verbosity_error()  # its notices would drown our evals
        self.cfg, self.setup = cfg, setup
        if setup.threads:
            torch.set_num_threads(setup.threads)
        torch.manual_seed(setup.seed)
        self.device = _device(cfg.device)
        self.sources = _text_sources(setup)
        self.tok = _tokenizer(cfg, self.sources, setup)
        self.data = _Data(self.sources, self.tok, setup.seed)
        classified = [s for s, o in setup.objectives.items() if o == "classify" and s in
                      self.sources]
        # the classes are what the classify stages train on; a source only evaluated brings
        # none of its own (a label no training data has would be a class never learned)
        taught = [s for s in setup.trains.get("classify", ()) if s in classified] or classified
        #: the classifier's label names in class-id order (None: the data gives class ids)
        self.labels = _label_names(self.data.examples, classified, taught)
        self.num_labels = self.data.number_classes(classified, self.labels, taught)
        self.data.number_targets(_regressed(setup, self.sources, classified))
        self.models: dict[str, Any] = {}
        self.stage: StageVisit | None = None
        self.optimizer: Any = None
        self.saved_optimizer: dict = {}  # what `load` found, for `continue_stage`
        self.batch = 0  # batches drawn in the current stage visit
        self.step = 0  # optimizer steps in the whole trial
        self.shards = _shards(cfg, setup)  # None: the trial is this process alone

    # --- models ------------------------------------------------------------------------------

    def model(self, objective: str) -> Any:
        if objective not in self.models:
            self.models[objective] = self._build(objective)
            if self.shards is not None:
                self.shards.same_start(self.models[objective])
        return self.models[objective]

    def _build(self, objective: str) -> Any:
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForMaskedLM,
            AutoModelForSequenceClassification,
        )

        auto = {"causal_lm": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM,
                "classify": AutoModelForSequenceClassification,
                "regression": AutoModelForSequenceClassification}[objective]
        # one output and problem_type "regression": transformers' own MSE loss, and a
        # text-classification pipeline of the export applies no softmax or sigmoid
        extra = {"num_labels": self.num_labels} if objective == "classify" else \
            {"num_labels": 1, "problem_type": "regression"} if objective == "regression" else {}
        first = not self.models
        if self.cfg.pretrained and first:
            model = _load_pretrained(auto, self.cfg.pretrained, extra)
        else:
            config = (AutoConfig.from_pretrained(self.cfg.pretrained, **extra)
                      if self.cfg.pretrained else self._config(**extra))
            config.pad_token_id = self.tok.pad_id
            model = auto.from_config(config)
            if first:
                self.setup.init.apply(model)
        if not first:
            _share_backbone(next(iter(self.models.values())), model)
        if model.config.vocab_size < self.tok.vocab_size:
            raise AutostageError(f"the model's vocabulary ({model.config.vocab_size}) is "
                                 f"smaller than the tokenizer's ({self.tok.vocab_size})")
        return model.to(self.device)

    def _config(self, **extra: Any) -> Any:
        from autostage_plugins.norms import config

        c = self.cfg
        shape = {"vocab_size": self.tok.vocab_size, "context": c.context, "n_embd": c.n_embd,
                 "n_layer": c.n_layer, "n_head": c.n_head, "dropout": c.dropout,
                 "eos_id": self.tok.eos_id}
        return config(c.arch, c.norm, shape, **extra)

    # --- the trial loop's protocol -------------------------------------------------------------

    def begin_stage(self, stage: StageVisit) -> None:
        self.stage = stage
        model = self.model(stage.objective)
        # a fresh optimizer per stage visit: its LR is set every step from the schedule, so a
        # restored or inherited optimizer state can never override a ScaleLR
        self.optimizer = stage.optimizer.build([p for p in model.parameters() if p.requires_grad])
        self.batch = 0

    def continue_stage(self, stage: StageVisit) -> None:
        # part-way through a visit — a checkpoint's branch point, or a replayed lineage's
        # switch in this process: the data goes on where it was, and the optimizer keeps its
        # moments when the continuation uses the same kind of optimizer (a branch may switch
        # AdamW to SGD: that one starts fresh)
        saved = self.saved_optimizer or ({"kind": type(self.optimizer).__name__,
                                          "state": self.optimizer.state_dict()}
                                         if self.optimizer is not None else {})
        self.saved_optimizer = {}  # used once: a later continuation has its own
        batch = self.batch
        self.begin_stage(stage)
        self.batch = batch
        if saved and saved.get("kind") == type(self.optimizer).__name__:
            # the moments carry over; the settings are the continuation's (load_state_dict
            # would bring back the old weight decay, betas, momentum with them)
            settings = [{k: v for k, v in g.items() if k != "params"}
                        for g in self.optimizer.param_groups]
            self.optimizer.load_state_dict(saved["state"])
            for group, own in zip(self.optimizer.param_groups, settings, strict=True):
                group.update(own)

    def train(self, tokens: int, lr: Callable[[int], float]) -> TrainResult:
        import torch

        stage, model = self.stage, self.models[self.stage.objective]
        model.train()
        done, losses, norms, clipped = 0, [], [], 0
        while done < tokens:
            for group in self.optimizer.param_groups:
                group["lr"] = lr(done)
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(self.cfg.grad_accum):
                batch = self.data.train_batch(stage, self.batch, self.cfg, self.tok)
                self.batch += 1
                done += _counted(batch)
                loss = self._loss(model, batch) / self.cfg.grad_accum
                if self.shards is None and not torch.isfinite(loss):
                    raise TrialFailed(f"non-finite loss at stage {stage.name}, "
                                      f"step {self.step}")
                loss.backward()
                step_loss += float(loss.detach())
            if self.shards is not None:  # every worker fails alike, or none does
                step_loss = self.shards.reduce(model, step_loss)
                if not math.isfinite(step_loss):
                    raise TrialFailed(f"non-finite loss at stage {stage.name}, "
                                      f"step {self.step}")
            norm = _clip(model, self.cfg.max_grad_norm)
            if not math.isfinite(norm):
                raise TrialFailed(f"non-finite loss at stage {stage.name}, step {self.step} "
                                  "(gradient norm)")
            self.optimizer.step()
            self.step += 1
            losses.append(step_loss)
            norms.append(norm)
            clipped += 0 < self.cfg.max_grad_norm < norm
        # `clipped`: the share of steps whose gradient norm was cut to max_grad_norm
        return TrainResult(done, {"loss": sum(losses) / len(losses),
                                  "grad_norm": sum(norms) / len(norms),
                                  "grad_norm_max": max(norms), "grad_norm_min": min(norms),
                                  "clipped": clipped / len(norms)})

    def _loss(self, model: Any, batch: dict) -> Any:
        import torch

        share = 1.0
        if self.shards is not None:  # this worker's rows, weighted by their share
            batch, share = self.shards.take(batch, self.stage.objective)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        use_bf16 = self.device.type == "cuda" and self.cfg.bf16
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = model(**batch)
        if self.shards is None:
            return out.loss.float()
        from autostage_plugins.lm_parallel import scaled

        return scaled(out.loss.float(), out.logits, share)

    def evaluate(self, sources: Sequence[str]) -> dict[str, dict[str, float]]:
        from autostage_plugins.lm_eval import evaluate

        out = {}
        for source in sources:
            objective = self.setup.objectives.get(source, self.stage.objective)
            out[source] = evaluate(self.model(objective), objective, self.data, source,
                                   self.cfg, self.tok, self.device)
        # every worker computed the same: worker 0's numbers make every policy decide alike
        return out if self.shards is None else self.shards.agreed(out)

    def snapshot(self) -> Any:
        return ({k: copy.deepcopy(m.state_dict()) for k, m in self.models.items()},
                copy.deepcopy(self.optimizer.state_dict()) if self.optimizer else None)

    def restore(self, snapshot: Any) -> None:
        weights, optimizer = snapshot
        for objective, state in weights.items():
            self.model(objective).load_state_dict(state)
        if optimizer is not None and self.optimizer is not None:
            self.optimizer.load_state_dict(optimizer)

    def save(self, directory: str) -> None:
        from autostage_plugins.lm_checkpoint import save

        save(self, Path(directory))

    def load(self, directory: str) -> None:
        from autostage_plugins.lm_checkpoint import load

        load(self, Path(directory))

    def export(self, directory: str) -> None:
        from autostage_plugins.lm_export import export

        export(self, Path(directory))


class _Data:
    """Every source's train and val data, tokenized once per trial."""

    def __init__(self, sources: dict[str, TextDataset], tok: Any, seed: int) -> None:
        from autostage_plugins.lm_data import Stream

        self.seed = seed
        # read_examples: a third-party dataset returning strings is one clear line here
        self.examples = {s: {split: read_examples(d, split, seed, source=s)
                             for split in ("train", "val")}
                         for s, d in sources.items()}
        self.streams = {s: {split: Stream.build(ex, tok) for split, ex in splits.items()}
                        for s, splits in self.examples.items()}

    def number_classes(self, sources: list[str], labels: list[str] | None,
                       taught: list[str]) -> int:
        """Give every example of the classified `sources` its class id — its label's place in
        `labels`, or the id the dataset gave (as many classes as the `taught` sources' train
        splits hold) — and return the number of classes. Checked before any training: a
        label the classifier has no class for is one clear error."""
        from dataclasses import replace

        ids = {name: i for i, name in enumerate(labels)} if labels is not None else \
            {i: i for i in range(_class_count(self.examples, taught))}
        known = ", ".join(labels) if labels is not None else f"ids 0-{len(ids) - 1}"
        for source in sources:
            for split, examples in self.examples[source].items():
                stray = next((e for e in examples if e.label not in ids), None)
                if stray is not None:
                    raise AutostageError(
                        f"data source {source!r} ({split} split): label {stray.label!r} is "
                        f"not a class of the classifier, whose classes come from the train "
                        f"splits of {', '.join(taught)}: {known}")
                self.examples[source][split] = [replace(e, label=ids[e.label])
                                                for e in examples]
        return len(ids)

    def number_targets(self, sources: list[str]) -> None:
        """Make every label of the regressed `sources` a float, checked before any training:
        a missing or non-numeric label is one error naming the source, split and example
        (csv and jsonl name the file's line in `validate` already)."""
        from dataclasses import replace

        from autostage_plugins.datasets import label_number

        for source in sources:
            for split, examples in self.examples[source].items():
                targets = [label_number(e.label) for e in examples]
                bad = next((i for i, t in enumerate(targets) if t is None), None)
                if bad is not None:
                    label = examples[bad].label
                    has = "no label" if label is None else f"the label {label!r}"
                    raise AutostageError(
                        f"data source {source!r} ({split} split): example {bad} has {has}, "
                        "not a finite number; a regression stage "
                        "trains on numeric labels (label_field naming a column of numbers, "
                        "or arith's variant = \"regression\")")
                self.examples[source][split] = [replace(e, label=t)
                                                for e, t in zip(examples, targets, strict=True)]

    def train_batch(self, stage: StageVisit, k: int, cfg: Transformers, tok: Any) -> dict:
        import torch

        from autostage_plugins.lm_data import classify_batch, lm_batch, mlm_batch

        # stateless: batch k of this visit depends only on (seed, stage, visit, k)
        rng = random.Random(f"{self.seed}-{stage.name}-{stage.visit}-{k}")
        names, weights = zip(*stage.mix.items(), strict=True)
        picks = rng.choices(names, weights=weights, k=cfg.batch_size)
        if stage.objective in SEQUENCE:
            return classify_batch([rng.choice(self.examples[s]["train"]) for s in picks], tok,
                                  cfg.context)
        windows = [self.streams[s]["train"].window(rng, cfg.context) for s in picks]
        if stage.objective == "mlm":
            gen = torch.Generator().manual_seed(rng.getrandbits(62))
            return mlm_batch(windows, tok, cfg.mlm_probability, gen)
        return lm_batch(windows)


def _label_names(examples: dict, sources: list[str], taught: list[str]) -> list[str] | None:
    """The classifier's label vocabulary: the sorted union of the label names in the train
    splits of the sources the classify stages train on (`taught`), so a class has one id in
    every source it classifies (`sources`); None when they give class ids (hf). A source
    with no labels, or sources mixing names and ids, are one clear error."""
    given = {s: {e.label for e in examples[s]["train"]} - {None} for s in sources}
    unlabelled = [s for s, labels in given.items() if not labels]
    if unlabelled:
        raise AutostageError(
            f"data source {unlabelled[0]!r} has no labels, but a classify stage trains on "
            "or evaluates it: give it labels (e.g. label_field, or pydoc's variant = "
            "\"classify\"), or evaluate it in a language-model stage")
    named = [s for s, labels in given.items() if any(isinstance(x, str) for x in labels)]
    numbered = [s for s, labels in given.items() if any(isinstance(x, int) for x in labels)]
    if named and numbered:
        raise AutostageError(
            f"one classifier cannot number labels given as names (data source {named[0]!r}) "
            f"and as class ids (data source {numbered[0]!r}) alike: give every classified "
            "source names (csv, jsonl, pydoc) or every one ids (hf)")
    return sorted(set().union(*(given[s] for s in taught))) if named else None


def _regressed(setup: TrialSetup, sources: dict, classified: list[str]) -> list[str]:
    """The sources a regression stage trains on or evaluates: their labels are targets. One
    classified too would need its labels as classes and as numbers: refused."""
    regressed = [s for s, o in setup.objectives.items() if o == "regression" and s in sources]
    regressed += [s for s in setup.trains.get("regression", ()) if s not in regressed]
    both = [s for s in regressed if s in classified or s in setup.trains.get("classify", ())]
    if both:
        raise AutostageError(f"data source {both[0]!r} is both classified and regressed: its "
                             "labels cannot be classes and numbers alike; give each objective "
                             "a data source of its own")
    return regressed


def _class_count(examples: dict, sources: list[str]) -> int:
    """Classes for labels given as ids: the largest id in a train split, plus one (2 when
    nothing is classified: a head must have some)."""
    return int(max([e.label for s in sources for e in examples[s]["train"]
                    if e.label is not None] or [1])) + 1


def _shards(cfg: Transformers, setup: TrialSetup) -> Any:
    """This worker's part in a data-parallel trial (None: one process trains the trial)."""
    if setup.workers == 1:
        return None
    if problems := cfg.check_workers(setup.workers):  # batch_size may have been searched
        raise AutostageError(problems[0])
    from autostage_plugins.lm_parallel import Shards

    return Shards(setup.rank, setup.workers)


def _counted(batch: dict) -> int:
    from autostage_plugins.lm_data import counted_tokens

    return counted_tokens(batch)


def _clip(model: Any, max_norm: float) -> float:
    import torch

    params = [p for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf))


def _device(choice: str) -> Any:
    """The trial's device. Ray gives a trial its GPUs (`study.resources.gpus`; a fraction
    shares one) by setting CUDA_VISIBLE_DEVICES, so "cuda" is the GPU Ray assigned. A trial
    given a GPU that torch cannot see fails, rather than train on the CPU unnoticed."""
    import os

    import torch

    if choice == "cuda" and (why := _no_cuda()) is not None:
        raise AutostageError(f"model.device: {why}")
    given = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if choice == "auto" and given.strip() and not torch.cuda.is_available():
        raise AutostageError(
            f"model.device: this trial was given GPU {given} (CUDA_VISIBLE_DEVICES, which Ray "
            "sets from study.resources.gpus), but torch sees no CUDA device "
            f"(torch {torch.__version__}, {_build()}): install a CUDA build of torch on that "
            'node, or set study.resources.gpus = 0 (or model.device = "cpu")')
    use_cuda = choice == "cuda" or (choice == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if use_cuda else "cpu")


def _build() -> str:
    import torch

    return "built without CUDA" if torch.version.cuda is None else \
        f"built for CUDA {torch.version.cuda}"


def _no_cuda() -> str | None:
    """Why `device = "cuda"` cannot work here, or None (imports torch: only for "cuda")."""
    import torch

    if torch.cuda.is_available():
        return None
    return (f"'cuda', but torch sees no CUDA device here (torch {torch.__version__}, "
            f"{_build()}); "
            'use device = "auto" (CUDA where there is one) or "cpu"')


def _not_text(data: Any) -> str | None:
    wrong = [f"{name} ({type(d).__name__})" for name, d in data.items()
             if not isinstance(d, TextDataset)]
    if wrong:
        return (f"the transformers trainer reads text datasets (pydoc, arith, text, jsonl, "
                f"csv, hf); these are not: {', '.join(wrong)}")
    return None


def _text_sources(setup: TrialSetup) -> dict[str, TextDataset]:
    if (why := _not_text(setup.data)) is not None:
        raise AutostageError(f"model.trainer: {why}")
    return dict(setup.data)


TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "vocab.json", "vocab.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def _missing_directory(value: str, needs: str | None, what: str,
                       hint: str = "a hub name needs a network: org/name") -> str | None:
    """Why `value` names no `from_pretrained` directory of `what` (holding `needs`), or None.
    A name of the form org/name that is no directory here is taken for a hub name: loading
    it needs a network, which validate does not use."""
    path = Path(value)
    if path.is_dir():
        if needs is not None and not (path / needs).is_file():
            return (f"cannot load {value}: it holds no {needs}, so it is not {what} saved with "
                    "save_pretrained")
        return None
    if path.exists():
        return f"cannot load {value}: a file; name the directory save_pretrained wrote"
    if _hub_name(value):
        return None
    where = value if path.is_absolute() else f"{value} (relative to {Path.cwd()})"
    return f"cannot load {where}: no such directory; {hint}"


def _hub_name(value: str) -> bool:
    """org/name, as the Hugging Face hub spells a repository (a bare name is refused: old
    hub aliases aside, it is a mistyped directory far more often)."""
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) is not None and \
        ".." not in value and "--" not in value


def _holds_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def _byte_model_without_tokenizer(path: Path) -> bool:
    """A model directory with no tokenizer whose vocabulary is the byte tokenizer's own 260
    ids: one autostage trained on byte ids and saved without them."""
    from autostage_plugins.tokenize import byte_tokenizer

    if not path.is_dir() or _holds_tokenizer(path):
        return False
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("vocab_size") == byte_tokenizer().vocab_size


def _tokenizer(cfg: Transformers, sources: dict[str, TextDataset], setup: TrialSetup) -> Any:
    from autostage_plugins.tokenize import bpe_tokenizer, byte_tokenizer, pretrained_tokenizer

    source = cfg.tokenizer_source()
    if source == "byte":
        return byte_tokenizer()
    if source == "bpe":
        # the same corpus (seed 0) for every trial: one tokenizer per study, so per-token
        # losses compare across trials and the cache is hit
        texts = [e.prompt + e.text for s, d in sources.items()
                 for e in read_examples(d, "train", 0, source=s)]
        return bpe_tokenizer(texts, cfg.bpe_vocab, setup.cache_dir)
    return pretrained_tokenizer(source)


def _load_pretrained(auto: Any, path: str, extra: dict) -> Any:
    try:
        return auto.from_pretrained(path, **extra)
    except Exception as e:  # a missing directory, no network for a hub name, ...
        raise AutostageError(f"model.pretrained: cannot load {path!r}: "
                             f"{type(e).__name__}: {str(e).splitlines()[0]}") from None


def _share_backbone(source: Any, target: Any) -> None:
    """Give `target` the backbone modules of `source` (embeddings, blocks), keeping its own
    head: weights trained under one objective are the next objective's starting point."""
    have, want = source.base_model, target.base_model
    for name, module in have.named_children():
        if hasattr(want, name):
            setattr(want, name, module)


@hookimpl
def register_trainers(register):
    register("transformers", Transformers)
