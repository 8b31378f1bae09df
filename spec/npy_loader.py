"""TensorLoader reading from ``.npy`` files, for the conformance suite.

The conformance tests build their own in-memory datasets; these loaders write each one's two
tensors (features, labels) to ``.npy`` files in a temporary folder and serve them through
``TensorLoader(NpyDataset(...))``, so the whole loader-agnostic specification (batching,
shuffling, samplers, resume, the resume state machine) runs against the out-of-core path:

    pytest spec/conformance --loader=spec.npy_loader:memmap --loader-deviations=spec/loaders/batchfeed-tensorloader-npy.txt
    pytest spec/conformance --loader=spec.npy_loader:pread --loader-deviations=spec/loaders/batchfeed-tensorloader-npy.txt
    pytest spec/conformance --loader=spec.npy_loader:read_ahead --loader-deviations=spec/loaders/batchfeed-tensorloader-npy.txt

(``read_ahead``: ``preadv``, every batch its own read, two reader threads three reads ahead.)

A ``Subset`` (``random_split``) stays a Subset of the file-backed dataset. Any other dataset
(one of other than two tensors, a user's map-style dataset) is refused with TypeError, as
TensorLoader refuses what it cannot serve.
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from batchfeed import PairDataset, TensorLoader
from batchfeed.sources import NpyDataset

__all__ = ["as_npy", "memmap", "pread", "read_ahead"]

_DIR: Path | None = None
_COUNT = itertools.count()


def _folder() -> Path:
    global _DIR
    if _DIR is None:
        _DIR = Path(tempfile.mkdtemp(prefix="batchfeed-npy-loader-"))
        atexit.register(shutil.rmtree, _DIR, True)
    return _DIR


def _pair(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(dataset, PairDataset):
        return dataset.X, dataset.y
    tensors = dataset.tensors if type(dataset).__getitem__ is TensorDataset.__getitem__ else None
    if isinstance(dataset, tuple) and all(isinstance(t, torch.Tensor) for t in dataset):
        tensors = dataset
    if tensors is None or len(tensors) != 2:
        what = f"{len(tensors)} tensors" if tensors is not None else type(dataset).__name__
        raise TypeError(f"spec.npy_loader serves datasets of two tensors (features, labels) written to .npy "
                        f"files, not {what}; use torch.utils.data.DataLoader for other datasets")
    return tensors[0], tensors[1]


def as_npy(dataset: Any, *, mmap: bool = True) -> Any:
    """``dataset``'s features and labels as an :class:`NpyDataset` on fresh files (a Subset stays a Subset)."""
    if isinstance(dataset, Subset):
        return Subset(as_npy(dataset.dataset, mmap=mmap), dataset.indices)
    X, y = _pair(dataset)
    k = next(_COUNT)
    px, py = _folder() / f"X{k}.npy", _folder() / f"y{k}.npy"
    np.save(px, X.detach().cpu().numpy())
    np.save(py, y.detach().cpu().numpy())
    return NpyDataset(px, py, mmap=mmap)


def memmap(dataset: Any, *args: Any, **keywords: Any) -> TensorLoader:
    """``TensorLoader`` over ``dataset`` written to ``.npy`` files and read through memory maps."""
    return TensorLoader(as_npy(dataset, mmap=True), *args, **keywords)


def pread(dataset: Any, *args: Any, **keywords: Any) -> TensorLoader:
    """The same, reading with coalesced ``preadv`` (``NpyDataset(mmap=False)``)."""
    return TensorLoader(as_npy(dataset, mmap=False), *args, **keywords)


def read_ahead(dataset: Any, *args: Any, **keywords: Any) -> TensorLoader:
    """``preadv`` with reading ahead: one read per batch, three ahead of the loop on two threads."""
    keywords = {"chunk_bytes": 1, "prefetch": 3, "readers": 2, **keywords}
    return TensorLoader(as_npy(dataset, mmap=False), *args, **keywords)
