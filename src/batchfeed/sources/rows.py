"""Reading a batch of rows of a ``.npy`` array at once, in any order the caller asks.

Two back ends:

* a memory map: one ``index_select`` of the rows, in the caller's order, from a tensor over
  the map;
* ``os.preadv``: the rows are read sorted (file order, each row once), then put back in the
  caller's order with one in-memory gather; rows that are adjacent in the file, or at most
  ``max_gap_bytes`` apart, are read with one call (the bytes between them go to a scratch
  buffer), so sequential and block-shuffled batches take a few reads, not one per row.

Nothing here knows about datasets; :class:`~batchfeed.sources.NpyDataset` calls it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import SourceError

__all__ = ["IOV_MAX", "MAX_GAP_BYTES", "RowPlan", "batch_indices", "map_rows", "native", "plan_rows", "pread_rows",
           "take_rows"]

#: Bytes between two wanted rows that a preadv reads and throws away rather than making a
#: second call: one 4 KiB page (a cold read costs a page anyway; a warm one, a few hundred ns
#: of copying against about 1-2 us for another system call from Python).
MAX_GAP_BYTES = 4096
#: Buffers per preadv call (the kernel's limit; POSIX guarantees at least 16).
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


@dataclass(frozen=True)
class RowPlan:
    """What to read for a batch: ``rows``, the caller's indices sorted (file order), and how to
    put what was read back in the caller's order: ``order`` (``rows == indices[order]``), or None
    when ``rows`` are the indices themselves. ``distinct``: no row repeats."""

    rows: np.ndarray
    order: np.ndarray | None
    distinct: bool

    def restore(self, data: np.ndarray) -> np.ndarray:
        """``data`` (one entry per planned row) in the caller's order."""
        if self.order is None:
            return data
        out = np.empty_like(data)
        out[self.order] = data
        return out

    def distinct_rows(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(rows read once each, where each planned row is among them)``; None: they are the planned rows."""
        if self.distinct:
            return self.rows, None
        return np.unique(self.rows, return_inverse=True)


def batch_indices(indices: Any, n: int, owner: Any) -> np.ndarray:
    """``indices`` (a sequence, array or tensor of integers) as a 1-d int64 array in ``[0, n)``;
    negatives count from the end. TypeError / IndexError naming ``owner`` (its ``str``, made
    only on error) and the bad index."""
    if not isinstance(indices, np.ndarray):
        if hasattr(indices, "numpy") and hasattr(indices, "cpu"):  # a torch tensor
            indices = indices.cpu().numpy()
        indices = np.asarray(indices)
        if indices.size == 0:
            return np.empty(0, dtype=np.int64)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise TypeError(f"{owner}: a batch must be a 1-d sequence of integer indices, got "
                        f"{indices.dtype} of shape {indices.shape}")
    if indices.size == 0:
        return indices.astype(np.int64)
    arr = indices.astype(np.int64, copy=False)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < -n or hi >= n:
        bad = lo if lo < -n else hi
        raise IndexError(f"{owner}: index {bad} out of range for dataset of length {n}")
    return np.where(arr < 0, arr + n, arr) if lo < 0 else arr


def plan_rows(indices: np.ndarray) -> RowPlan:
    """The rows to read for ``indices`` (valid, 1-d int64), in file order."""
    if indices.size < 2 or bool((indices[1:] > indices[:-1]).all()):
        return RowPlan(indices, None, True)  # in file order already (a sequential epoch): no put-back
    order = indices.argsort()
    rows = indices[order]
    return RowPlan(rows, order, not bool((rows[1:] == rows[:-1]).any()))


def native(array: np.ndarray) -> np.ndarray:
    """``array`` in the machine's byte order (torch holds no other)."""
    return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))


def map_rows(path: Path) -> torch.Tensor | np.ndarray:
    """A ``.npy`` file memory-mapped read-only, as a tensor over the map (a numpy view when its byte
    order is not the machine's). The tensor must only be read: its pages are the file's."""
    array = np.asarray(np.load(path, mmap_mode="r"))  # a plain view: numpy.memmap's indexing costs more per call
    if not array.dtype.isnative:
        return array
    with warnings.catch_warnings():  # torch warns that the map is not writable; it is never written
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def take_rows(mapped: torch.Tensor | np.ndarray, indices: np.ndarray) -> torch.Tensor:
    """Rows ``indices`` of a map from :func:`map_rows`, with one gather in the caller's order, as
    fresh memory. Not sorted first: measured (docs/benchmarks.md, "Out of core"), through a memory
    map the sorted gather was no faster, cold or warm (the pages a batch faults in are the same set
    in any order), and putting the rows back cost a third of a warm batch. ``index_select`` releases
    the GIL for the copy and its page faults, so reader threads overlap with the training loop."""
    if isinstance(mapped, torch.Tensor):
        return mapped.index_select(0, torch.from_numpy(indices))
    return torch.from_numpy(native(mapped.take(indices, axis=0)))


def pread_rows(fd: int, path: Path, offset: int, shape: Sequence[int], dtype: np.dtype, plan: RowPlan, *,
               max_gap_bytes: int = MAX_GAP_BYTES) -> tuple[np.ndarray, int]:
    """The planned rows of the C-ordered array stored at byte ``offset`` of ``fd``, in the caller's
    order, and how many ``preadv`` calls read them.

    Rows at most ``max_gap_bytes`` apart share a call (the gap lands in a scratch buffer).
    Raises :class:`SourceError` naming ``path`` and the row if the file ends early.
    """
    rows, where = plan.distinct_rows()
    out = np.empty((len(rows), *shape), dtype=dtype)
    if not len(rows):
        return out, 0
    flat = out.reshape(len(rows), -1).view(np.uint8)
    row_bytes = flat.shape[1]
    gap_rows = max_gap_bytes // row_bytes
    skip = (rows[1:] - rows[:-1] - 1).tolist()          # rows between neighbours (sorted, distinct: >= 0)
    starts = [k + 1 for k, s in enumerate(skip) if s]   # where a run of adjacent rows starts
    edges = [0, *starts, len(rows)]
    scratch = memoryview(bytearray(min(gap_rows, max(skip, default=0)) * row_bytes))
    calls, bufs, first, size = 0, [], 0, 0
    for p in range(len(edges) - 1):
        a, b = edges[p], edges[p + 1]
        gap = skip[a - 1] if p else 0
        if bufs and (gap > gap_rows or len(bufs) + 2 > IOV_MAX):
            _preadv(fd, bufs, offset + int(rows[first]) * row_bytes, size, path, (int(rows[first]), int(rows[a - 1])))
            calls, bufs, size = calls + 1, [], 0
        if not bufs:
            first = a
        elif gap:
            bufs.append(scratch[:gap * row_bytes])
            size += gap * row_bytes
        bufs.append(flat[a:b])
        size += (b - a) * row_bytes
    _preadv(fd, bufs, offset + int(rows[first]) * row_bytes, size, path, (int(rows[first]), int(rows[-1])))
    return plan.restore(out if where is None else out.take(where.reshape(-1), axis=0)), calls + 1


def _preadv(fd: int, bufs: list, at: int, size: int, path: Path, span: tuple[int, int]) -> None:
    got = os.preadv(fd, bufs, at)
    if got != size:
        raise SourceError(f"{str(path)!r}: reading rows {span[0]} to {span[1]}: short read ({got} of {size} bytes); "
                          "was the file truncated?")
