"""Naming a loader on a command line: ``module:callable``, resolved to the callable.

One resolver for ``pytest --loader``, ``batchfeed compare --loader`` and the memory
workloads that rebuild a loader in a fresh process from its name.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["DEFAULT_LOADER", "resolve"]

DEFAULT_LOADER = "torch.utils.data:DataLoader"


def resolve(spec: str) -> Any:
    """Import ``module:callable`` (``attr`` may be dotted); ValueError naming the value if it is
    not that form, the module does not import, the attribute is missing or not callable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r}: expected MODULE:CALLABLE, e.g. {DEFAULT_LOADER}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{spec!r}: {attr!r} is not callable")
    return obj
