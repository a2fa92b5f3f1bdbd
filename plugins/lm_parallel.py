"""Data parallel for the transformers trainer (`study.resources.workers` > 1): every worker
takes its share of each batch, and their gradients are summed before each optimizer step,
weighted so that the step is the one-process step on the whole batch.

Every worker draws the whole batch (sampling is stateless and cheap: `lm_data`) and keeps its
rows. The loss of its rows is scaled by their share of the batch's scored items (tokens for
language models, examples for sequence heads), so the workers' gradients sum to the gradient
of the whole batch's mean loss: the same as one process, to float rounding, however many
tokens each row scores. One all-reduce per optimizer step, after all of the step's
micro-batches, carries the gradients (gradient accumulation costs no extra communication);
the workers then clip and step alike. torch's DistributedDataParallel would average the
workers' means instead (unequal when rows score different token counts), reduce at every
micro-batch unless told not to, and wraps one module where a trial's models share a backbone.

A model is broadcast from worker 0 when it is built, and evals run whole on every worker with
worker 0's metrics broadcast: every worker's stage policy sees the same numbers and decides
alike.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from autostage.errors import AutostageError
from autostage_plugins.lm_data import IGNORE

#: elements per all-reduce (a flat copy of this many gradients is made at a time)
BUCKET = 1 << 24


class Shards:
    """This worker's part in a data-parallel trial: worker `rank` of `workers`."""

    def __init__(self, rank: int, workers: int) -> None:
        if not dist.is_initialized() or dist.get_world_size() != workers:
            have = dist.get_world_size() if dist.is_initialized() else "no"
            raise AutostageError(
                f"the trial runs on {workers} data-parallel workers, but torch.distributed "
                f"has {have} process group of them: a data-parallel trial runs under Ray "
                "Train (`autostage search`), not alone")
        self.rank, self.workers = rank, workers

    def take(self, batch: dict[str, torch.Tensor], objective: str
             ) -> tuple[dict[str, torch.Tensor], float]:
        """This worker's rows of `batch` (an equal share: the batch size divides), and their
        share of the batch's scored items (NaN when the batch scores none: the loss of one
        process would be NaN too)."""
        rows = next(iter(batch.values())).shape[0] // self.workers
        mine = {k: v[self.rank * rows:(self.rank + 1) * rows] for k, v in batch.items()}
        whole = _scored(batch, objective)
        return mine, (_scored(mine, objective) / whole if whole else float("nan"))

    def reduce(self, model: Any, loss: float) -> float:
        """Sum the workers' gradients of `model` (each already weighted by its share) and
        their `loss` (the step's, likewise weighted): the whole batch's."""
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        for bucket in _buckets(grads):
            flat = torch.cat([g.reshape(-1) for g in bucket])
            dist.all_reduce(flat)
            offset = 0
            for g in bucket:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        total = torch.tensor([loss], dtype=torch.float64,
                             device=grads[0].device if grads else "cpu")
        dist.all_reduce(total)
        return float(total)

    def same_start(self, model: Any) -> None:
        """Give every worker worker 0's weights of a model just built."""
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)

    def agreed(self, value: Any) -> Any:
        """Worker 0's `value` (a picklable object), on every worker."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def scaled(loss: torch.Tensor, logits: torch.Tensor, share: float) -> torch.Tensor:
    """A worker's loss weighted by its share of the batch's scored items. Rows scoring none
    (an MLM shard with no masked token) add nothing: their mean loss is NaN, so a zero that
    keeps the graph (every worker's backward reaches the same parameters) stands in."""
    if share == 0:
        return logits.float().sum() * 0.0
    return loss * share


def _scored(batch: dict[str, torch.Tensor], objective: str) -> int:
    """The items a loss averages over: scored tokens (causal LM shifts them: position t
    predicts t+1), or examples for a sequence head."""
    labels = batch["labels"]
    if objective == "causal_lm":
        return int((labels[:, 1:] != IGNORE).sum())
    if objective == "mlm":
        return int((labels != IGNORE).sum())
    return labels.shape[0]


def _buckets(grads: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Runs of gradients of one dtype and device, at most BUCKET elements each (or one
    larger tensor alone)."""
    out: list[list[torch.Tensor]] = []
    size = 0
    for g in grads:
        if out and size + g.numel() <= BUCKET and \
                (g.dtype, g.device) == (out[-1][0].dtype, out[-1][0].device):
            out[-1].append(g)
            size += g.numel()
        else:
            out.append([g])
            size = g.numel()
    return out
