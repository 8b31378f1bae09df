"""Full-batch and mini-batch gradient descent, instrumented.

Both loops train with the tutorial's loss and optimizer (``CrossEntropyLoss`` + ``SGD(lr)``)
and return a :class:`History`. Optimizer steps are counted with a step hook, so the count
is what really happened, not a formula.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ._checks import check_positive_float, check_positive_int

__all__ = [
    "DivergenceError",
    "History",
    "evaluate",
    "full_batch_gradient",
    "make_model",
    "train_full_batch",
    "train_minibatch",
]


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss; the message names the epoch and step."""


@dataclass
class History:
    """What one training run did.

    Attributes:
        method: ``"full-batch"`` or ``"mini-batch"``.
        update_losses: the training loss of every optimizer update, in order.
        epoch_loss: full-data loss after each epoch; ``epoch_loss[0]`` is before training.
        epoch_accuracy: full-data accuracy after each epoch; index 0 is before training.
        steps_per_epoch: optimizer steps taken in each epoch (counted by a step hook).
        samples_per_epoch: samples that went through forward/backward in each epoch.
        epoch_time: cumulative training wall time in seconds at the end of each epoch
            (evaluation excluded).
        update_full_losses: full-data loss after every optimizer update, in order; filled
            only when training was asked to track it (``track_full_loss=True``); its time
            is excluded from ``epoch_time``.
    """

    method: str
    update_losses: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    epoch_accuracy: list[float] = field(default_factory=list)
    steps_per_epoch: list[int] = field(default_factory=list)
    samples_per_epoch: list[int] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    update_full_losses: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_epoch)

    @property
    def updates_so_far(self) -> list[int]:
        """Cumulative optimizer steps at the end of each epoch, starting with 0."""
        out = [0]
        for s in self.steps_per_epoch:
            out.append(out[-1] + s)
        return out

    @property
    def final_loss(self) -> float:
        return self.epoch_loss[-1]

    @property
    def wall_time(self) -> float:
        return self.epoch_time[-1] if self.epoch_time else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


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


def _check_epochs(epochs: int) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")


class _StepCounter:
    """Counts real ``optimizer.step()`` calls through a post-step hook."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.count = 0
        self._handle = optimizer.register_step_post_hook(self._hook)

    def _hook(self, *_: object) -> None:
        self.count += 1

    def close(self) -> None:
        self._handle.remove()


def _run(
    method: str,
    model: nn.Module,
    batches: Iterable,
    eval_data: tuple[torch.Tensor, torch.Tensor],
    epochs: int,
    lr: float,
    optimizer: torch.optim.Optimizer | None,
    loss_fn: Callable | None,
    device: torch.device,
    on_epoch: Callable[[History], None] | None,
    track_full_loss: bool = False,
) -> History:
    check_positive_float("lr", lr)
    _check_epochs(epochs)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    X_eval, y_eval = (t.to(device) for t in eval_data)
    hist = History(method=method)
    loss0, acc0 = evaluate(model, X_eval, y_eval, loss_fn)
    hist.epoch_loss.append(loss0)
    hist.epoch_accuracy.append(acc0)
    counter = _StepCounter(optimizer)
    elapsed = 0.0
    model.train()
    try:
        for epoch in range(1, epochs + 1):
            steps_before, samples = counter.count, 0
            start = time.perf_counter()
            losses: list[torch.Tensor] = []
            for step, (xb, yb) in enumerate(batches, start=1):  # one pass over batches per epoch
                xb = xb.to(device, non_blocking=True)
                yb = yb.to(device, non_blocking=True)
                loss = loss_fn(model(xb), yb)
                if not torch.isfinite(loss):
                    raise DivergenceError(
                        f"{method} training diverged: loss={float(loss.detach())} at epoch {epoch}, step {step} (lr={lr})"
                    )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                samples += int(yb.shape[0])
                if track_full_loss:  # the full data's loss after this update, off the clock
                    paused = time.perf_counter()
                    hist.update_full_losses.append(evaluate(model, X_eval, y_eval, loss_fn)[0])
                    start += time.perf_counter() - paused
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed += time.perf_counter() - start
            hist.update_losses.extend(torch.stack(losses).tolist() if losses else [])
            hist.steps_per_epoch.append(counter.count - steps_before)
            hist.samples_per_epoch.append(samples)
            hist.epoch_time.append(elapsed)
            loss_e, acc_e = evaluate(model, X_eval, y_eval, loss_fn)
            if not math.isfinite(loss_e):
                raise DivergenceError(f"{method} training diverged: full-data loss={loss_e} after epoch {epoch} (lr={lr})")
            hist.epoch_loss.append(loss_e)
            hist.epoch_accuracy.append(acc_e)
            if on_epoch is not None:
                on_epoch(hist)
    finally:
        counter.close()
    return hist


def train_full_batch(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 5,
    lr: float = 0.1,
    steps_per_epoch: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable | None = None,
    device: str | torch.device | None = None,
    on_epoch: Callable[[History], None] | None = None,
    track_full_loss: bool = False,
) -> History:
    """The tutorial's Case 1: the loss on all of ``(X, y)``, one update per step.

    ``steps_per_epoch`` full-batch updates are taken per epoch (1, as in the tutorial;
    more gives full-batch GD as many updates as a mini-batch run, for a fair comparison).
    The data is moved to ``device`` (default: the model's device) once.
    ``track_full_loss`` records the full-data loss after every update (``update_full_losses``).
    """
    check_positive_int("steps_per_epoch", steps_per_epoch)
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    Xd, yd = X.to(dev), y.to(dev)
    return _run(
        "full-batch", model, [(Xd, yd)] * steps_per_epoch, (Xd, yd),
        epochs, lr, optimizer, loss_fn, dev, on_epoch, track_full_loss,
    )


def train_minibatch(
    model: nn.Module,
    loader: Iterable,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 5,
    lr: float = 0.1,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable | None = None,
    device: str | torch.device | None = None,
    on_epoch: Callable[[History], None] | None = None,
    track_full_loss: bool = False,
) -> History:
    """The tutorial's Case 2: one update per ``(x, y)`` batch that ``loader`` yields.

    ``loader`` is iterated once per epoch (a DataLoader, a TensorLoader, or any iterable
    that can be iterated again). ``(X, y)`` is the full data used for the per-epoch
    evaluation (and, with ``track_full_loss``, the one after every update). Batches are
    moved to ``device`` (default: the model's device).
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    return _run("mini-batch", model, loader, (X, y), epochs, lr, optimizer, loss_fn, dev, on_epoch, track_full_loss)


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
    dev = _model_device(model)
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
