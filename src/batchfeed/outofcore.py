"""Throughput of feeding batches from ``.npy`` files (issue 15), page cache warm and cold.

Every rival feeds one shuffled epoch of the same two files (N samples of F float32 features,
int64 labels) in batches of B, or (the bounds) does only the reading such an epoch needs:

* ``dataloader_mmap`` / ``dataloader_pread``: ``DataLoader(NpyDataset(X, y, mmap=...),
  batch_size=B, shuffle=True)``, the tutorial's lazy-dataset answer;
* ``tensorloader_mmap`` / ``tensorloader_pread``: :class:`batchfeed.TensorLoader` over the
  same dataset (same batches);
* ``batches_memmap``: one permutation, then per batch one numpy fancy index of the sorted
  rows from ``numpy.memmap``s: the issue's batched-gather bound;
* ``batches_take`` / ``batches_pread``: the same random batches read with nothing else done,
  through each back end's own reads (``ndarray.take`` from a memory map; coalesced
  ``preadv`` of the sorted rows): the random-batch read bound of each back end;
* ``sequential_memmap``: consecutive B-row slices of the memory maps, copied (the read bound
  with the pages cached); ``sequential_read``: the files read front to back with 1 MiB
  ``readinto`` (the read bound of a cold file).

Cold: before every timed epoch each rival closes its files (no page stays mapped), then the
files' pages are dropped (``fsync`` + ``POSIX_FADV_DONTNEED``, :mod:`batchfeed.pagecache`) and
the fraction still resident is recorded in :attr:`Measurement.resident` (0 when it worked;
``batchfeed.targets.disturbed`` flags a cold row whose files stayed cached).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ._checks import check_positive_int
from .loader import TensorLoader
from .pagecache import drop
from .sources import NpyDataset, write_npy_dataset
from .sources.rows import map_rows, plan_rows, pread_rows, take_rows
from .throughput import Measurement

__all__ = ["OOC_RIVALS", "OocFiles", "make_files", "measure_files", "ooc_epoch"]

#: Out-of-core rivals: key -> label, in table order.
OOC_RIVALS: dict[str, str] = {
    "dataloader_mmap": "DataLoader(NpyDataset), memmap",
    "dataloader_pread": "DataLoader(NpyDataset(mmap=False))",
    "tensorloader_mmap": "TensorLoader(NpyDataset), memmap",
    "tensorloader_pread": "TensorLoader(NpyDataset(mmap=False))",
    "batches_memmap": "bound: sorted batch gather, memmap[rows]",
    "batches_take": "bound: random batches, take (memmap reads)",
    "batches_pread": "bound: random batches, coalesced preadv",
    "sequential_memmap": "bound: sequential memmap slices",
    "sequential_read": "bound: sequential read of the files",
}
#: The group of a cold or warm measurement (Measurement.group).
GROUPS = {False: "ooc-warm", True: "ooc-cold"}
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class OocFiles:
    """The two ``.npy`` files of a measurement and what they hold."""

    features: Path
    labels: Path
    n: int
    num_features: int

    @property
    def paths(self) -> tuple[Path, Path]:
        return self.features, self.labels

    @property
    def epoch_bytes(self) -> int:
        return self.n * (self.num_features * 4 + 8)


def make_files(directory: str | os.PathLike, n: int, features: int, *, seed: int = 0) -> OocFiles:
    """The tutorial's data (``write_npy_dataset``) as ``X.npy``/``y.npy`` in ``directory``, O(chunk) memory."""
    px, py = write_npy_dataset(directory, n, features, seed=seed)
    return OocFiles(px, py, n, features)


def _permutation(n: int, seed: int) -> np.ndarray:
    """The first epoch's order of a loader given ``Generator().manual_seed(seed)`` (base seed, then randperm)."""
    g = torch.Generator().manual_seed(seed)
    torch.empty((), dtype=torch.int64).random_(generator=g)
    return torch.randperm(n, generator=g).numpy()


def _loader_epoch(name: str, files: OocFiles, batch_size: int, seed: int) -> tuple[Callable[[], None], Callable[[], int]]:
    ds = NpyDataset(*files.paths, mmap=name.endswith("_mmap"))
    g = torch.Generator().manual_seed(seed)
    make = DataLoader if name.startswith("dataloader") else TensorLoader
    loader = make(ds, batch_size=batch_size, shuffle=True, generator=g)

    def epoch() -> int:
        fed = 0
        for _xb, yb in loader:
            fed += yb.shape[0]
        return fed
    return ds.close, epoch


def _bound_epoch(name: str, files: OocFiles, batch_size: int, seed: int) -> Callable[[], int]:
    """A bound's epoch: it opens its files afresh each time (nothing stays mapped between epochs)."""
    n, b = files.n, batch_size
    if name == "sequential_read":
        def read_all() -> int:
            buf = bytearray(_READ_CHUNK)
            for p in files.paths:
                with open(p, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
            return n
        return read_all
    perm = _permutation(n, seed)

    def batches() -> int:
        if name == "batches_pread":
            ds = NpyDataset(*files.paths, mmap=False)
            fds = ds.open_files()
            heads = ds.headers
            for i in range(0, n, b):
                plan = plan_rows(perm[i:i + b])
                for fd, h in zip(fds, heads):
                    pread_rows(fd, h.path, h.offset, h.shape[1:], h.dtype, plan)
            ds.close()
            return n
        mx, my = (np.load(p, mmap_mode="r") for p in files.paths)
        tx, ty = (map_rows(p) for p in files.paths)
        for i in range(0, n, b):
            if name == "batches_memmap":
                idx = np.sort(perm[i:i + b])
                mx[idx], my[idx]
            elif name == "batches_take":
                idx = perm[i:i + b]
                take_rows(tx, idx), take_rows(ty, idx)
            else:  # sequential_memmap
                np.array(mx[i:i + b]), np.array(my[i:i + b])
        return n
    return batches


def ooc_epoch(name: str, files: OocFiles, batch_size: int, *, seed: int = 0) -> tuple[Callable[[], None], Callable[[], int]]:
    """``(close, epoch)`` for rival ``name``: ``close()`` unmaps and closes whatever the rival keeps
    open between epochs; ``epoch()`` feeds (or reads) one epoch and returns the samples."""
    if name not in OOC_RIVALS:
        raise ValueError(f"unknown out-of-core rival {name!r}; known: {', '.join(OOC_RIVALS)}")
    check_positive_int("batch_size", batch_size)
    if name.startswith(("dataloader", "tensorloader")):
        return _loader_epoch(name, files, batch_size, seed)
    return (lambda: None), _bound_epoch(name, files, batch_size, seed)


def measure_files(files: OocFiles, batch_size: int, *, cold: bool, rivals: Sequence[str] | None = None,
                  repeats: int = 3, warmup: int = 1, seed: int = 0,
                  on_epoch: Callable[[str], None] | None = None, extra: dict | None = None,
                  also_drop: Sequence[str | os.PathLike] = ()) -> dict[str, Measurement]:
    """Time one epoch of each rival ``repeats`` times, rounds interleaved across rivals.

    Warm: after ``warmup`` untimed epochs per rival (which also bring the files into the page
    cache). Cold: before every timed epoch the rival's files are closed and the files' pages
    dropped; the fraction still resident goes to ``Measurement.resident``. ``extra``: more rivals,
    ``{key: (label, close, epoch)}`` as :func:`ooc_epoch` returns them (batchfeed.blockread's,
    batchfeed.peers'); ``also_drop``: more files whose pages a cold epoch drops (a peer's copy).
    """
    check_positive_int("repeats", repeats)
    extra = extra or {}
    rivals = (list(OOC_RIVALS) if rivals is None else list(rivals)) + list(extra)
    fns = {r: extra[r][1:] if r in extra else ooc_epoch(r, files, batch_size, seed=seed) for r in rivals}
    labels = {**OOC_RIVALS, **{r: e[0] for r, e in extra.items()}}
    out = {r: Measurement(GROUPS[cold], r, labels[r], files.n, files.num_features, batch_size, "cpu",
                          files.epoch_bytes, 0) for r in rivals}
    step = on_epoch or (lambda _r: None)
    for r in rivals:
        for _ in range(warmup):
            out[r].samples = fns[r][1]()
            step(r)
    for _ in range(repeats):
        for r in rivals:
            if cold:  # every rival's maps closed: the kernel keeps any page some map still holds
                for close, _epoch in fns.values():
                    close()
                out[r].resident.append(max(drop([*files.paths, *also_drop]).values()))
            epoch = fns[r][1]
            t0 = time.perf_counter()
            out[r].samples = epoch()
            out[r].seconds.append(time.perf_counter() - t0)
            step(r)
    for close, _epoch in fns.values():
        close()
    return out


def read_profile(files: OocFiles, batch_size: int, *, repeats: int = 3, seed: int = 0) -> dict[str, float]:
    """Microseconds per batch of B rows, best of ``repeats`` epochs (features and labels), for the
    choices behind TensorLoader's reads of a memory map:

    * ``take, permutation order``: one ``index_select`` per batch in the permutation's order (what it does);
    * ``sorted take + put back``: the batch's rows sorted, gathered, then put back in order;
    * ``read_batch of K batches + split``: one ``NpyDataset.read_batch`` per K batches, cut into
      batch views (K = 1, 4, 16, 64; TensorLoader's default 1 MiB is 16 at F=64, B=256);
    * the same two takes ``cold``: the files' pages dropped before the epoch.
    """
    perm, n, b = _permutation(files.n, seed), files.n, batch_size
    ds = NpyDataset(*files.paths)

    def takes(sort: bool) -> Callable[[], None]:
        def run() -> None:
            tx, ty = ds.open_files()
            for i in range(0, n, b):
                idx = torch.from_numpy(perm[i:i + b])
                if sort:
                    rows, order = idx.sort()
                    back = torch.empty_like(order)
                    back[order] = torch.arange(order.numel())
                    tx.index_select(0, rows).index_select(0, back), ty.index_select(0, rows).index_select(0, back)
                else:
                    tx.index_select(0, idx), ty.index_select(0, idx)
        return run

    def chunks(k: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(0, n, b * k):
                xb, yb = ds.read_batch(perm[i:i + b * k])
                for _pair in zip(xb.split(b), yb.split(b)):
                    pass
        return run

    variants = {"take, permutation order": (takes(False), False), "sorted take + put back": (takes(True), False),
                **{f"read_batch of {k} batches + split": (chunks(k), False) for k in (1, 4, 16, 64)},
                "take, permutation order, cold": (takes(False), True), "sorted take + put back, cold": (takes(True), True)}
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, (fn, cold) in variants.items():
            if cold:
                ds.close()
                drop(files.paths)
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    ds.close()
    batches = -(-n // b)
    return {name: t / batches * 1e6 for name, t in best.items()}
