"""Built-in weight initialisations. Each runs once, on a freshly built model, under the
trial's torch seed (trainers seed torch before building the model), so the same seed gives
the same weights. torch is imported inside `apply`.

Which tensors each one touches: `normal` and `scaled_residual` every weight matrix (any
parameter with two or more dimensions: linear layers, embeddings); `xavier_uniform` and
`kaiming` the weights of linear layers only (a lookup table has no fan-in to preserve), and
each zeroes those layers' biases. Norm gains are left as the model built them. A weight tied
to another (GPT-2's output head is its token embedding) is initialised once, and stays tied.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from autostage.components import Init
from autostage.errors import AutostageError
from autostage.hookspecs import hookimpl

# transformers' GPT-2 uses Conv1D, a linear layer whose weight is stored (in, out)
_LINEAR = ("Linear", "Conv1D")
_LAYER_COUNT = ("n_layer", "num_hidden_layers", "num_layers", "n_layers")


def _matrices(model: Any) -> Iterator[tuple[str, Any, Any]]:
    """(module name, module, parameter) of every weight matrix, each tensor once."""
    seen: set[int] = set()
    for name, module in model.named_modules():
        for p in module.parameters(recurse=False):
            if p.dim() >= 2 and id(p) not in seen:
                seen.add(id(p))
                yield name, module, p


def _linear_weights(model: Any) -> Iterator[Any]:
    """Weights of linear layers, viewed (out, in) as torch's fan-in/fan-out rules expect."""
    for _, module, p in _matrices(model):
        kind = type(module).__name__
        if kind in _LINEAR and p is getattr(module, "weight", None):
            yield p.T if kind == "Conv1D" else p


def _zero_biases(model: Any, linear_only: bool = False) -> None:
    for module in model.modules():
        if linear_only and type(module).__name__ not in _LINEAR:
            continue
        bias = getattr(module, "bias", None)
        if bias is not None and hasattr(bias, "zero_"):
            bias.zero_()


class Default(Init):
    """Keep the initialisation the model's own constructor applied (e.g. GPT-2's)."""

    def apply(self, model: Any) -> None:
        return None  # the constructor already initialised the weights: nothing to redo


class Normal(Init):
    """Every weight matrix from N(0, std); biases zero (GPT-2 and BERT use std 0.02)."""

    std: float = Field(0.02, ge=1e-4, le=1, description="standard deviation of the weights")

    def apply(self, model: Any) -> None:
        import torch

        with torch.no_grad():
            for _, _, p in _matrices(model):
                p.normal_(0.0, self.std)
            _zero_biases(model)


class XavierUniform(Init):
    """Linear layers from Glorot & Bengio's (2010) uniform, keeping activation variance
    about equal forward and backward; their biases zero. Embeddings keep their own init."""

    gain: float = Field(1.0, gt=0, le=10, description="scale on the Glorot bound")

    def apply(self, model: Any) -> None:
        import torch

        with torch.no_grad():
            for w in _linear_weights(model):
                torch.nn.init.xavier_uniform_(w, gain=self.gain)
            _zero_biases(model, linear_only=True)


class Kaiming(Init):
    """Linear layers from He et al.'s (2015) init for rectifier networks; biases zero.
    Embeddings keep their own init."""

    mode: Literal["fan_in", "fan_out"] = Field("fan_in", description="variance kept forward "
                                               "(fan_in) or backward (fan_out)")
    distribution: Literal["normal", "uniform"] = "normal"
    nonlinearity: Literal["relu", "leaky_relu", "linear"] = "relu"

    def apply(self, model: Any) -> None:
        import torch

        fill = (torch.nn.init.kaiming_normal_ if self.distribution == "normal"
                else torch.nn.init.kaiming_uniform_)
        with torch.no_grad():
            for w in _linear_weights(model):
                fill(w, mode=self.mode, nonlinearity=self.nonlinearity)
            _zero_biases(model, linear_only=True)


class ScaledResidual(Init):
    """GPT-2's init (Radford et al. 2019): every weight matrix from N(0, std), then the
    projections that write into the residual stream scaled by 1/sqrt(2 * n_layer), so the
    stream's variance does not grow with depth (two residual writes per block).

    Residual projections are found by module name (`residual_projections`, suffixes of
    GPT-2, BERT, Llama and OPT names; a subclass may name others); n_layer comes from the model's
    config, else from the number of blocks holding such projections.
    """

    residual_projections: ClassVar[tuple[str, ...]] = (
        "attention.output.dense",  # BERT: attention output (before "output.dense")
        "self_attn.o_proj", "mlp.down_proj",  # Llama
        "self_attn.out_proj", "fc2",  # OPT (the trainer's norm = "post-layernorm")
        "attn.c_proj", "mlp.c_proj",  # GPT-2
        "output.dense",  # BERT: feed-forward output
    )

    std: float = Field(0.02, ge=1e-4, le=1, description="standard deviation of the weights")

    def apply(self, model: Any) -> None:
        import torch

        projections = self._projections(model)
        if not projections:
            raise AutostageError(
                f"init 'scaled_residual' found no residual projections in "
                f"{type(model).__name__}: no module name ends in "
                f"{', '.join(self.residual_projections)}"
            )
        scale = 1.0 / math.sqrt(2 * _layers(model, projections))
        Normal(std=self.std).apply(model)
        with torch.no_grad():
            for module in projections.values():
                module.weight.mul_(scale)

    def _projections(self, model: Any) -> dict[str, Any]:
        """Block name -> residual projection modules; a block is the name before the match."""
        found: dict[str, Any] = {}
        for name, module in model.named_modules():
            for suffix in self.residual_projections:  # longest first: BERT's names nest
                if name == suffix or name.endswith("." + suffix):
                    block = name[: -len(suffix)].rstrip(".")
                    found[f"{block}|{suffix}"] = module
                    break
        return found


def _layers(model: Any, projections: dict[str, Any]) -> int:
    config = getattr(model, "config", None)
    for attr in _LAYER_COUNT:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return len({key.split("|")[0] for key in projections})


@hookimpl
def register_inits(register):
    register("default", Default)
    register("normal", Normal)
    register("xavier_uniform", XavierUniform)
    register("kaiming", Kaiming)
    register("scaled_residual", ScaledResidual)
