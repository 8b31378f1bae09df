"""Claim C11: mini-batch training on label-sorted data, with and without shuffling."""

from __future__ import annotations

from torch.utils.data import DataLoader

from ..setup import build
from ..training import (
    History,
    train_minibatch,
)
from .compare import LoaderFactory

# --- C11 ----------------------------------------------------------------------------------------

def order_pattern_experiment(
    *,
    shuffle: bool,
    n: int = 1000,
    features: int = 3,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    seed: int = 0,
    loader_factory: LoaderFactory = DataLoader,
) -> History:
    """Mini-batch training on label-sorted data, with or without shuffling (claim C11)."""
    s = build(n=n, features=features, seed=seed, batch_size=batch_size, shuffle=shuffle, loader_factory=loader_factory,
              sort_labels=True)
    return train_minibatch(s.model, s.loader, s.X, s.y, epochs=epochs, lr=lr)
