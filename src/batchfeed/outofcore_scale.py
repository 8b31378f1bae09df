"""Issue 15, "10 GB for real, at the scale this machine allows": one training epoch on an ``.npy``
dataset several times larger than a private-memory budget, mini-batch and accumulated full-batch.

Each run is one shuffled epoch of the tutorial's model (``Linear(F, 2)``, cross-entropy, SGD)
trained by the one loop, :func:`batchfeed.training.train`, fed by
``TensorLoader(NpyDataset(...), prefetch=...)``: one update per batch (mini-batch), or one per
epoch on the gradient accumulated over the batches (``accumulate_epoch=True``: full-batch GD).
It runs in a fresh subprocess (:func:`batchfeed.measure.peak_memory_series`, after a tiny
warm-up epoch that pays the interpreter's one-time allocations) under ``RLIMIT_DATA`` = the
private memory it had plus the budget, with the files' pages dropped before it (cold).

Memory, two figures per run, both of that subprocess:

* **peak RSS** (``VmHWM``, exact): every page resident, including a memory map's file pages.
  Those are page cache, shared and clean: the kernel drops them under pressure, so a memory
  map's peak RSS grows with the file and says nothing about the budget;
* **peak private memory** (``RssAnon`` of ``/proc/self/status``, polled every
  :data:`POLL_SECONDS` by a thread: a sampled peak, which can miss a spike shorter than that):
  what the budget is about. That the run *completed* under ``RLIMIT_DATA`` is the hard bound
  (private writable address space, which includes untouched reserve such as thread stacks).

With ``preadv`` (``mmap=False``) no file page is mapped, so peak RSS is private memory too.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._checks import check_positive_int
from .measure import proc_status

__all__ = ["METHODS", "POLL_SECONDS", "ScaleRun", "format_scale", "scale_epoch", "scale_experiment"]

#: method -> whether the epoch's gradient is accumulated into one update
METHODS = {"mini-batch": False, "accumulated full-batch": True}
POLL_SECONDS = 0.002
_FIELDS = ("RssAnon", "RssFile", "VmHWM")


def _status() -> dict[str, int]:
    """Private and file-backed resident memory and the peak RSS, in bytes (Linux' /proc/self/status)."""
    found = proc_status(*_FIELDS)
    if len(found) != len(_FIELDS):
        raise RuntimeError(f"peak private memory needs /proc/self/status with {', '.join(_FIELDS)} (Linux); "
                           f"found {sorted(found) or 'no such file'}")
    return found


class _PeakPrivate:
    """A thread polling ``RssAnon`` and ``RssFile`` until stopped; their peaks and their values at the start."""

    def __init__(self) -> None:
        self.start = _status()
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="batchfeed-rss-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            for k, v in _status().items():
                self.peak[k] = max(self.peak[k], v)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        for k, v in _status().items():
            self.peak[k] = max(self.peak[k], v)
        return {"start_anon": self.start["RssAnon"], "peak_anon": self.peak["RssAnon"],
                "start_file": self.start["RssFile"], "peak_file": self.peak["RssFile"]}


def _tallied(loader: Any, tally: Any) -> Any:
    """The loader's batches; with a tally, each row (its index stored as feature 0) counted as it is fed."""
    import torch

    for xb, yb in loader:
        if tally is not None:
            tally.index_add_(0, xb[:, 0].long(), torch.ones(len(yb), dtype=tally.dtype))
        yield xb, yb


def scale_epoch(features_path: str, labels_path: str, *, accumulate: bool, mmap: bool, batch_size: int = 256,
                prefetch: int = 4, readers: int = 1, lr: float = 0.1, seed: int = 0,
                count_rows: bool = False) -> dict[str, Any]:
    """One shuffled training epoch from the files (run it in the measuring subprocess); returns what
    it did: samples, steps, seconds (train's clock), the final update's loss, the sampled peaks of
    private and file-backed resident memory, and (``count_rows``: feature 0 holds each row's
    index, a test file) whether every row was fed exactly once."""
    import torch

    from .loader import TensorLoader
    from .model import make_model
    from .sources import NpyDataset
    from .training import train

    poll = _PeakPrivate()
    ds = NpyDataset(features_path, labels_path, mmap=mmap)
    loader = TensorLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                          prefetch=prefetch, readers=readers)
    tally = torch.zeros(len(ds), dtype=torch.int32) if count_rows else None
    model = make_model(int(ds[0][0].shape[0]), 2, seed)
    hist = train(model, lambda _epoch: _tallied(loader, tally), epochs=1, lr=lr, accumulate_epoch=accumulate,
                 method="full-batch" if accumulate else "mini-batch", check_finite=False)
    ds.close()
    return {"samples": hist.samples_per_epoch[0], "steps": hist.steps_per_epoch[0], "seconds": hist.epoch_time[-1],
            "loss": hist.update_losses[-1], "rows_once": None if tally is None else bool(tally.eq(1).all()),
            **poll.stop()}


@dataclass
class ScaleRun:
    """One measured epoch: what :func:`scale_epoch` returned, the subprocess's peak RSS (VmHWM) and
    its RSS at the start, the budget it ran under, and the share of the files cached before it."""

    method: str
    backend: str
    prefetch: int
    readers: int
    n: int
    data_bytes: int
    budget: int
    resident_before: float
    peak_rss: int
    start_rss: int
    error: str | None
    result: dict[str, Any] | None

    @property
    def samples_per_s(self) -> float:
        return self.result["samples"] / self.result["seconds"] if self.result else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "samples_per_s": self.samples_per_s}


def _check_room(directory: Path, data_bytes: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < 2 * data_bytes:
        raise ValueError(f"directory (--dir) {str(directory)!r}: {free / 2**30:.1f} GiB free, the data needs "
                         f"{data_bytes / 2**30:.2f} GiB and as much again to spare; pick a smaller --scale or another --dir")


def scale_experiment(directory: str | os.PathLike, *, gib: float = 1.0, budget: int = 256 << 20, features: int = 64,
                     batch_size: int = 256, ahead: tuple[tuple[int, int], ...] = ((4, 1),),
                     backends: tuple[str, ...] = ("memmap", "preadv"), methods: tuple[str, ...] = tuple(METHODS),
                     seed: int = 0, count_rows: bool = False, keep: bool = False,
                     timeout: float = 1800.0) -> list[ScaleRun]:
    """Write ``gib`` GiB of the tutorial's data (F features, float32, int64 labels; O(chunk) memory)
    under ``directory``, then one epoch per method and back end, cold, each in a fresh subprocess
    under ``budget`` bytes of private memory, for each ``(prefetch, readers)`` in ``ahead``; the
    files are deleted after unless ``keep``.
    ``count_rows`` writes feature 0 as the row index and checks each row is fed once (tests)."""
    from .measure import Job, peak_memory_series
    from .pagecache import drop
    from .sources import write_npy_dataset

    if not (isinstance(gib, (int, float)) and math.isfinite(gib) and gib > 0):
        raise ValueError(f"gib must be a positive number of GiB, got {gib!r}")
    for name, v in (("budget", budget), ("features", features), ("batch_size", batch_size)):
        check_positive_int(name, v)
    if not set(backends) <= {"memmap", "preadv"} or not backends:
        raise ValueError(f"backends must be some of memmap, preadv, got {backends!r}")
    if not set(methods) <= set(METHODS) or not methods:
        raise ValueError(f"methods must be some of {', '.join(METHODS)}, got {methods!r}")
    row_bytes = 4 * features + 8
    n = max(2 * batch_size, math.ceil(gib * 2**30 / row_bytes))
    folder = Path(directory) / "batchfeed-scale"
    folder.mkdir(parents=True, exist_ok=True)
    _check_room(folder, n * row_bytes)
    try:
        px, py = (str(p) for p in write_npy_dataset(folder / "data", n, features, seed=seed))
        warm = [str(p) for p in write_npy_dataset(folder / "warm", 2 * batch_size, features, seed=seed)]
        if count_rows:
            _index_feature(px, n)
        data_bytes = os.path.getsize(px) + os.path.getsize(py)
        runs = []
        for backend, method, (prefetch, readers) in itertools.product(backends, methods, ahead):
            kw = {"accumulate": METHODS[method], "mmap": backend == "memmap", "batch_size": batch_size,
                  "prefetch": prefetch, "readers": readers, "seed": seed}
            resident = max(drop([px, py]).values())
            _warmup, run = peak_memory_series([Job(scale_epoch, tuple(warm), kw),
                                               Job(scale_epoch, (px, py), {**kw, "count_rows": count_rows},
                                                   data_limit=budget)], timeout=timeout)
            runs.append(ScaleRun(method, backend, prefetch, readers, n, data_bytes, budget, resident, run.peak_rss,
                                 run.start_rss, run.error, run.value))
        return runs
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _index_feature(features_path: str, n: int) -> None:
    """Overwrite feature 0 of every row with the row's index (exact in float32 below 2**24)."""
    import numpy as np

    if n >= 2**24:
        raise ValueError(f"count_rows needs fewer than 2**24 rows (float32 indices), got {n}")
    X = np.load(features_path, mmap_mode="r+")
    for start in range(0, n, 1 << 16):
        stop = min(n, start + (1 << 16))
        X[start:stop, 0] = np.arange(start, stop, dtype=np.float32)
    X.flush()
    del X


def format_scale(runs: list[ScaleRun]) -> str:
    """The runs as a table: samples/s, peak RSS and peak private memory (MiB), within the budget or not."""
    if not runs:
        return ""
    r0 = runs[0]
    mib = 2**20
    short = "" if r0.data_bytes >= 4 * r0.budget else ", under the 4x issue 15 asks"
    lines = [(f"one training epoch from .npy files larger than the private-memory budget: N={r0.n:,}, "
              f"{r0.data_bytes / 2**30:.2f} GiB on disk, budget {r0.budget / mib:.0f} MiB "
              f"({r0.data_bytes / r0.budget:.1f}x{short}), page cache dropped before each epoch, fresh subprocess each"),
             (f"  {'method':<24}{'back end':<9}{'ahead':>6}{'samples/s':>11}{'peak RSS':>10}{'(+start)':>10}"
              f"{'peak private':>14}{'(+start)':>10}{'file-backed':>13}  within budget")]
    for r in runs:
        res = r.result or {}
        anon = res.get("peak_anon", 0) - res.get("start_anon", 0)
        lines.append(f"  {r.method:<24}{r.backend:<9}{f'{r.prefetch}/{r.readers}':>6}{r.samples_per_s / 1e3:>10.1f}k{r.peak_rss / mib:>10.0f}"
                     f"{(r.peak_rss - r.start_rss) / mib:>+10.0f}{res.get('peak_anon', 0) / mib:>14.0f}{anon / mib:>+10.0f}"
                     f"{res.get('peak_file', 0) / mib:>13.0f}  {'yes' if r.error is None else 'NO: ' + r.error}")
    lines.append("  ahead: prefetch/readers; MiB; peak RSS: VmHWM (exact, includes a memory map's file pages); peak private: RssAnon polled "
                 f"every {POLL_SECONDS * 1e3:.0f} ms; file-backed: RssFile polled (the map's cached pages, and libraries)")
    return "\n".join(lines) + "\n"
