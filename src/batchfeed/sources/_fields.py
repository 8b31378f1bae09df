"""Fields of a CSV chunk parsed into an array as Python's ``float()``/``int()`` read them,
or the first bad field located (its index in the chunk and why)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["BadField", "fill_text", "parse_fields"]


class BadField(Exception):
    """Field ``index`` of a chunk's flat field list is bad; ``reason`` says how."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(index, reason)
        self.index, self.reason = index, reason


def _first_bad(strings: Sequence[str], parse: Callable[[str], Any]) -> int:
    for k, s in enumerate(strings):
        try:
            parse(s)
        except (ValueError, OverflowError):
            return k
    raise AssertionError("a chunk failed to parse but every field parses")  # pragma: no cover


def _floats(strings: Sequence[str], dtype: np.dtype) -> np.ndarray:
    """The fields as ``dtype``, each read as Python's ``float()`` reads it; a finite value that
    ``dtype`` cannot hold (1e39 in float32) is an error, not an infinity."""
    try:
        wide = np.fromiter(map(float, strings), dtype=np.float64, count=len(strings))
    except ValueError:
        raise BadField(_first_bad(strings, float), "is not a number") from None
    for k in np.flatnonzero(np.isinf(wide)):  # "1e999" is no infinity: float() rounds it to one
        if strings[k].strip().lower().lstrip("+-") not in ("inf", "infinity"):
            raise BadField(int(k), "overflows float64")
    if dtype == np.float64:
        return wide
    with np.errstate(over="ignore"):
        out = wide.astype(dtype)
    over = np.flatnonzero(np.isinf(out) & np.isfinite(wide))
    if over.size:
        raise BadField(int(over[0]), f"overflows {dtype}")
    return out


def _integer(s: str) -> int:
    """``s`` as an int: an integer literal, or a float literal with an exact integral value."""
    try:
        return int(s)
    except ValueError:
        f = float(s)  # ValueError: not a number at all
    if not (np.isfinite(f) and f.is_integer()) or abs(f) > 2**53:
        raise OverflowError(f"{s!r} is not an integer")
    return int(f)


def _integers(strings: Sequence[str], dtype: np.dtype) -> np.ndarray:
    """The fields as ``dtype``; a non-integral value or one out of the dtype's range is an error."""
    info = np.iinfo(dtype)
    try:
        wide = np.fromiter(map(int, strings), dtype=np.int64 if dtype.kind == "i" else np.uint64, count=len(strings))
    except (ValueError, OverflowError):  # "3.0", "1e3", or beyond 64 bits: field by field
        values = []
        for k, s in enumerate(strings):
            try:
                v = _integer(s)
            except ValueError:
                raise BadField(k, "is not a number") from None
            except OverflowError:
                raise BadField(k, f"is not an integer (dtype {dtype})") from None
            if not info.min <= v <= info.max:
                raise BadField(k, f"is out of range for {dtype}")
            values.append(v)
        return np.array(values, dtype=dtype)
    out_of_range = np.flatnonzero((wide < info.min) | (wide > info.max))
    if out_of_range.size:
        raise BadField(int(out_of_range[0]), f"is out of range for {dtype}")
    return wide.astype(dtype)


def parse_fields(strings: Sequence[str], dtype: np.dtype, fill: str | None = None) -> np.ndarray:
    """The fields as a ``dtype`` array; ``fill`` is the text an empty (or blank) field stands for
    (None: an empty field is not a number). BadField names the first field that will not do."""
    parse = _floats if dtype.kind == "f" else _integers
    try:
        return parse(strings, dtype)
    except BadField:
        if fill is None:
            raise
    return parse([s if s.strip() else fill for s in strings], dtype)


def fill_text(missing: Any, dtype: np.dtype) -> str | None:
    """``missing`` (a number or None) as the text :func:`parse_fields` puts in empty fields;
    ValueError if ``dtype`` cannot hold it (nan in an integer dtype, 1e39 in float32)."""
    if missing is None:
        return None
    if isinstance(missing, bool) or not isinstance(missing, numbers.Real):
        raise TypeError(f"missing must be a number or None, got {type(missing).__name__} {missing!r}")
    if dtype.kind == "f":
        text = repr(float(missing))
    elif float(missing).is_integer():
        text = str(int(missing))
    else:
        raise ValueError(f"missing={missing!r} is not an integer (dtype {dtype})")
    try:
        parse_fields([text], dtype)
    except BadField as bad:
        raise ValueError(f"missing={missing!r} {bad.reason}") from None
    return text
