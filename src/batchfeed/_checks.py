"""Argument checks shared by the library: a bad value raises naming the argument and the value."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_positive_float", "check_positive_int"]


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (not bool); else ValueError naming ``name`` and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive_float(name: str, value: Any) -> float:
    """``value`` as a float if it is a positive finite number (not bool); else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
