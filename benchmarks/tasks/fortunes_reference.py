"""Cheap references for the `fortunes` task (benchmarks/tasks/fortunes.toml): byte n-gram
models scored on exactly the held-out windows a trial's eval scores.

  python benchmarks/tasks/fortunes_reference.py     # ~5 s, no torch training

The study's eval of `target` scores `eval_batches` x `batch_size` windows of `context` byte
tokens drawn by a fixed seed from the held-out passages of fortune-mod's `literature` (each
passage followed by the end-of-text token), every token but a window's first predicted from
the tokens before it in the window. The n-gram models below predict the same tokens from the
same in-window history: interpolated absolute discounting (D = 0.75, fixed, nothing fitted on
the held-out text) down to an add-one unigram over the byte tokenizer's 260 ids. Each is
trained on the target's train split alone, and on it joined with the prerequisite's
(`cookie`) train split. These are what a model that learnt nothing past n-gram statistics
scores; the TARGET in fortunes.md was set from them and one default-configuration trial.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

TASK_STUDY = Path(__file__).with_name("fortunes.toml")  # not STUDY: hpo_task reads that as a task
D = 0.75  # the usual absolute discount (Ney et al.); fixed, not fitted
VOCAB = 260  # the byte tokenizer: 256 bytes and 4 specials


def streams() -> dict:
    """Per source: the train split's token ids, and the eval windows a trial scores."""
    from autostage.check import load_study
    from autostage.host import load_registry
    from autostage_plugins.lm_data import Stream
    from autostage_plugins.tokenize import byte_tokenizer

    registry = load_registry()
    study = load_study(TASK_STUDY, registry, [])
    settings = study.model.settings
    length, count = settings["context"], settings["eval_batches"] * settings["batch_size"]
    tok = byte_tokenizer()
    out = {}
    for name in ("prereq", "target"):
        source = study.data[name]
        dataset = registry.get("dataset", source.dataset)(**source.settings)
        train = Stream.build(list(dataset.examples("train", 0)), tok)
        val = Stream.build(list(dataset.examples("val", 0)), tok)
        windows = [ids.tolist() for ids, _ in val.eval_windows(length, count)]
        out[name] = (train.ids.tolist(), windows)
    return out


class NGram:
    """Interpolated absolute discounting over the in-window history, order n."""

    def __init__(self, n: int, ids: list[int]):
        self.n = n
        self.counts = [defaultdict(Counter) for _ in range(n)]  # [k][history of k] -> next
        for i, token in enumerate(ids):
            for k in range(n):
                if i - k >= 0:
                    self.counts[k][tuple(ids[i - k:i])][token] += 1

    def prob(self, history: tuple, token: int) -> float:
        unigram = self.counts[0][()]
        p = (unigram[token] + 1) / (sum(unigram.values()) + VOCAB)
        for k in range(1, self.n):
            if len(history) < k:
                break
            seen = self.counts[k].get(history[len(history) - k:])
            if not seen:
                continue
            total = sum(seen.values())
            p = (max(seen[token] - D, 0) + D * len(seen) * p) / total
        return p

    def loss(self, windows: list[list[int]]) -> float:
        """Mean nats per predicted token (every token of a window but its first)."""
        nats, predicted = 0.0, 0
        for w in windows:
            for i in range(1, len(w)):
                nats -= math.log(self.prob(tuple(w[max(0, i - self.n + 1):i]), w[i]))
                predicted += 1
        return nats / predicted


def main() -> None:
    data = streams()
    train_target, windows = data["target"]
    train_prereq, _ = data["prereq"]
    print(f"target: {len(train_target):,} train tokens, {len(windows)} eval windows of "
          f"{len(windows[0])} tokens; prereq: {len(train_prereq):,} train tokens")
    for n in (1, 2, 3, 4):
        alone = NGram(n, train_target).loss(windows)
        joined = NGram(n, train_prereq + train_target).loss(windows)
        print(f"{n}-gram: {alone:.3f} nats/byte (target's train split), "
              f"{joined:.3f} (with the prereq's)")


if __name__ == "__main__":
    main()
