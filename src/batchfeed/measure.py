"""Peak memory of a piece of work, measured in a fresh subprocess; the memory experiments.

:func:`peak_memory` runs ``fn(*args, **kwargs)`` in a new Python process and returns its
peak resident set size (``VmHWM`` from ``/proc/self/status``, which counts every page the
process touched, tensor storage included; ``tracemalloc`` sees only Python's allocator and
misses tensor storage) and, when the work used CUDA, ``torch.cuda.max_memory_allocated``.
:func:`peak_memory_series` runs several calls in one process, resetting the high-water
mark between them (``/proc/self/clear_refs``), to pay Python's and torch's start-up once.

A call can run under a memory budget: ``data_limit=B`` sets ``RLIMIT_DATA`` to the private
memory the process already has plus ``B`` bytes for the length of the call. That limit
charges what can really exhaust memory (heap, anonymous maps: tensors, arrays) and not
clean file-backed pages (a memory-mapped file's pages are page cache, dropped under
pressure), nor address space merely reserved. Running out of it raises ``MemoryError`` in
the call (torch's ``can't allocate memory`` RuntimeError counts as one), which is reported
in ``PeakMemory.error``, not raised. Linux only for the budget and per-call reset.

The workloads (:func:`full_batch_step`, :func:`minibatch_epoch`,
:func:`accumulated_gradient`) and experiments (:func:`memory_scaling`,
:func:`budget_experiment`) are what spec/test_memory.py and the claims ledger use.
"""

from __future__ import annotations

import gc
import os
import pickle
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BudgetResult",
    "Job",
    "MeasurementError",
    "MemoryScaling",
    "PeakMemory",
    "accumulated_gradient",
    "budget_experiment",
    "fit_slope",
    "full_batch_step",
    "hold_tensor",
    "memory_scaling",
    "minibatch_epoch",
    "peak_memory",
    "peak_memory_series",
    "write_data",
]


class MeasurementError(RuntimeError):
    """The measured work raised (other than running out of memory) or the subprocess died; the message carries its traceback."""


@dataclass(frozen=True)
class PeakMemory:
    """One measured call.

    Attributes:
        peak_rss: bytes, the process's peak resident set size during the call (it includes
            Python's and torch's own few hundred MB: compare calls, or fit slopes).
        start_rss: bytes resident just before the call.
        cuda_max_allocated: bytes, ``torch.cuda.max_memory_allocated()`` over the call, or
            None when the call did not use CUDA.
        value: what the call returned (None if it ran out of memory).
        error: ``"MemoryError: ..."`` if the call ran out of memory, else None.
        data_limit: the budget in bytes the call ran under, or None.
    """

    peak_rss: int
    start_rss: int
    cuda_max_allocated: int | None
    value: Any
    error: str | None
    data_limit: int | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rss_increase(self) -> int:
        """Bytes the peak rose above the resident set at the start of the call."""
        return self.peak_rss - self.start_rss


@dataclass(frozen=True)
class Job:
    """One call for :func:`peak_memory_series`: ``fn(*args, **kwargs)``, optionally under ``data_limit`` bytes."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    data_limit: int | None = None


# --- the subprocess ---------------------------------------------------------------------

def _status(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def _peak_rss() -> int:
    v = _status("VmHWM")
    if v is not None:
        return v
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in msg or "Cannot allocate memory" in msg
                                              or "out of memory" in msg.lower())


def _run_job(job: Job) -> dict:
    import resource

    import torch

    gc.collect()
    _malloc_trim()
    cuda_before = torch.cuda.is_initialized()
    if cuda_before:
        torch.cuda.reset_peak_memory_stats()
    _reset_peak()
    start = _status("VmRSS") or _peak_rss()
    old = None
    if job.data_limit is not None:
        used = _status("VmData")
        if used is None:
            raise MeasurementError("data_limit needs Linux (/proc/self/status VmData and RLIMIT_DATA)")
        old = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (used + int(job.data_limit), old[1]))
    value, error = None, None
    try:
        value = job.fn(*job.args, **job.kwargs)
    except BaseException as exc:  # noqa: BLE001 - classified below, the rest re-raised
        if not _out_of_memory(exc):
            raise
        error = f"MemoryError: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    finally:
        if old is not None:
            resource.setrlimit(resource.RLIMIT_DATA, old)
    peak = _peak_rss()
    cuda = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_initialized() else None
    return {"peak_rss": peak, "start_rss": start, "cuda_max_allocated": cuda, "value": value, "error": error,
            "data_limit": job.data_limit}


def _child_main() -> None:
    """Entry point of the measuring subprocess: ``argv = [jobs.pkl, results.pkl]``."""
    import torch

    # One intra-op thread: a tiny model's steps are then not at the mercy of spinning
    # thread pools on a loaded machine, and no pool is created mid-measurement.
    torch.set_num_threads(1)
    jobs_path, out_path = sys.argv[1:3]
    with open(jobs_path, "rb") as f:
        jobs: list[Job] = pickle.load(f)
    results: list[dict] = []
    try:
        for job in jobs:
            results.append(_run_job(job))
        payload: dict = {"results": results}
    except BaseException:  # noqa: BLE001 - sent back to the parent, which raises it
        payload = {"results": results, "exception": traceback.format_exc()}
    with open(out_path, "wb") as f:
        pickle.dump(payload, f)


def _spawn(jobs: list[Job], timeout: float) -> list[PeakMemory]:
    for job in jobs:
        try:
            pickle.dumps(job.fn)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(f"peak_memory needs an importable module-level function, got {job.fn!r}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="batchfeed-measure-") as d:
        jobs_path, out_path = os.path.join(d, "jobs.pkl"), os.path.join(d, "results.pkl")
        with open(jobs_path, "wb") as f:
            pickle.dump(jobs, f)
        cmd = [sys.executable, "-c", "from batchfeed.measure import _child_main; _child_main()", jobs_path, out_path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise MeasurementError(f"measured work did not finish within {timeout} s") from exc
        if not os.path.exists(out_path):
            raise MeasurementError(f"measuring subprocess exited {proc.returncode} without a result:\n{proc.stderr[-4000:]}")
        with open(out_path, "rb") as f:
            payload = pickle.load(f)
    if "exception" in payload:
        raise MeasurementError(f"measured work raised in the subprocess:\n{payload['exception']}")
    return [PeakMemory(**r) for r in payload["results"]]


def peak_memory(fn: Callable[..., Any], *args: Any, data_limit: int | None = None, timeout: float = 600.0,
                **kwargs: Any) -> PeakMemory:
    """Run ``fn(*args, **kwargs)`` in a fresh Python subprocess and measure its peak memory.

    ``fn`` must be importable by the subprocess (a module-level function) and its arguments
    and result picklable. ``data_limit`` runs it under a budget of that many bytes of new
    private memory (see the module docstring). Raises MeasurementError if ``fn`` raises
    anything but an out-of-memory error, with the subprocess's traceback.
    """
    return _spawn([Job(fn, args, kwargs, data_limit)], timeout)[0]


def peak_memory_series(jobs: Sequence[Job], *, timeout: float = 600.0) -> list[PeakMemory]:
    """Measure several calls in one fresh subprocess, the peak reset before each.

    Where the peak cannot be reset (not Linux), each call gets its own subprocess. Memory
    freed by one call is handed back to the OS (``malloc_trim``) before the next; order
    calls by growing size so any memory the allocator still keeps is reused, not added.
    """
    jobs = list(jobs)
    if sys.platform == "linux" and os.access("/proc/self/clear_refs", os.W_OK):
        return _spawn(jobs, timeout)
    return [r for job in jobs for r in _spawn([job], timeout)]


# --- workloads (run inside the subprocess) ----------------------------------------------

def hold_tensor(nbytes: int, device: str = "cpu") -> int:
    """Allocate and fill a uint8 tensor of ``nbytes`` on ``device``; returns its size. A calibration workload."""
    import torch

    t = torch.empty(int(nbytes), dtype=torch.uint8, device=device)
    t.fill_(1)
    return int(t.numel())


def _model_for(features_path: str | os.PathLike, seed: int):
    from .sources._common import read_npy_header
    from .training import make_model

    h = read_npy_header(features_path, "features file")
    return make_model(int(h.shape[1]), 2, seed)


def full_batch_step(features_path: str | os.PathLike, labels_path: str | os.PathLike, *, lr: float = 0.1,
                    seed: int = 0) -> float:
    """The tutorial's Case 1, one update: load all of X and y, forward and backward on all of it.

    Returns the loss. Its memory grows with N: the data plus the activations of N samples.
    """
    import numpy as np
    import torch

    from .training import train

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

    from .sources import NpyDataset
    from .training import train

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

    from .sources import NpyDataset
    from .training import full_batch_gradient

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

    ``peaks[method]`` lists the peak RSS (bytes) at each of ``sizes``; ``bytes_per_sample``
    is the fitted slope; ``data_bytes_per_sample`` is what one sample takes on disk.
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
                   features: int = 512, batch_size: int = 64, seed: int = 0, timeout: float = 600.0) -> MemoryScaling:
    """Peak memory of full-batch and lazy mini-batch training as N grows (same B), fitted.

    Writes the tutorial's data at each size under ``directory`` (streamed, O(chunk)
    memory), then measures each method over the sizes in growing order, as consecutive
    calls of one subprocess (after a warm-up call of each), and fits peak RSS = a + slope * N.
    """
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
    jobs = [Job(fn, p, kwargs) for fn, kwargs in methods.values() for p in paths]
    results = peak_memory_series(warmups + jobs, timeout=timeout)[len(warmups):]
    peaks: dict[str, list[int]] = {}
    for k, name in enumerate(methods):
        chunk = results[k * len(sizes):(k + 1) * len(sizes)]
        for n, r in zip(sizes, chunk):
            if not r.ok:
                raise MeasurementError(f"{name} at N={n} ran out of memory without a budget: {r.error}")
            if name.startswith("mini") and r.value != n:
                raise MeasurementError(f"{name} at N={n} trained on {r.value} samples, not {n}")
        peaks[name] = [r.peak_rss for r in chunk]
    slopes = {name: fit_slope(sizes, p)[0] for name, p in peaks.items()}
    return MemoryScaling(sizes, features, batch_size, 4 * features + 8, peaks, slopes)


def write_data(directory: str | os.PathLike, n: int, features: int, seed: int = 0) -> tuple[str, str]:
    """:func:`~batchfeed.sources.write_npy_dataset` returning string paths (picklable for jobs)."""
    from .sources import write_npy_dataset

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
