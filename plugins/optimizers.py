"""Built-in optimizers. torch is imported inside `build`, so listing and validating are fast.

Every optimizer's `lr` is the peak LR: trainers set each param group's `lr` every step from
the stage's schedule, so an optimizer must read the LR from its param groups (all of torch's
do, and so does our Lion).
"""

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


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); its weight decay is an L2 term in the gradient (see adamw)."""

    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.98, ge=0, lt=1, description="0.98 suits short runs better than 0.999")
    eps: float = Field(1e-8, gt=0, le=1e-3)
    weight_decay: float = Field(0.0, ge=0, le=1, description="L2 penalty, scaled by Adam")

    def build(self, params: Any) -> Any:
        import torch

        return torch.optim.Adam(
            params, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps,
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


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011): per-coordinate steps shrink with the summed squared
    gradients, so it needs a larger LR than Adam."""

    lr: float = Field(0.01, gt=0, le=10, description="peak learning rate")
    lr_decay: float = Field(0.0, ge=0, le=1, description="torch's extra 1/(1 + step * decay)")
    initial_accumulator_value: float = Field(0.0, ge=0, le=10)
    eps: float = Field(1e-10, gt=0, le=1e-3)
    weight_decay: float = Field(0.0, ge=0, le=1)

    def build(self, params: Any) -> Any:
        import torch

        return torch.optim.Adagrad(
            params, lr=self.lr, lr_decay=self.lr_decay, eps=self.eps,
            initial_accumulator_value=self.initial_accumulator_value,
            weight_decay=self.weight_decay,
        )


class RMSprop(Optimizer):
    """RMSprop (Hinton 2012): steps divided by a running RMS of the gradients."""

    lr: float = Field(1e-3, gt=0, le=1, description="peak learning rate")
    alpha: float = Field(0.99, ge=0, lt=1, description="smoothing of the squared gradients")
    eps: float = Field(1e-8, gt=0, le=1e-3)
    momentum: float = Field(0.0, ge=0, lt=1)
    centered: bool = Field(False, description="divide by the gradient's variance, not its RMS")
    weight_decay: float = Field(0.0, ge=0, le=1)

    def build(self, params: Any) -> Any:
        import torch

        return torch.optim.RMSprop(
            params, lr=self.lr, alpha=self.alpha, eps=self.eps, momentum=self.momentum,
            centered=self.centered, weight_decay=self.weight_decay,
        )


class Adafactor(Optimizer):
    """Adafactor (Shazeer & Stern 2018), torch's implementation: factored second moments (a
    row and a column vector per matrix) instead of Adam's full ones, and relative steps.

    Its `lr` is a cap on the relative step: a parameter moves by about
    `min(lr, 1/sqrt(step)) * max(eps2, RMS(parameter))`, so it is not comparable with Adam's.
    """

    lr: float = Field(1e-2, gt=0, le=1, description="cap on the relative step size")
    beta2_decay: float = Field(-0.8, ge=-1, le=-0.1, description="second-moment decay exponent")
    eps2: float = Field(1e-3, gt=0, le=0.1, description="smallest parameter scale a step uses")
    clip_threshold: float = Field(1.0, gt=0, le=10, description="update RMS clipping (torch d)")
    weight_decay: float = Field(0.0, ge=0, le=1)

    def build(self, params: Any) -> Any:
        import torch

        return torch.optim.Adafactor(
            params, lr=self.lr, beta2_decay=self.beta2_decay, eps=(None, self.eps2),
            d=self.clip_threshold, weight_decay=self.weight_decay,
        )


class Lion(Optimizer):
    """Lion (Chen et al. 2023): the sign of an interpolated momentum, decoupled weight decay.
    Every coordinate moves by the LR, hence an LR 3-10x below AdamW's and a weight decay
    3-10x above it (so lr * weight_decay stays about the same)."""

    lr: float = Field(1e-4, gt=0, le=1, description="peak learning rate")
    beta1: float = Field(0.9, ge=0, lt=1, description="momentum mixed into the update's sign")
    beta2: float = Field(0.99, ge=0, lt=1, description="momentum kept for the next step")
    weight_decay: float = Field(0.1, ge=0, le=10)

    def build(self, params: Any) -> Any:
        from autostage_plugins.lion import Lion as TorchLion

        return TorchLion(params, lr=self.lr, betas=(self.beta1, self.beta2),
                         weight_decay=self.weight_decay)


@hookimpl
def register_optimizers(register):
    register("sgd", SGD)
    register("adam", Adam)
    register("adamw", AdamW)
    register("adagrad", Adagrad)
    register("rmsprop", RMSprop)
    register("adafactor", Adafactor)
    register("lion", Lion)
