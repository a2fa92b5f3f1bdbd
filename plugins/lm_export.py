"""The final model of a transformers trial, as `transformers` opens it: the model of the
objective the trial's last stage trained (causal_lm, mlm or classify; stages share one backbone,
so it holds everything the trial learned), saved with `save_pretrained` beside its tokenizer.

    AutoModelForCausalLM.from_pretrained(DIR)   (or ...ForMaskedLM / ...ForSequenceClassification)
    AutoTokenizer.from_pretrained(DIR)

A classifier's config names its labels (id2label) when the trainer knows them, and its
tokenizer puts <cls> first, as the classifier was trained.
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
    model.save_pretrained(directory)
    for_transformers(run.tok, cls_first=objective == "classify").save_pretrained(directory)


def _name_labels(config: Any, labels: list[str] | None) -> None:
    """Class ids -> label names in the config, when there is one name per class (without,
    transformers shows LABEL_0, LABEL_1, ...)."""
    if labels and len(labels) == config.num_labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
