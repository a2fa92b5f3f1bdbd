"""Which of two values is better: the one rule the trial loop, the search driver, the live
view and the report share. A value that is not a finite number is never better."""

from __future__ import annotations

import math
from typing import Literal

Mode = Literal["min", "max"]


def finite(value: object) -> float | None:
    """`value` as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def better(a: object, b: object, mode: str) -> bool:
    """True when `a` is strictly better than `b` under `mode` ("min" or "max"). A finite `a`
    beats a missing or non-finite `b`; a non-finite `a` beats nothing."""
    x, y = finite(a), finite(b)
    if x is None:
        return False
    if y is None:
        return True
    return x < y if mode == "min" else x > y
