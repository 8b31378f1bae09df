"""The one place an experiment's pieces are built from a seed: the tutorial's data, the
model's initial weights, and a loader whose shuffling is seeded too.

Every experiment (compare, the sweep, the label-sorted run, the memory workloads'
reference, checkpointed and distributed training) starts here, so the same seed means the
same data, weights and order everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .datasets import PairDataset, make_seed_data
from .training import make_model

__all__ = ["Setup", "build", "sort_by_label"]

#: ``loader_factory(dataset, batch_size=, shuffle=, generator=)``: DataLoader's keywords.
LoaderFactory = Callable[..., Any]


@dataclass(frozen=True)
class Setup:
    """The tutorial's data ``(X, y)``, the model with its seeded initial weights, and the loader
    (None when no batch size was asked for)."""

    X: torch.Tensor
    y: torch.Tensor
    model: nn.Module
    loader: Any = None

    def __iter__(self) -> Iterator[Any]:
        """``X, y, model, loader = build(...)``."""
        return iter((self.X, self.y, self.model, self.loader))


def sort_by_label(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The data reordered so that all samples of class 0 come first (a stable sort)."""
    order = torch.sort(y, stable=True).indices
    return X[order], y[order]


def build(*, n: int, features: int = 3, seed: int = 0, batch_size: int | None = None, shuffle: bool = True,
          loader_factory: LoaderFactory = DataLoader, sort_labels: bool = False) -> Setup:
    """Data, model and loader from ``seed``: ``make_seed_data(n, features, seed)`` (label-sorted
    with ``sort_labels``), ``make_model(features, 2, seed)``, and with ``batch_size``
    ``loader_factory(PairDataset(X, y), batch_size=, shuffle=, generator=Generator().manual_seed(seed))``."""
    X, y = make_seed_data(n, features, seed)
    if sort_labels:
        X, y = sort_by_label(X, y)
    loader = None
    if batch_size is not None:
        loader = loader_factory(PairDataset(X, y), batch_size=batch_size, shuffle=shuffle,
                                generator=torch.Generator().manual_seed(seed))
    return Setup(X, y, make_model(features, 2, seed), loader)
