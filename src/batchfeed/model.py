"""The tutorial's model, ``Sequential(Linear(features, classes))`` with seeded initial weights,
and its full-data evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ._checks import check_positive_int

__all__ = ["evaluate", "make_model"]


def make_model(features: int = 3, classes: int = 2, seed: int = 0) -> nn.Sequential:
    """The tutorial's model, ``Sequential(Linear(features, classes))``, seeded.

    The weights follow ``nn.Linear``'s default initialisation, U(-1/sqrt(features),
    1/sqrt(features)), drawn from a private generator: the global RNG is not touched.
    """
    check_positive_int("features", features)
    check_positive_int("classes", classes)
    model = nn.Sequential(nn.Linear(features, classes, device="meta")).to_empty(device="cpu")
    g = torch.Generator().manual_seed(int(seed))
    bound = 1.0 / math.sqrt(features)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-bound, bound, generator=g)
    return model


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn: Callable | None = None) -> tuple[float, float]:
    """Full-data ``(loss, accuracy)`` of ``model`` on ``(X, y)`` in eval mode, without gradients.

    The model is left in the mode it came in. ``loss_fn`` defaults to ``CrossEntropyLoss()``.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(X)
            loss = float(loss_fn(out, y))
            acc = float((out.argmax(dim=1) == y).float().mean())
    finally:
        model.train(was_training)
    return loss, acc


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
