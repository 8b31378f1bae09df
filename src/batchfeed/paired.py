"""The tutorial's training loop fed by two rivals side by side, one step of each in turn.

Claim C13 rates DataLoader's training loop against the slice-fed one by steps per CPU second.
Epoch-by-epoch rounds (:func:`batchfeed.throughput.measure_epochs`) let a spell of load from
other processes hit one rival's epoch and not the other's; stepping the two loops in turn puts
both under the same load, step for step (issue 25).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ._checks import check_positive_int
from .throughput import TRAINING_RIVALS, BenchData, Measurement, training_parts
from .training import update

__all__ = ["measure_paired_steps"]


def measure_paired_steps(
    data: BenchData,
    batch_size: int,
    *,
    rivals: Sequence[str] = ("dataloader", "permute_slice"),
    epochs: int = 5,
    warmup: int = 1,
    seed: int = 0,
) -> dict[str, Measurement]:
    """The tutorial's training loop fed by each of ``rivals``, one step of each in turn.

    Every epoch runs the rivals side by side, step by step: fetch the batch and update
    (:func:`batchfeed.training.update`, the one training step) for the first rival, then for
    the next, and so on, each step timed by this thread's CPU clock. Load from other processes
    that comes and goes in spells of milliseconds then falls on both rivals' neighbouring steps
    alike, where epoch-by-epoch rounds let a spell hit one rival's epoch and not the other's
    (issue 25); the median step (``clock="step"``) leaves out the few steps a spell did hit.
    CPU devices (a CUDA step's CPU time is not its cost). ``warmup`` epochs are not timed.
    """
    check_positive_int("epochs", epochs)
    if data.device.type != "cpu":
        raise ValueError(f"measure_paired_steps times CPU work: data on {data.device}, not the CPU")
    parts = {r: training_parts(r, data, batch_size, lr=0.1, seed=seed) for r in rivals}
    out = {r: Measurement("training", r, TRAINING_RIVALS[r], data.n, data.features, batch_size, str(data.device),
                          data.epoch_bytes, 0, clock="step") for r in rivals}
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(warmup + epochs):
        its = {r: iter(parts[r][2](epoch)) for r in rivals}
        live, fed = set(rivals), dict.fromkeys(rivals, 0)
        wall, cpu = dict.fromkeys(rivals, 0.0), dict.fromkeys(rivals, 0.0)
        step = 0
        while live:
            step += 1  # the order alternates, so neither rival always runs right after the other
            for r in (rivals if step % 2 else rivals[::-1]):
                if r not in live:
                    continue
                model, optimizer, _ = parts[r]
                t0, c0 = time.perf_counter(), time.thread_time()
                try:
                    xb, yb = next(its[r])
                except StopIteration:
                    live.discard(r)
                    continue
                update(model, optimizer, loss_fn, xb, yb, check_finite=False)
                c1, t1 = time.thread_time(), time.perf_counter()
                fed[r] += len(yb)
                wall[r] += t1 - t0
                cpu[r] += c1 - c0
                if epoch >= warmup and len(yb) == batch_size:
                    out[r].step_cpu_seconds.append(c1 - c0)
        if epoch >= warmup:
            for r in rivals:
                out[r].samples = fed[r]
                out[r].seconds.append(wall[r])
                out[r].cpu_seconds.append(cpu[r])
    return out
