"""The tutorial's experiment, done properly: the same data, the same initial weights,
full-batch vs mini-batch gradient descent, per epoch and per update.

The CLI, the spec and the claims ledger all call these functions; there is no second
copy of the experiment anywhere.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from .datasets import PairDataset, make_seed_data
from .training import History, make_model, train_full_batch, train_minibatch

__all__ = ["Comparison", "LoaderFactory", "compare", "order_pattern_experiment", "sort_by_label"]

#: A callable with torch DataLoader's constructor keywords that returns an iterable of batches.
LoaderFactory = Callable[..., object]


@dataclass
class Comparison:
    """Full-batch vs mini-batch from the same data and initial weights.

    ``full_equal_updates`` is full-batch GD given as many updates as mini-batch took.
    """

    config: dict
    full: History
    mini: History
    full_equal_updates: History

    def to_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "full": self.full.to_dict(),
            "mini": self.mini.to_dict(),
            "full_equal_updates": self.full_equal_updates.to_dict(),
        }


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def compare(
    *,
    n: int = 1000,
    features: int = 3,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    seed: int = 0,
    shuffle: bool = True,
    device: str | torch.device = "cpu",
    loader_factory: LoaderFactory = DataLoader,
    equal_updates: bool = True,
) -> Comparison:
    """Run the tutorial's two cases from one seed.

    The seed fixes the data (:func:`make_seed_data`), the initial weights (shared by both
    methods) and the shuffling generator. Defaults are the tutorial's: N=1000, 3 features,
    batch 32, shuffle, SGD lr=0.1, 5 epochs.
    """
    _check_positive_int("n", n)
    _check_positive_int("batch_size", batch_size)
    X, y = make_seed_data(n, features, seed)
    init = make_model(features, 2, seed)
    loader = loader_factory(
        PairDataset(X, y), batch_size=batch_size, shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
    )
    full = train_full_batch(copy.deepcopy(init), X, y, epochs=epochs, lr=lr, device=device)
    mini = train_minibatch(copy.deepcopy(init), loader, X, y, epochs=epochs, lr=lr, device=device)
    if equal_updates:
        full_eq = train_full_batch(copy.deepcopy(init), X, y, epochs=mini.total_steps, lr=lr, device=device)
    else:
        full_eq = History(method="full-batch")
    config = dict(n=n, features=features, batch_size=batch_size, epochs=epochs, lr=lr, seed=seed,
                  shuffle=shuffle, device=str(device))
    return Comparison(config=config, full=full, mini=mini, full_equal_updates=full_eq)


def sort_by_label(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The data reordered so that all samples of class 0 come first (a stable sort)."""
    order = torch.sort(y, stable=True).indices
    return X[order], y[order]


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
    X, y = sort_by_label(*make_seed_data(n, features, seed))
    loader = loader_factory(
        PairDataset(X, y), batch_size=batch_size, shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
    )
    return train_minibatch(make_model(features, 2, seed), loader, X, y, epochs=epochs, lr=lr)
