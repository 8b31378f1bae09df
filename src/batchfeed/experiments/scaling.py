"""Memory, measured: the workloads each run in a fresh process (the tutorial's full-batch step,
a lazy mini-batch epoch, the accumulated full-batch gradient) and the experiments built on them
(peak RSS against N, fitted; an epoch under a private-memory budget smaller than the data).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._checks import check_positive_int
from ..measure import Job, MeasurementError, PeakMemory, peak_memory_series

__all__ = [
    "BudgetResult",
    "MemoryScaling",
    "accumulated_gradient",
    "budget_experiment",
    "fit_slope",
    "full_batch_step",
    "hold_tensor",
    "memory_scaling",
    "minibatch_epoch",
    "write_data",
]


# --- workloads (run inside the subprocess) ----------------------------------------------

def hold_tensor(nbytes: int, device: str = "cpu") -> int:
    """Allocate and fill a uint8 tensor of ``nbytes`` on ``device``; returns its size. A calibration workload."""
    import torch

    t = torch.empty(int(nbytes), dtype=torch.uint8, device=device)
    t.fill_(1)
    return int(t.numel())


def _model_for(features_path: str | os.PathLike, seed: int):
    from ..sources import read_npy_header
    from ..training import make_model

    h = read_npy_header(features_path, "features file")
    return make_model(int(h.shape[1]), 2, seed)


def full_batch_step(features_path: str | os.PathLike, labels_path: str | os.PathLike, *, lr: float = 0.1,
                    seed: int = 0) -> float:
    """The tutorial's Case 1, one update: load all of X and y, forward and backward on all of it.

    Returns the loss. Its memory grows with N: the data plus the activations of N samples.
    """
    import numpy as np
    import torch

    from ..training import train

    X = torch.from_numpy(np.load(features_path))
    y = torch.from_numpy(np.load(labels_path))
    h = train(_model_for(features_path, seed), [(X, y)], epochs=1, lr=lr, check_finite=False)
    return h.update_losses[0]


def minibatch_epoch(features_path: str | os.PathLike, labels_path: str | os.PathLike, *, batch_size: int = 32,
                    mmap: bool = True, lr: float = 0.1, seed: int = 0) -> int:
    """The tutorial's Case 2 for one epoch, fed lazily: NpyDataset + DataLoader(shuffle=True).

    Returns the number of samples trained on (checked against N by the caller: no short epoch).
    """
    import torch
    from torch.utils.data import DataLoader

    from ..sources import NpyDataset
    from ..training import train

    ds = NpyDataset(features_path, labels_path, mmap=mmap)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return train(_model_for(features_path, seed), loader, epochs=1, lr=lr, check_finite=False).samples_per_epoch[0]


def accumulated_gradient(features_path: str | os.PathLike, labels_path: str | os.PathLike, *, batch_size: int = 32,
                         mmap: bool = False, seed: int = 0) -> float:
    """Full-batch GD's gradient by :func:`~batchfeed.training.full_batch_gradient` from a lazy dataset.

    Returns the gradient's norm. Its memory is O(batch_size): the update rule of full-batch
    GD does not need the full batch in memory.
    """
    import torch
    from torch.utils.data import DataLoader

    from ..sources import NpyDataset
    from ..training import full_batch_gradient

    ds = NpyDataset(features_path, labels_path, mmap=mmap)
    model = _model_for(features_path, seed)
    grads = full_batch_gradient(model, torch.nn.CrossEntropyLoss(), DataLoader(ds, batch_size=batch_size))
    return float(torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads])))


# --- experiments --------------------------------------------------------------------------

def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(slope, intercept)`` of ``ys`` against ``xs`` (at least two distinct xs)."""
    n = len(xs)
    if n != len(ys) or n < 2:
        raise ValueError(f"fit_slope needs two equal-length sequences of at least 2 points, got {len(xs)} and {len(ys)}")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError(f"fit_slope needs at least two distinct x values, got {list(xs)}")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return slope, my - slope * mx


@dataclass
class MemoryScaling:
    """Peak RSS against N for each way of training; slopes in bytes per sample.

    ``peaks[method]`` lists the peak RSS (bytes) at each of ``sizes`` (the least of
    ``repeats`` passes); ``bytes_per_sample`` is the fitted slope; ``data_bytes_per_sample`` is what one sample takes on disk.
    Methods: ``full-batch``, ``mini-batch (pread)``, ``mini-batch (memmap)``,
    ``accumulated gradient (pread)``.
    """

    sizes: list[int]
    features: int
    batch_size: int
    data_bytes_per_sample: int
    peaks: dict[str, list[int]]
    bytes_per_sample: dict[str, float]


def memory_scaling(directory: str | os.PathLike, *, sizes: Sequence[int] = (16_384, 32_768, 65_536),
                   features: int = 512, batch_size: int = 64, seed: int = 0, repeats: int = 2,
                   timeout: float = 600.0) -> MemoryScaling:
    """Peak memory of full-batch and lazy mini-batch training as N grows (same B), fitted.

    Writes the tutorial's data at each size under ``directory`` (streamed, O(chunk)
    memory), then measures each method over the sizes in growing order, as consecutive
    calls of one subprocess (after a warm-up call of each), ``repeats`` passes, and fits
    peak RSS = a + slope * N to the least peak of the passes at each size. Noise in a peak
    only ever adds memory (a CI run under load once measured +7.5 MB at one size, which alone
    turned a 60-90 B/sample slope into 613), so the least of the passes is the estimate.
    """
    check_positive_int("repeats", repeats)
    sizes = sorted(int(n) for n in sizes)
    paths = [write_data(Path(directory) / f"n{n}", n, features, seed) for n in sizes]
    warm = write_data(Path(directory) / "warm", 2 * batch_size, features, seed)
    kw = {"batch_size": batch_size, "seed": seed}
    # One subprocess: the lazy methods first, then full-batch, each over growing N, so
    # memory the allocator keeps after a call is reused by the next, never added to it.
    methods: dict[str, tuple[Callable[..., Any], dict]] = {
        "mini-batch (pread)": (minibatch_epoch, {**kw, "mmap": False}),
        "accumulated gradient (pread)": (accumulated_gradient, {**kw, "mmap": False}),
        "mini-batch (memmap)": (minibatch_epoch, {**kw, "mmap": True}),
        "full-batch": (full_batch_step, {"seed": seed}),
    }
    warmups = [Job(fn, warm, kwargs) for fn, kwargs in methods.values()]
    jobs = [Job(fn, p, kwargs) for fn, kwargs in methods.values() for _ in range(repeats) for p in paths]
    results = peak_memory_series(warmups + jobs, timeout=timeout)[len(warmups):]
    peaks: dict[str, list[int]] = {}
    per_method = repeats * len(sizes)
    for k, name in enumerate(methods):
        chunk = results[k * per_method:(k + 1) * per_method]
        for n, r in zip(sizes * repeats, chunk):
            if not r.ok:
                raise MeasurementError(f"{name} at N={n} ran out of memory without a budget: {r.error}")
            if name.startswith("mini") and r.value != n:
                raise MeasurementError(f"{name} at N={n} trained on {r.value} samples, not {n}")
        peaks[name] = [min(r.peak_rss for r in chunk[i::len(sizes)]) for i in range(len(sizes))]
    slopes = {name: fit_slope(sizes, p)[0] for name, p in peaks.items()}
    return MemoryScaling(sizes, features, batch_size, 4 * features + 8, peaks, slopes)


def write_data(directory: str | os.PathLike, n: int, features: int, seed: int = 0) -> tuple[str, str]:
    """:func:`~batchfeed.sources.write_npy_dataset` returning string paths (picklable for jobs)."""
    from ..sources import write_npy_dataset

    px, py = write_npy_dataset(directory, n, features, seed=seed)
    return str(px), str(py)


@dataclass
class BudgetResult:
    """One epoch against a private-memory budget smaller than the data.

    ``results[method]`` is the :class:`PeakMemory` of ``full-batch``, ``mini-batch (memmap)``,
    ``mini-batch (pread)`` and ``accumulated gradient (pread)`` (full-batch GD's exact
    gradient by :func:`~batchfeed.training.full_batch_gradient`), each run under ``budget`` bytes; ``data_bytes`` is the
    size of X and y on disk.
    """

    n: int
    features: int
    batch_size: int
    budget: int
    data_bytes: int
    results: dict[str, PeakMemory]


def budget_experiment(directory: str | os.PathLike, *, n: int = 16_384, features: int = 1024, budget: int = 16 << 20,
                      batch_size: int = 64, seed: int = 0, timeout: float = 600.0) -> BudgetResult:
    """The tutorial's "10GB" claim at a size this machine runs: data several times the budget.

    Writes ``n x features`` float32 data (4 * n * features bytes) under ``directory``, then
    in one subprocess runs, each under ``RLIMIT_DATA`` = current + ``budget``: a mini-batch
    epoch reading through memmaps, one reading with ``preadv``, the full-batch gradient
    accumulated over micro-batches, and a full-batch step (which loads everything).
    Warm-up calls (a tiny epoch of each kind, without a budget) come first so that the
    interpreter's one-time allocations (threads, imports) are not charged to the budget.
    """
    px, py = write_data(Path(directory) / "data", n, features, seed)
    warm = write_data(Path(directory) / "warm", 2 * batch_size, features, seed)
    kw = {"batch_size": batch_size, "seed": seed}
    jobs = [
        Job(minibatch_epoch, warm, {**kw, "mmap": True}),
        Job(minibatch_epoch, warm, {**kw, "mmap": False}),
        Job(accumulated_gradient, warm, kw),
        Job(full_batch_step, warm, {"seed": seed}),
        Job(minibatch_epoch, (px, py), {**kw, "mmap": True}, data_limit=budget),
        Job(minibatch_epoch, (px, py), {**kw, "mmap": False}, data_limit=budget),
        Job(accumulated_gradient, (px, py), kw, data_limit=budget),
        Job(full_batch_step, (px, py), {"seed": seed}, data_limit=budget),
    ]
    r = peak_memory_series(jobs, timeout=timeout)[4:]
    data_bytes = os.path.getsize(px) + os.path.getsize(py)
    return BudgetResult(n, features, batch_size, budget, data_bytes,
                        {"mini-batch (memmap)": r[0], "mini-batch (pread)": r[1], "accumulated gradient (pread)": r[2],
                         "full-batch": r[3]})
