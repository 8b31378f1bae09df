"""Argument checks shared by the library: a bad value raises naming the argument and the value."""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

__all__ = ["check_index", "check_positive_float", "check_positive_int"]


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


def check_index(idx: Any, n: int, owner: str) -> int:
    """``idx`` as an int in ``[0, n)``; negative indices count from the end. The one index check
    of batchfeed's datasets and of TensorLoader's samplers.

    A bool, a float and a tensor that is not a 0-d integer are not indices (``operator.index``
    would read any one-element integer or bool tensor as an int, where torch indexing with it
    means something else: ``t[True]`` is the whole tensor): TypeError naming ``owner``, the
    type and the value. Out of range: IndexError naming the index and the length.
    """
    import torch

    bad = isinstance(idx, (bool, float, complex)) or (
        isinstance(idx, torch.Tensor) and (idx.dim() != 0 or idx.dtype == torch.bool or idx.is_floating_point()))
    try:
        if bad:
            raise TypeError
        i = operator.index(idx)
    except TypeError:
        raise TypeError(f"{owner} indices must be integers, got {type(idx).__name__} {idx!r}") from None
    if not -n <= i < n:
        raise IndexError(f"index {i} out of range for dataset of length {n}")
    return i + n if i < 0 else i
