"""Reading a batch of rows of a ``.npy`` array at once, in any order the caller asks.

Two back ends:

* a memory map: one ``index_select`` of the rows, in the caller's order, from a tensor over
  the map;
* ``os.preadv``: the rows are read sorted (file order, each row once), then put back in the
  caller's order with one in-memory gather; rows that are adjacent in the file, or at most
  ``max_gap_bytes`` apart, are read with one call (the bytes between them go to a scratch
  buffer), so sequential and block-shuffled batches take a few reads, not one per row. The
  reads are planned with numpy and made together through ``io_uring``
  (:mod:`batchfeed.sources.uring`), or one ``os.preadv`` each where it is refused.

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

from . import uring
from ._common import SourceError

__all__ = ["IOV_MAX", "MAX_GAP_BYTES", "ReadPlan", "RowPlan", "batch_indices", "map_rows", "native", "plan_reads", "plan_rows", "pread_rows",
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
    order, and how many reads (``readv``s) read them.

    Rows at most ``max_gap_bytes`` apart share a read (the gap lands in a scratch buffer), with at
    most :data:`IOV_MAX` buffers per read. The reads are planned with numpy (:func:`plan_reads`),
    then made all at once through ``io_uring`` (:mod:`batchfeed.sources.uring`: one system call
    per 1024 reads, the GIL released), or one ``os.preadv`` each where ``io_uring`` cannot be
    used or :data:`BACKEND` says ``"preadv"``.
    Raises :class:`SourceError` naming ``path`` and the rows if the file ends early.
    """
    rows, where = plan.distinct_rows()
    out = np.empty((len(rows), *shape), dtype=dtype)
    row_bytes = out.itemsize * int(np.prod(shape, dtype=np.int64))
    if not len(rows) or not row_bytes:
        return plan.restore(out if where is None else out.take(where.reshape(-1), axis=0)), 0
    reads = plan_reads(rows, row_bytes, max_gap_bytes // row_bytes, IOV_MAX)
    scratch = np.empty(reads.scratch_rows * row_bytes, dtype=np.uint8)
    iov = reads.iovecs(out.ctypes.data, scratch.ctypes.data, row_bytes)
    offsets = offset + reads.first_row * row_bytes
    r = _ring()
    if r is not None:
        got = r.readv(fd, offsets.astype(np.uint64), iov, reads.counts.astype(np.uint32))
    else:
        got = _preadv_each(fd, offsets, iov, reads.counts, out, scratch)
    bad = np.flatnonzero(got != reads.nbytes(row_bytes))
    if len(bad):
        _short(path, reads, int(bad[0]), int(got[bad[0]]), row_bytes)
    return plan.restore(out if where is None else out.take(where.reshape(-1), axis=0)), len(offsets)


@dataclass(frozen=True)
class ReadPlan:
    """The reads of sorted distinct ``rows``: ``pieces`` runs of adjacent rows (``start``: index of
    a piece's first row in ``rows``, ``size``: its rows), the gap in rows before each piece that
    is read into scratch (0 where a new read begins), and which piece each read starts at."""

    rows: np.ndarray
    start: np.ndarray
    size: np.ndarray
    gap: np.ndarray
    new_read: np.ndarray

    @property
    def first_row(self) -> np.ndarray:
        return self.rows[self.start[self.new_read]]

    @property
    def counts(self) -> np.ndarray:
        """Buffers per read: its pieces, plus a scratch buffer before each piece but the first."""
        firsts = np.flatnonzero(self.new_read)
        per_piece = 1 + (~self.new_read).astype(np.int64)
        return np.add.reduceat(per_piece, firsts)

    @property
    def scratch_rows(self) -> int:
        return int(self.gap.max(initial=0))

    def nbytes(self, row_bytes: int) -> np.ndarray:
        firsts = np.flatnonzero(self.new_read)
        lasts = np.concatenate((firsts[1:], [len(self.start)])) - 1
        last_row = self.rows[self.start[lasts] + self.size[lasts] - 1]
        return (last_row - self.rows[self.start[firsts]] + 1) * row_bytes

    def iovecs(self, out: int, scratch: int, row_bytes: int) -> np.ndarray:
        """``(address, length)`` of every buffer, read by read: gaps into ``scratch``, pieces into
        ``out`` (the rows' buffer, row ``k`` at ``out + k * row_bytes``)."""
        has_gap = ~self.new_read
        at = np.arange(len(self.start)) + np.cumsum(has_gap)     # each piece's buffer index
        iov = np.empty((len(self.start) + int(has_gap.sum()), 2), dtype=np.uint64)
        iov[at, 0] = out + self.start.astype(np.uint64) * row_bytes
        iov[at, 1] = self.size.astype(np.uint64) * row_bytes
        iov[at[has_gap] - 1, 0] = scratch
        iov[at[has_gap] - 1, 1] = self.gap[has_gap].astype(np.uint64) * row_bytes
        return iov


def plan_reads(rows: np.ndarray, row_bytes: int, gap_rows: int, iov_max: int) -> ReadPlan:
    """The reads of ``rows`` (sorted, distinct, non-empty): rows at most ``gap_rows`` apart share a
    read, with at most ``iov_max`` buffers (pieces and gaps) per read. No loop over rows."""
    skip = rows[1:] - rows[:-1] - 1
    start = np.concatenate(([0], np.flatnonzero(skip) + 1))
    size = np.diff(np.concatenate((start, [len(rows)])))
    gap = np.concatenate(([0], skip[start[1:] - 1]))
    far = gap > gap_rows
    far[0] = True
    group = np.cumsum(far) - 1                                 # reads before splitting by iov_max
    rank = np.arange(len(start)) - np.flatnonzero(far)[group]  # a piece's place in its group
    new_read = rank % max(1, (iov_max + 1) // 2) == 0
    return ReadPlan(rows, start, size, np.where(new_read, 0, gap), new_read)


#: How :func:`pread_rows` reads: ``"auto"`` (``io_uring`` where it works, else ``os.preadv``),
#: ``"uring"`` or ``"preadv"``; from ``BATCHFEED_PREAD`` at import.
BACKEND = os.environ.get("BATCHFEED_PREAD", "auto")
_URING_FAILED: list[OSError] = []


def _ring() -> Any:
    if BACKEND == "preadv" or (_URING_FAILED and BACKEND == "auto"):
        return None
    try:
        return uring.ring()
    except OSError as e:
        if BACKEND == "uring":
            raise
        _URING_FAILED.append(e)
        return None


def _preadv_each(fd: int, offsets: np.ndarray, iov: np.ndarray, counts: np.ndarray, out: np.ndarray,
                 scratch: np.ndarray) -> np.ndarray:
    """The reads one ``os.preadv`` each (buffers as views of ``out`` and ``scratch``)."""
    flat, spare = memoryview(out.reshape(-1).view(np.uint8)), memoryview(scratch)
    base, sbase = out.ctypes.data, scratch.ctypes.data
    lo = (iov[:, 0].astype(np.int64) - np.where(iov[:, 0] == sbase, sbase, base)).tolist()
    ln = iov[:, 1].astype(np.int64).tolist()
    is_gap = (iov[:, 0] == sbase).tolist() if len(scratch) else [False] * len(ln)
    got, k = [], 0
    for off, c in zip(offsets.tolist(), counts.tolist()):
        bufs = [(spare if is_gap[j] else flat)[lo[j]:lo[j] + ln[j]] for j in range(k, k + c)]
        got.append(os.preadv(fd, bufs, off))
        k += c
    return np.asarray(got, dtype=np.int64)


def _short(path: Path, reads: ReadPlan, i: int, got: int, row_bytes: int) -> None:
    first = int(reads.first_row[i])
    size = int(reads.nbytes(row_bytes)[i])
    if got < 0:
        raise SourceError(f"{str(path)!r}: reading rows from {first}: {os.strerror(-got)}")
    raise SourceError(f"{str(path)!r}: reading rows {first} to {first + size // row_bytes - 1}: short read "
                      f"({got} of {size} bytes); was the file truncated?")
