"""The Lion torch optimizer (Chen et al. 2023, "Symbolic Discovery of Optimization
Algorithms"), which torch does not ship. Not a plugin itself: the `lion` optimizer in
`optimizers.py` imports this module inside `build`, so listing plugins never imports torch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lion(torch.optim.Optimizer):
    """Sign of an interpolated momentum, with decoupled weight decay:

        update = sign(beta1 * m + (1 - beta1) * g)
        p      = p * (1 - lr * weight_decay) - lr * update
        m      = beta2 * m + (1 - beta2) * g

    Every coordinate moves by exactly `lr`, so Lion wants an LR 3-10x below AdamW's.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0) -> None:
        if lr < 0:
            raise ValueError(f"Lion needs lr >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Lion needs 0 <= beta < 1, got betas={betas}")
        if weight_decay < 0:
            raise ValueError(f"Lion needs weight_decay >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                momentum = state["exp_avg"]
                p.mul_(1.0 - lr * decay)
                update = momentum.mul(beta1).add_(p.grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                momentum.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)
        return loss
