"""The tutorial's model, ``Sequential(Linear(features, classes))`` with seeded initial weights,
and its full-data evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from ._checks import check_positive_int

__all__ = ["evaluate", "full_batch_gradient", "make_model", "model_device"]


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


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s first parameter is (the CPU for a model without parameters): where training puts its batches."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def full_batch_gradient(model: nn.Module, loss_fn: Callable, loader: Iterable) -> list[torch.Tensor]:
    """The exact full-batch gradient, accumulated one micro-batch at a time.

    ``loader`` yields ``(x, y)`` batches that together are the full data (any sizes, an
    uneven last batch included). For a ``loss_fn`` averaging over its batch (reduction
    ``"mean"``, the default of torch's losses) each micro-batch's gradient is weighted by
    its size / N, which gives exactly the gradient of the mean loss over all N samples; a
    naive average of micro-batch gradients weights a short last batch too much. With
    reduction ``"sum"`` the gradients are summed. Batches go to the model's device.

    Memory is that of one micro-batch's forward/backward plus one gradient buffer: O(B),
    not O(N). The gradients are left in each parameter's ``.grad`` (so
    ``optimizer.step()`` then takes one full-batch GD step) and returned, one per parameter
    that requires a gradient, in ``model.parameters()`` order.

    Raises ValueError if ``loader`` yields no samples or ``loss_fn`` has reduction ``"none"``.
    """
    reduction = getattr(loss_fn, "reduction", "mean")
    if reduction not in ("mean", "sum"):
        raise ValueError(f"full_batch_gradient needs a loss with reduction 'mean' or 'sum', got {reduction!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    dev = model_device(model)
    n = 0
    for xb, yb in loader:
        xb, yb = xb.to(dev), yb.to(dev)
        b = int(yb.shape[0])
        loss = loss_fn(model(xb), yb)
        (loss * b if reduction == "mean" else loss).backward()
        n += b
    if n == 0:
        raise ValueError("full_batch_gradient: loader yielded no samples")
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        elif reduction == "mean":
            p.grad.div_(n)
        grads.append(p.grad)
    return grads
