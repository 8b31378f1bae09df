"""Full-batch vs mini-batch gradient descent from one seed: the tutorial's experiment, per epoch,
at equal updates and at equal wall time."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from .._checks import check_positive_int
from ..setup import LoaderFactory, build
from ..training import (
    Budget,
    History,
    train,
    train_full_batch,
    train_minibatch,
)


@dataclass
class Comparison:
    """Full-batch vs mini-batch from the same data and initial weights.

    ``full_equal_updates`` is full-batch GD given as many updates as mini-batch took.
    ``full_equal_time`` (when asked for) is full-batch GD given as much training time as
    mini-batch took (``mini.wall_time``, evaluation excluded): the updates whose
    cumulative training time stayed within that budget, one per "epoch" of the History.
    """

    config: dict
    full: History
    mini: History
    full_equal_updates: History
    full_equal_time: History | None = None

    def to_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "full": self.full.to_dict(),
            "mini": self.mini.to_dict(),
            "full_equal_updates": self.full_equal_updates.to_dict(),
            "full_equal_time": None if self.full_equal_time is None else self.full_equal_time.to_dict(),
        }


def _truncate_per_update(h: History, k: int) -> History:
    """The first ``k`` updates of a one-update-per-epoch History."""
    return History(
        method=h.method, update_losses=h.update_losses[:k], epoch_loss=h.epoch_loss[:k + 1],
        epoch_accuracy=h.epoch_accuracy[:k + 1], steps_per_epoch=h.steps_per_epoch[:k],
        samples_per_epoch=h.samples_per_epoch[:k], epoch_time=h.epoch_time[:k],
        update_full_losses=h.update_full_losses[:k],
    )


def _train_full_batch_for(init: nn.Module, X: torch.Tensor, y: torch.Tensor, *, seconds: float, lr: float,
                          device: str | torch.device, max_updates: int) -> History:
    """Full-batch GD, one update per History epoch, for as many updates as fit in ``seconds`` of training."""
    dev = torch.device(device)
    Xd, yd = X.to(dev), y.to(dev)
    h = train(copy.deepcopy(init).to(dev), [(Xd, yd)], epochs=max_updates, lr=lr, device=dev, eval_data=(Xd, yd),
              method="full-batch", budget=Budget(seconds=seconds))
    return _truncate_per_update(h, sum(t <= seconds for t in h.epoch_time))


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
    equal_time: bool = False,
) -> Comparison:
    """Run the tutorial's two cases from one seed.

    The seed fixes the data (:func:`make_seed_data`), the initial weights (shared by both
    methods) and the shuffling generator. Defaults are the tutorial's: N=1000, 3 features,
    batch 32, shuffle, SGD lr=0.1, 5 epochs. ``equal_updates`` adds full-batch GD given
    the mini-batch run's number of updates; ``equal_time`` adds full-batch GD given its
    training time (wall-clock, so that part varies from run to run; at most 1000 times
    the mini-batch run's updates).
    """
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    X, y, init, loader = build(n=n, features=features, seed=seed, batch_size=batch_size, shuffle=shuffle,
                               loader_factory=loader_factory)
    # The full-data loss after every update, for both methods: what C3 compares, and the per-update plot.
    full = train_full_batch(copy.deepcopy(init), X, y, epochs=epochs, lr=lr, device=device, track_full_loss=True)
    mini = train_minibatch(copy.deepcopy(init), loader, X, y, epochs=epochs, lr=lr, device=device,
                           track_full_loss=True)
    if equal_updates:
        full_eq = train_full_batch(copy.deepcopy(init), X, y, epochs=mini.total_steps, lr=lr, device=device,
                                   track_full_loss=True)
    else:
        full_eq = History(method="full-batch")
    full_time = None
    if equal_time:
        full_time = _train_full_batch_for(init, X, y, seconds=mini.wall_time, lr=lr, device=device,
                                          max_updates=max(1, 1000 * mini.total_steps))
    config = dict(n=n, features=features, batch_size=batch_size, epochs=epochs, lr=lr, seed=seed,
                  shuffle=shuffle, device=str(device))
    return Comparison(config=config, full=full, mini=mini, full_equal_updates=full_eq, full_equal_time=full_time)
