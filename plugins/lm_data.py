"""Token streams and batches for the transformers trainer.

Sampling is stateless: batch `k` of a stage visit is drawn from an RNG seeded by
(trial seed, stage, visit, k), so a trial resumed from a checkpoint sees exactly the batches
an uninterrupted one would, with nothing but a counter to restore.
"""

from __future__ import annotations

import array
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from autostage.components import Example
from autostage_plugins.tokenize import Tokenizer

IGNORE = -100  # label value the loss skips
EVAL_SEED = "held-out"  # draws the eval sample: one per study, not per trial


@dataclass
class Stream:
    """All examples of one source and split as one token array; `scored` marks the tokens a
    language-model loss counts (a prompt is context, not target)."""

    ids: torch.Tensor
    scored: torch.Tensor
    starts: list[int]  # where each example begins
    prompted: bool  # examples have prompts: windows start at an example, never inside one

    @classmethod
    def build(cls, examples: list[Example], tok: Tokenizer) -> Stream:
        # typed buffers, not Python lists: torch.tensor(list) took ~1 s of a trial's start
        # for 200k short problems; frombuffer takes a few ms
        ids = array.array("q")
        scored = bytearray()
        starts = []
        for e in examples:
            starts.append(len(ids))
            prompt = tok.encode(e.prompt) if e.prompt else []
            body = tok.encode(e.text)
            ids.extend(prompt)
            ids.extend(body)
            ids.append(tok.eos_id)
            scored += bytes(len(prompt)) + b"\x01" * (len(body) + 1)
        return cls(_tensor(ids, torch.int64), _tensor(scored, torch.bool), starts,
                   any(e.prompt for e in examples))

    def window(self, rng: random.Random, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`length` consecutive tokens (wrapping around) and their scored mask."""
        n = len(self.ids)
        start = rng.choice(self.starts) if self.prompted else rng.randrange(n)
        index = torch.arange(start, start + length) % n
        return self.ids[index], self.scored[index]

    def eval_windows(self, length: int, count: int):
        """The windows of `eval_starts`, with their scored masks."""
        for start in self.eval_starts(length, count):
            index = torch.arange(start, start + length) % len(self.ids)
            yield self.ids[index], self.scored[index]

    def eval_starts(self, length: int, count: int) -> list[int]:
        """Where a fixed evaluation set's windows begin: `count` non-overlapping windows drawn
        by a fixed seed from the whole stream (every window when there are no more), in
        stream order. With prompts, each window starts at an example, as in training: an
        answer cut from its prompt cannot be predicted and would only add noise to the loss."""
        starts = self._aligned_starts(length) if self.prompted else \
            range(0, max(1, len(self.ids) // length) * length, length)
        return held_out_sample(starts, count)

    def _aligned_starts(self, length: int) -> list[int]:
        out, edge = [], 0
        for start in self.starts:
            if start >= edge:
                out.append(start)
                edge = start + length
        return out


def held_out_sample(items: Sequence, count: int) -> list:
    """`count` of `items` drawn without replacement, in their order: the same draw for every
    trial of a study, whatever its seed, so trials are scored on the same examples; all of
    them when there are no more than `count`. A fixed sample, not the first `count`: files are
    often sorted (by label, by topic), and their head is not the whole."""
    if len(items) <= count:
        return list(items)
    return [items[i] for i in sorted(random.Random(EVAL_SEED).sample(range(len(items)), count))]


def _tensor(buffer: array.array | bytearray, dtype: torch.dtype) -> torch.Tensor:
    """A tensor over the buffer's memory (the tensor keeps the buffer alive)."""
    return torch.frombuffer(buffer, dtype=dtype) if len(buffer) else torch.empty(0, dtype=dtype)


def lm_batch(windows: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Causal LM: predict token t+1 from tokens up to t, scored tokens only."""
    ids = torch.stack([w for w, _ in windows])
    scored = torch.stack([s for _, s in windows])
    labels = ids.clone()
    labels[~scored] = IGNORE
    # HF shifts labels inside the model: position t's logits are scored against labels[t+1]
    return {"input_ids": ids, "labels": labels}


def mlm_batch(windows: list[tuple[torch.Tensor, torch.Tensor]], tok: Tokenizer,
              probability: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Masked LM (BERT's recipe): of the chosen tokens 80% become <mask>, 10% a random token,
    10% stay; only chosen tokens are scored."""
    ids = torch.stack([w for w, _ in windows])
    chosen = torch.rand(ids.shape, generator=gen) < probability
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    roll = torch.rand(ids.shape, generator=gen)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = tok.mask_id
    random_ids = torch.randint(0, tok.vocab_size, ids.shape, generator=gen)
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_ids[swap]
    return {"input_ids": inputs, "labels": labels}


def classify_batch(examples: list[Example], tok: Tokenizer,
                   length: int) -> dict[str, torch.Tensor]:
    """<cls> + text, cut or padded to `length` (padding on the right, masked out); the label
    is the example's class id, or for regression its target (floats: a float tensor)."""
    rows, masks = [], []
    for e in examples:
        ids = ([tok.cls_id] + tok.encode(e.text))[:length]
        masks.append([1] * len(ids) + [0] * (length - len(ids)))
        rows.append(ids + [tok.pad_id] * (length - len(ids)))
    return {"input_ids": torch.tensor(rows), "attention_mask": torch.tensor(masks),
            "labels": torch.tensor([e.label for e in examples])}


def counted_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Training tokens in a batch: every input token that is not padding."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return batch["input_ids"].numel()
