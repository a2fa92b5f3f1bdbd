"""The final model of a transformers trial, as `transformers` opens it: the model of the
objective the trial's last stage trained (causal_lm, mlm, classify or regression; stages share
one backbone, so it holds everything the trial learned), saved with `save_pretrained` beside
its tokenizer.

    AutoModelForCausalLM.from_pretrained(DIR)   (or ...ForMaskedLM / ...ForSequenceClassification)
    AutoTokenizer.from_pretrained(DIR)
    pipeline("text-generation" / "fill-mask" / "text-classification", model=DIR)

The export carries what training assumed, so plain pipelines use the model as trained: the
tokenizer frames and cuts a text as training did (`tokenize.for_transformers`: <cls> first
for a sequence head, at most the trainer's context), a classifier's config names its labels
(id2label) when the trainer knows them, a regressor's says problem_type "regression" (the
pipeline then applies no softmax or sigmoid), and a causal LM's generation config keeps
generation within the model's positions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def export(run: Any, directory: Path) -> None:
    import transformers

    from autostage_plugins.tokenize import for_transformers

    transformers.logging.disable_progress_bar()  # "Writing model shards" per trial: noise

    objective = run.stage.objective
    model = run.models[objective]
    if objective == "classify":
        _name_labels(model.config, getattr(run, "labels", None))
    if objective == "causal_lm":
        model.generation_config = _generation_config(model, run.tok)
    model.save_pretrained(directory)
    for_transformers(run.tok, objective, run.cfg.context).save_pretrained(directory)


def _name_labels(config: Any, labels: list[str] | None) -> None:
    """Class ids -> label names in the config, when there is one name per class (without,
    transformers shows LABEL_0, LABEL_1, ...)."""
    if labels and len(labels) == config.num_labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}


def _generation_config(model: Any, tok: Any) -> Any:
    """The model's generation config, bounded by its positions: `max_length` (prompt and new
    tokens) at most the positions, so generate() — and a text-generation pipeline, whose
    default of 256 new tokens gives way to a max_length the model sets — never reads past
    them (an IndexError); the tokenizer's own end and padding ids."""
    from transformers import GenerationConfig

    # a fresh config, keeping what a pretrained model's own generation config set (one
    # derived from the model config saves as {}: transformers writes nothing of it)
    own = model.generation_config
    kept = {} if own is None or getattr(own, "_from_model_config", False) else \
        {k: v for k, v in own.to_diff_dict().items()
         if not k.startswith("_") and k != "transformers_version"}
    config = GenerationConfig(**kept)
    positions = _positions(model.config)
    if positions is not None:
        config.max_length = min(config.max_length or positions, positions)
    config.eos_token_id = tok.eos_id
    config.pad_token_id = tok.pad_id
    config.bos_token_id = config.bos_token_id if config.bos_token_id is not None else tok.eos_id
    return config


def _positions(config: Any) -> int | None:
    """How many positions the model has (GPT-2 n_positions, else max_position_embeddings;
    None for one with no fixed table)."""
    for name in ("n_positions", "max_position_embeddings"):
        if isinstance(value := getattr(config, name, None), int):
            return value
    return None
