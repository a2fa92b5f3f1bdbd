"""Built-in optimizers. torch is imported inside `build`, so listing and validating are fast."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from autostage.components import Optimizer
from autostage.hookspecs import hookimpl


class SGD(Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum."""

    lr: float = Field(0.05, gt=0, le=10, description="peak learning rate")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0, le=1)

    def build(self, params: Any) -> Any:
        import torch

        nesterov = self.nesterov and self.momentum > 0  # torch rejects nesterov without momentum
        return torch.optim.SGD(
            params, lr=self.lr, momentum=self.momentum, nesterov=nesterov,
            weight_decay=self.weight_decay,
        )


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""

    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1, description="0.98 suits short runs better than 0.999")
    eps: float = Field(1e-8, gt=0, le=1e-3)
    weight_decay: float = Field(0.01, ge=0, le=1)

    def build(self, params: Any) -> Any:
        import torch

        return torch.optim.AdamW(
            params, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps,
            weight_decay=self.weight_decay,
        )


@hookimpl
def register_optimizers(register):
    register("sgd", SGD)
    register("adamw", AdamW)
