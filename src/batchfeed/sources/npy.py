"""Features and labels in two ``.npy`` files, read one sample (or one batch) at a time."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import (
    NpyHeader,
    SourceDataset,
    SourceError,
    check_index,
    check_positive_int,
    read_npy_header,
)
from .rows import MAX_GAP_BYTES, RowPlan, batch_indices, map_rows, native, plan_rows, pread_rows, take_rows

__all__ = ["NpyDataset", "write_npy_dataset"]

_OPENING = threading.Lock()
#: dtype kinds torch can hold: bool, signed/unsigned integers, floats, complex.
_NUMERIC_KINDS = "biufc"


def _check_array_header(h: NpyHeader, what: str) -> None:
    if len(h.shape) == 0:
        raise SourceError(f"{what} {str(h.path)!r} holds a 0-d array; expected shape (n, ...) with one row per sample")
    if h.dtype.kind not in _NUMERIC_KINDS or h.dtype.fields is not None:
        raise SourceError(f"{what} {str(h.path)!r} has dtype {h.dtype}; expected a numeric dtype (bool, int, float)")
    if any(s == 0 for s in h.shape[1:]):
        raise SourceError(f"{what} {str(h.path)!r} has shape {h.shape}: each sample is empty")


class NpyDataset(SourceDataset):
    """``(features[i], labels[i])`` from two ``.npy`` files, never loading either whole.

    Args:
        features: path of an ``(n, ...)`` numeric ``.npy`` array.
        labels: path of an ``(n, ...)`` numeric ``.npy`` array (``(n,)`` int64 for classes).
        mmap: True (default) reads through numpy memory maps (``np.load(mmap_mode="r")``);
            False reads rows with ``os.preadv`` into fresh buffers, so no page of the file is
            ever mapped into the process (see docs/datasets.md, "Memory, measured").
        max_gap_bytes: with ``mmap=False``, rows of one batch at most this many bytes apart
            in the file are read with one ``preadv`` (the bytes between are thrown away);
            default one 4 KiB page. 0: only adjacent rows share a read.
        transform, target_transform, seed: see :class:`~batchfeed.sources.SourceDataset`.

    Samples come back as tensors of the stored dtype, copied out of the file (writable;
    transforms never see the file's pages). The files are opened lazily, once per process,
    and never pickled: the dataset can be sent to DataLoader worker processes.

    Raises:
        FileNotFoundError: a file is missing (named).
        SourceError (a ValueError): a file is not ``.npy``, truncated, 0-d, of a non-numeric
            dtype, or Fortran-ordered with ``mmap=False``.
        ValueError: the two files hold different numbers of samples, or none.
    """

    _per_process = ("_open",)

    def __init__(
        self,
        features: str | os.PathLike,
        labels: str | os.PathLike,
        *,
        mmap: bool = True,
        max_gap_bytes: int = MAX_GAP_BYTES,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(transform, target_transform, seed)
        hx = read_npy_header(features, "features file")
        hy = read_npy_header(labels, "labels file")
        _check_array_header(hx, "features file")
        _check_array_header(hy, "labels file")
        if hx.shape[0] != hy.shape[0]:
            raise ValueError(
                f"features file {str(hx.path)!r} has {hx.shape[0]} samples but labels file "
                f"{str(hy.path)!r} has {hy.shape[0]}; they must match"
            )
        if hx.shape[0] == 0:
            raise ValueError(f"features file {str(hx.path)!r} holds no samples (shape {hx.shape}); a dataset needs at least one")
        if not mmap:
            for h, what in ((hx, "features file"), (hy, "labels file")):
                if h.fortran_order and len(h.shape) > 1:
                    raise SourceError(f"{what} {str(h.path)!r} is Fortran-ordered; mmap=False reads C-ordered rows only")
        self.features_path: Path = hx.path
        self.labels_path: Path = hy.path
        self.mmap = bool(mmap)
        if isinstance(max_gap_bytes, bool) or not isinstance(max_gap_bytes, (int, np.integer)) or max_gap_bytes < 0:
            raise ValueError(f"max_gap_bytes must be a non-negative integer, got {max_gap_bytes!r}")
        self.max_gap_bytes = int(max_gap_bytes)
        self._headers = (hx, hy)
        self._n = hx.shape[0]
        self._open: tuple[Any, Any] | None = None  # memmaps or file descriptors, per process

    # -- lazy, per-process file access --------------------------------------------------
    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the files (unmap the memory maps) this process opened; the next read reopens them.

        What a cold-cache measurement needs: the kernel drops no page that is still mapped.
        """
        opened = self.__dict__.get("_open")
        self.__dict__["_open"] = None
        if opened is not None and not self.__dict__.get("mmap", True):
            for fd in opened:
                try:
                    os.close(fd)
                except OSError:
                    pass

    @property
    def headers(self) -> tuple[Any, Any]:
        """The parsed ``.npy`` headers of the features and labels files (path, data offset, shape, dtype)."""
        return self._headers

    def open_files(self) -> tuple[Any, Any]:
        """This process's open features and labels files: two memory maps (``mmap=True``) or two file
        descriptors (``mmap=False``), opened on first use and kept until :meth:`close`."""
        return self._files()

    def _files(self) -> tuple[Any, Any]:
        with _OPENING:  # reader threads (TensorLoader's prefetch) may ask at once; open once
            if self._open is None:
                if self.mmap:
                    self._open = tuple(map_rows(h.path) for h in self._headers)
                else:
                    self._open = tuple(os.open(h.path, os.O_RDONLY) for h in self._headers)
            return self._open

    def _read_rows(self, which: int, rows: np.ndarray, plan: RowPlan | None) -> torch.Tensor:
        """Rows ``rows`` (valid int64) of file ``which`` (0 features, 1 labels), in that order, as fresh memory."""
        if self.mmap:
            return take_rows(self._files()[which], rows)
        h = self._headers[which]
        out, _calls = pread_rows(self._files()[which], h.path, h.offset, h.shape[1:], h.dtype,
                                 plan if plan is not None else plan_rows(rows), max_gap_bytes=self.max_gap_bytes)
        return torch.from_numpy(native(out))

    def _rows(self, which: int, rows: Sequence[int]) -> torch.Tensor:
        return self._read_rows(which, np.asarray(rows, dtype=np.int64), None)

    def read_batch(self, indices: Any) -> list[torch.Tensor]:
        """The samples ``indices`` (1-d integers: a list, array or tensor; any order, repeats and
        negatives allowed) as one batch ``[features, labels]``, equal to
        ``default_collate([self[i] for i in indices])``, which DataLoader would build.

        Each file is read once for the whole batch: one ``index_select`` from the memory map
        (the GIL released, page faults included), or
        (``mmap=False``) its rows sorted, each read once by ``preadv`` calls that coalesce
        nearby rows, then put back in ``indices``' order. Transforms run on the whole batch when they have an exact
        batch form (:meth:`batchfeed.transforms.Normalize.on_batch`), per sample otherwise,
        with the same seeded results as ``self[i]``. :class:`batchfeed.TensorLoader` reads
        every batch of an ``NpyDataset`` this way.

        Raises:
            TypeError: ``indices`` is not a 1-d sequence of integers.
            IndexError: an index out of range, named.
            SourceError: a file ended early (truncated after the dataset was built), named.
        """
        rows = batch_indices(indices, self._n, self)
        plan = None if self.mmap else plan_rows(rows)  # shared by the two files
        xb = self._read_rows(0, rows, plan)
        yb = self._read_rows(1, rows, plan)
        return self._finish_batch(rows, xb, yb)

    @property
    def row_bytes(self) -> int:
        """Bytes of one sample in the files (features and label): what a batch of ``B`` reads is ``B`` times this."""
        return self._headers[0].row_bytes + self._headers[1].row_bytes

    # -- Dataset protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._rows(0, [i])[0], self._rows(1, [i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A whole batch as a list of samples, each file read once (as :meth:`read_batch`); torch's fetcher calls this."""
        rows = [check_index(type(self).__name__, i, self._n) for i in indices]
        if not rows:
            return []
        xs = self._rows(0, rows).unbind(0)
        ys = self._rows(1, rows).unbind(0)
        return [self._finish(i, x, y) for i, x, y in zip(rows, xs, ys)]

    def __repr__(self) -> str:
        hx, hy = self._headers
        return (f"NpyDataset(n={self._n}, features={str(hx.path)!r} {hx.shape[1:]} {hx.dtype}, "
                f"labels={str(hy.path)!r} {hy.shape[1:]} {hy.dtype}, mmap={self.mmap})")


def write_npy_dataset(
    directory: str | os.PathLike,
    n: int,
    features: int = 3,
    *,
    seed: int = 0,
    chunk_rows: int = 65536,
) -> tuple[Path, Path]:
    """Write the tutorial's data (``X ~ N(0, 1)`` float32, ``y = (X.sum(1) > 0)`` int64) as
    ``X.npy`` and ``y.npy`` in ``directory``, ``chunk_rows`` rows at a time.

    Memory stays O(chunk_rows * features) whatever ``n``: this is how the memory spec
    makes data larger than a budget. Deterministic by ``seed`` (its own numpy Generator).
    Returns the two paths.
    """
    for name, v in (("n", n), ("features", features), ("chunk_rows", chunk_rows)):
        check_positive_int(name, v)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    px, py = d / "X.npy", d / "y.npy"
    rng = np.random.default_rng(seed)
    with open(px, "wb") as fx, open(py, "wb") as fy:
        np.lib.format.write_array_header_1_0(fx, {"descr": "<f4", "fortran_order": False, "shape": (n, features)})
        np.lib.format.write_array_header_1_0(fy, {"descr": "<i8", "fortran_order": False, "shape": (n,)})
        for start in range(0, n, chunk_rows):
            rows = min(chunk_rows, n - start)
            block = rng.standard_normal((rows, features), dtype=np.float32)
            fx.write(block.tobytes())
            fy.write((block.sum(axis=1) > 0).astype("<i8").tobytes())
    return px, py
