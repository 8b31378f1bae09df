"""Full-batch and mini-batch gradient descent, instrumented.

Both loops train with the tutorial's loss and optimizer (``CrossEntropyLoss`` + ``SGD(lr)``)
and return a :class:`History`. Optimizer steps are counted with a step hook, so the count
is what really happened, not a formula.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ._checks import check_positive_float, check_positive_int
from .model import evaluate, full_batch_gradient, make_model, model_device

__all__ = [
    "Budget",
    "DivergenceError",
    "Stop",
    "StepInfo",
    "History",
    "accumulate",
    "evaluate",
    "full_batch_gradient",
    "make_model",
    "train",
    "train_full_batch",
    "train_minibatch",
    "update",
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
        stopped: why training ended before its epochs: ``"steps"``, ``"samples"`` or
            ``"seconds"`` (a :class:`Budget` spent), ``"hook"`` (a hook raised :class:`Stop`).
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
    stopped: str | None = None

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


class Stop(Exception):
    """Raised by an ``on_step`` or ``on_epoch`` hook to end training cleanly: the step that
    raised it counts, the History is returned with ``stopped="hook"``."""


@dataclass(frozen=True)
class Budget:
    """Training stops once any limit is reached: optimizer steps, samples trained on, or
    seconds of training (evaluation excluded). ``None`` is no limit."""

    steps: int | None = None
    samples: int | None = None
    seconds: float | None = None

    def reached(self, steps: int, samples: int, seconds: float) -> str | None:
        for name, used in (("steps", steps), ("samples", samples), ("seconds", seconds)):
            limit = getattr(self, name)
            if limit is not None and used >= limit:
                return name
        return None


@dataclass(frozen=True)
class StepInfo:
    """What an ``on_step`` hook sees after each update."""

    epoch: int  # 1-based
    step: int  # 1-based, within the epoch
    global_step: int
    samples: int  # in this batch
    loss: torch.Tensor  # detached


def update(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: Callable, xb: torch.Tensor,
           yb: torch.Tensor, *, check_finite: bool = True) -> torch.Tensor:
    """One optimizer update on a batch, the tutorial's step: forward, loss, zero_grad, backward,
    step. Returns the loss (detached). With ``check_finite`` a non-finite loss raises
    :class:`DivergenceError` before the update is applied (the weights stay finite)."""
    loss = loss_fn(model(xb), yb)
    if check_finite and not torch.isfinite(loss):
        raise DivergenceError(f"loss={float(loss.detach())}")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach()


def accumulate(model: nn.Module, loss_fn: Callable, xb: torch.Tensor, yb: torch.Tensor, *,
               check_finite: bool = True) -> torch.Tensor:
    """Add a batch's share of the full-batch gradient to each ``.grad``, without an update: the
    gradient of the batch's summed loss (its mean times its size, for a loss that averages), so
    that dividing by the samples accumulated gives the exact gradient of the mean loss over all
    of them, whatever the batch sizes. Returns the summed loss (detached)."""
    loss = loss_fn(model(xb), yb)
    if check_finite and not torch.isfinite(loss):
        raise DivergenceError(f"loss={float(loss.detach())}")
    total = loss * yb.shape[0] if getattr(loss_fn, "reduction", "mean") == "mean" else loss
    total.backward()
    return total.detach()


class _Training:
    """The state of one :func:`train` call: the History, the clock and the counters."""

    def __init__(self, model, optimizer, loss_fn, device, eval_data, method, lr, budget, track_full_loss,
                 check_finite, accumulated=False) -> None:
        self.accumulated = accumulated
        self.model, self.optimizer, self.loss_fn, self.device = model, optimizer, loss_fn, device
        self.eval = None if eval_data is None else tuple(t.to(device) for t in eval_data)
        self.method, self.lr, self.budget = method, lr, budget or Budget()
        self.track, self.check_finite = track_full_loss, check_finite
        self.hist = History(method=method)
        self.counter = _StepCounter(optimizer)
        self.elapsed, self.samples = 0.0, 0

    def evaluate_epoch(self, epoch: int) -> None:
        if self.eval is None:
            return
        loss, acc = evaluate(self.model, *self.eval, self.loss_fn)
        if epoch and not math.isfinite(loss):  # before training a bad loss is data, the first step reports it
            raise DivergenceError(f"{self.method} training diverged: full-data loss={loss} after epoch {epoch} "
                                  f"(lr={self.lr})")
        self.hist.epoch_loss.append(loss)
        self.hist.epoch_accuracy.append(acc)

    def epoch(self, epoch: int, batches: Iterable, on_step: Callable[[StepInfo], None] | None) -> str | None:
        """One pass over ``batches``; returns why training stopped (a budget, a hook), or None."""
        steps_before, samples, losses, stopped = self.counter.count, 0, [], None
        start = time.perf_counter()
        if self.accumulated:
            self.optimizer.zero_grad()
        try:
            for step, (xb, yb) in enumerate(batches, start=1):
                xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
                try:
                    losses.append(accumulate(self.model, self.loss_fn, xb, yb, check_finite=self.check_finite)
                                  if self.accumulated else
                                  update(self.model, self.optimizer, self.loss_fn, xb, yb, check_finite=self.check_finite))
                except DivergenceError as exc:
                    raise DivergenceError(f"{self.method} training diverged: {exc} at epoch {epoch}, step {step} "
                                          f"(lr={self.lr})") from None
                samples += int(yb.shape[0])
                paused = time.perf_counter()
                if self.track:  # the full data's loss after this update, off the clock
                    self.hist.update_full_losses.append(evaluate(self.model, *self.eval, self.loss_fn)[0])
                if on_step is not None:
                    on_step(StepInfo(epoch, step, self.counter.count, int(yb.shape[0]), losses[-1]))
                start += time.perf_counter() - paused
                stopped = self.budget.reached(self.counter.count, self.samples + samples,
                                              self.elapsed + time.perf_counter() - start)
                if stopped:
                    break
            if self.accumulated and samples:  # the epoch's one update (a hook's Stop skips it)
                losses[:] = [self.step_accumulated(samples, losses)]
        except Stop:
            stopped = "hook"
        finally:
            self.close_epoch(steps_before, samples, losses, start)
        return stopped

    def step_accumulated(self, samples: int, losses: list) -> torch.Tensor:
        """One step on the accumulated gradient, made the mean loss's over ``samples``; returns that loss."""
        if getattr(self.loss_fn, "reduction", "mean") == "mean":
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.div_(samples)
        self.optimizer.step()
        return torch.stack(losses).sum() / samples

    def close_epoch(self, steps_before: int, samples: int, losses: list, start: float) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.elapsed += time.perf_counter() - start
        self.samples += samples
        self.hist.update_losses.extend(torch.stack(losses).tolist() if losses else [])
        self.hist.steps_per_epoch.append(self.counter.count - steps_before)
        self.hist.samples_per_epoch.append(samples)
        self.hist.epoch_time.append(self.elapsed)


def train(
    model: nn.Module,
    batches: Iterable | Callable[[int], Iterable],
    *,
    epochs: int | None = None,
    lr: float = 0.1,
    optimizer: torch.optim.Optimizer | None = None,
    loss_fn: Callable | None = None,
    device: str | torch.device | None = None,
    eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
    method: str = "mini-batch",
    budget: Budget | None = None,
    on_step: Callable[[StepInfo], None] | None = None,
    on_epoch: Callable[[History], None] | None = None,
    before_epoch: Callable[[int], None] | None = None,
    track_full_loss: bool = False,
    check_finite: bool = True,
    accumulate_epoch: bool = False,
) -> History:
    """The training loop every part of batchfeed uses: one :func:`update` per batch, or with
    ``accumulate_epoch`` one per epoch: each batch's gradient added up (:func:`accumulate`),
    then one step on the mean loss's exact gradient over the epoch's samples (full-batch GD in
    the memory of one batch; its ``update_losses`` are the full-batch losses).

    ``batches`` is iterated once per epoch (a DataLoader, a TensorLoader, a list of
    ``(x, y)``), or called with the epoch number (1-based) to give that epoch's batches.
    Batches are moved to ``device`` (default: the model's). Training runs ``epochs`` epochs,
    or until ``budget`` is spent, or until a hook raises :class:`Stop`; ``History.stopped``
    says which. ``eval_data`` ``(X, y)``: the full-data loss and accuracy before training and
    after each epoch (and after each update with ``track_full_loss``), never timed.
    ``before_epoch(epoch)`` runs before each epoch (``sampler.set_epoch``), ``on_step`` after
    each update, ``on_epoch(history)`` after each epoch's evaluation. The optimizer defaults
    to ``SGD(lr)``, the loss to ``CrossEntropyLoss()``.
    """
    check_positive_float("lr", lr)
    if epochs is None and budget is None:
        raise ValueError("train needs epochs, a budget, or both")
    if epochs is not None:
        _check_epochs(epochs)
    if track_full_loss and eval_data is None:
        raise ValueError("track_full_loss needs eval_data, the data whose loss it records")
    dev = torch.device(device) if device is not None else model_device(model)
    run = _Training(model, optimizer or torch.optim.SGD(model.parameters(), lr=lr), loss_fn or nn.CrossEntropyLoss(),
                    dev, eval_data, method, lr, budget, track_full_loss, check_finite, accumulate_epoch)
    run.evaluate_epoch(0)
    model.train()
    try:
        for epoch in (range(1, epochs + 1) if epochs is not None else itertools.count(1)):
            if before_epoch is not None:
                before_epoch(epoch)
            stopped = run.epoch(epoch, batches(epoch) if callable(batches) else batches, on_step)
            if epochs is None and not stopped and run.hist.steps_per_epoch[-1] == 0:
                raise ValueError(f"epoch {epoch} gave no batch: training until the budget is spent would never end")
            run.evaluate_epoch(epoch)
            if on_epoch is not None and not stopped:
                try:
                    on_epoch(run.hist)
                except Stop:
                    stopped = "hook"
            if stopped:
                run.hist.stopped = stopped
                break
    finally:
        run.counter.close()
    return run.hist


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
    dev = torch.device(device) if device is not None else model_device(model)
    model.to(dev)
    Xd, yd = X.to(dev), y.to(dev)
    return train(model, [(Xd, yd)] * steps_per_epoch, epochs=epochs, lr=lr, optimizer=optimizer, loss_fn=loss_fn,
                 device=dev, eval_data=(Xd, yd), method="full-batch", on_epoch=on_epoch,
                 track_full_loss=track_full_loss)


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
    dev = torch.device(device) if device is not None else model_device(model)
    model.to(dev)
    return train(model, loader, epochs=epochs, lr=lr, optimizer=optimizer, loss_fn=loss_fn, device=dev, eval_data=(X, y),
                 method="mini-batch", on_epoch=on_epoch, track_full_loss=track_full_loss)
