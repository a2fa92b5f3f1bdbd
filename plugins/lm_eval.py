"""Evaluation for the transformers trainer: the same held-out sample every time.

The sample is drawn once per study (`lm_data.held_out_sample`, a fixed seed): up to
`eval_batches × batch_size` examples of a source's val split (language modelling: windows
of `context` tokens spread over its val stream), or all of them when there are no more.
Every source's metrics include `examples`, how many it scored.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from autostage_plugins.lm_data import IGNORE, classify_batch, held_out_sample, lm_batch, mlm_batch


@torch.no_grad()
def evaluate(model: Any, objective: str, data: Any, source: str, cfg: Any, tok: Any,
             device: Any) -> dict[str, float]:
    """loss and perplexity for language modelling; loss, accuracy, macro-F1 for classify;
    loss (= mse), mse, mae and R² for regression."""
    was_training = model.training
    model.eval()
    try:
        if objective == "classify":
            return _classify(model, data.examples[source]["val"], cfg, tok, device)
        if objective == "regression":
            return _regress(model, data.examples[source]["val"], cfg, tok, device)
        return _language(model, objective, data.streams[source]["val"], cfg, tok, device)
    finally:
        model.train(was_training)


def _language(model: Any, objective: str, stream: Any, cfg: Any, tok: Any,
              device: Any) -> dict[str, float]:
    total, count = 0.0, 0
    windows = list(stream.eval_windows(cfg.context, cfg.eval_batches * cfg.batch_size))
    gen = torch.Generator().manual_seed(0)  # the same masks at every eval
    for start in range(0, len(windows), cfg.batch_size):
        chunk = windows[start:start + cfg.batch_size]
        batch = lm_batch(chunk) if objective == "causal_lm" else \
            mlm_batch(chunk, tok, cfg.mlm_probability, gen)
        logits = model(input_ids=batch["input_ids"].to(device)).logits.float()
        labels = batch["labels"].to(device)
        if objective == "causal_lm":  # position t predicts token t+1
            logits, labels = logits[:, :-1], labels[:, 1:]
        total += float(torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
            ignore_index=IGNORE, reduction="sum"))
        count += int((labels != IGNORE).sum())
    loss = total / max(1, count)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "examples": len(windows)}


def _sequence_outputs(model: Any, examples: list, cfg: Any, tok: Any,
                      device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's outputs (logits) and labels for the eval sample of `examples`."""
    examples = held_out_sample(examples, cfg.eval_batches * cfg.batch_size)
    outputs, labels = [], []
    for start in range(0, len(examples), cfg.batch_size):
        batch = {k: v.to(device) for k, v in
                 classify_batch(examples[start:start + cfg.batch_size], tok,
                                cfg.context).items()}
        outputs.append(model(input_ids=batch["input_ids"],
                             attention_mask=batch["attention_mask"]).logits.float())
        labels.append(batch["labels"])
    return torch.cat(outputs), torch.cat(labels)


def _classify(model: Any, examples: list, cfg: Any, tok: Any, device: Any) -> dict[str, float]:
    logits, labels = _sequence_outputs(model, examples, cfg, tok, device)
    total = float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
    predicted, actual = logits.argmax(-1).tolist(), labels.tolist()
    accuracy = sum(p == a for p, a in zip(predicted, actual, strict=True)) / len(actual)
    return {"loss": total / len(actual), "accuracy": accuracy,
            "f1": macro_f1(predicted, actual), "examples": len(actual)}


def _regress(model: Any, examples: list, cfg: Any, tok: Any, device: Any) -> dict[str, float]:
    outputs, targets = _sequence_outputs(model, examples, cfg, tok, device)
    metrics = regression_metrics(outputs.squeeze(-1).tolist(), targets.tolist())
    return {"loss": metrics["mse"], **metrics, "examples": len(targets)}


def regression_metrics(predicted: list[float], actual: list[float]) -> dict[str, float]:
    """mse, mae and R² (1 - squared error / the sample's variance about its own mean: 0 is
    the sample's mean predictor, 1 exact). A sample whose targets are all equal has no
    variance to explain: R² is 1 for exact predictions, else 0 (scikit-learn's
    force_finite), never a NaN the search could not rank."""
    n = len(actual)
    mean = sum(actual) / n
    squared = sum((p - a) ** 2 for p, a in zip(predicted, actual, strict=True))
    spread = sum((a - mean) ** 2 for a in actual)
    r2 = 1 - squared / spread if spread else float(squared == 0)
    return {"mse": squared / n, "mae": sum(abs(p - a) for p, a in
                                          zip(predicted, actual, strict=True)) / n, "r2": r2}


def macro_f1(predicted: list[int], actual: list[int]) -> float:
    """F1 per class, averaged with equal weight over the classes of the label set that the
    sample holds or the model predicts: a class predicted but absent scores 0 (its every
    prediction is a false alarm), a class present but never predicted scores 0. A class
    absent from both is left out, not scored 0 (scikit-learn's zero_division=0): the sample
    says nothing about it, and a 0 there would hold a perfect classifier below 1."""
    scores = []
    for c in sorted(set(actual) | set(predicted)):
        tp = sum(p == c and a == c for p, a in zip(predicted, actual, strict=True))
        fp = sum(p == c and a != c for p, a in zip(predicted, actual, strict=True))
        fn = sum(p != c and a == c for p, a in zip(predicted, actual, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)
