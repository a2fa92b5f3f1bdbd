"""Built-in weight initialisations."""

from __future__ import annotations

from typing import Any

from autostage.components import Init
from autostage.hookspecs import hookimpl


class Default(Init):
    """Keep the initialisation the model's own constructor applied (e.g. GPT-2's)."""

    def apply(self, model: Any) -> None:
        return None  # the constructor already initialised the weights: nothing to redo


@hookimpl
def register_inits(register):
    register("default", Default)
