"""Which datasets TensorLoader serves, and the tensors (or the batch-reading dataset, and a Subset's
rows of them) behind them."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..datasets import PairDataset

__all__ = ["USE_DATALOADER", "is_batch_source", "storage_of"]

#: What a refusal tells the user to use instead.
USE_DATALOADER = "use torch.utils.data.DataLoader"


def _same_method(cls: type, base: type, name: str) -> bool:
    return getattr(cls, name, None) is getattr(base, name, None)


def is_batch_source(dataset: Any) -> bool:
    """Whether ``dataset`` reads whole batches itself: a map-style dataset with a ``read_batch(indices)``
    method returning the batch DataLoader would collate (:meth:`batchfeed.sources.NpyDataset.read_batch`)."""
    return isinstance(dataset, Dataset) and callable(getattr(dataset, "read_batch", None)) and hasattr(dataset, "__len__")


def _dataset_tensors(dataset: Any) -> tuple[torch.Tensor, ...] | Any:
    """The tensors behind ``dataset``, if TensorLoader can serve it without ``__getitem__``; a
    dataset that reads whole batches itself (:func:`is_batch_source`) is returned as it is."""
    if is_batch_source(dataset):
        return dataset
    if isinstance(dataset, tuple) and not hasattr(dataset, "_fields"):
        if not dataset or not all(isinstance(t, torch.Tensor) for t in dataset):
            raise TypeError(
                "TensorLoader cannot serve this dataset: a tuple dataset must hold one or more tensors, got "
                f"({', '.join(type(t).__name__ for t in dataset)}); {USE_DATALOADER} for other datasets"
            )
        if any(t.dim() == 0 for t in dataset):
            raise ValueError("TensorLoader: every tensor of a tuple dataset needs a sample dimension, got a 0-d tensor")
        sizes = [t.shape[0] for t in dataset]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorLoader: the tensors of a tuple dataset must have the same length, got {sizes}")
        return tuple(dataset)
    cls = type(dataset)
    methods = ("__getitem__", "__getitems__", "__len__")
    if isinstance(dataset, PairDataset) and all(_same_method(cls, PairDataset, m) for m in methods):
        return (dataset.X, dataset.y)
    if isinstance(dataset, TensorDataset) and all(_same_method(cls, TensorDataset, m) for m in methods):
        return tuple(dataset.tensors)
    why = ("it overrides __getitem__, __getitems__ or __len__, which TensorLoader would bypass"
           if isinstance(dataset, (PairDataset, TensorDataset, Subset)) else "it is not tensor-backed")
    raise TypeError(
        f"TensorLoader cannot serve dataset of type {cls.__name__} ({why}): it serves PairDataset, "
        f"TensorDataset, tuples of tensors, datasets that read whole batches (NpyDataset) and Subsets of them "
        f"(random_split); {USE_DATALOADER} for other datasets"
    )


def _length(storage: tuple[torch.Tensor, ...] | Any) -> int:
    return int(storage[0].shape[0]) if isinstance(storage, tuple) else len(storage)


def _subset_rows(indices: Any) -> torch.Tensor:
    """A Subset's indices as int64 rows. Refused, naming the dtype: floats (DataLoader's indexing
    refuses them; a cast would truncate them silently) and bool/uint8 (indexing reads those as masks,
    so DataLoader would yield other samples than the rows they number)."""
    try:
        t = indices.cpu() if isinstance(indices, torch.Tensor) else torch.as_tensor(list(indices))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"TensorLoader: Subset.indices must be integers, got {indices!r}") from exc
    if t.numel() and (t.dtype in (torch.bool, torch.uint8) or t.is_floating_point() or t.is_complex()):
        raise TypeError(f"TensorLoader: Subset.indices must be integers, got {t.dtype} indices {indices!r} "
                        "(bool and uint8 index as masks; convert row numbers with .long())")
    return t.to(torch.int64).reshape(-1)


def _served(dataset: Any) -> tuple[tuple[torch.Tensor, ...] | Any, torch.Tensor | None]:
    """``(storage, rows)``: the tensors behind ``dataset`` (or the batch-reading dataset, see
    :func:`is_batch_source`) and, for a ``Subset`` (``random_split``'s parts, nested or not), the
    rows of them it holds, in its order; ``rows`` is None otherwise.

    A subset is an index map: the loader gathers ``rows[i]`` where DataLoader would call
    ``subset[i] = base[rows[i]]``, so the batches are the same, and nothing is copied.
    """
    cls = type(dataset)
    if isinstance(dataset, Subset) and all(_same_method(cls, Subset, m) for m in ("__getitem__", "__getitems__", "__len__")):
        tensors, inner = _served(dataset.dataset)
        n = _length(tensors) if inner is None else int(inner.numel())
        rows = _subset_rows(dataset.indices)
        if rows.numel() and (int(rows.min()) < -n or int(rows.max()) >= n):
            bad = int(rows.min()) if int(rows.min()) < -n else int(rows.max())
            raise IndexError(f"TensorLoader: Subset index {bad} out of range for its dataset of length {n}")
        rows = torch.where(rows < 0, rows + n, rows)
        return tensors, (rows if inner is None else inner[rows])
    return _dataset_tensors(dataset), None


def storage_of(dataset: Any, device: Any) -> tuple[tuple[torch.Tensor, ...], Any, torch.Tensor | None]:
    """``(tensors, source, rows)``: in-memory tensors (moved to ``device``) and no source, or no
    tensors and the dataset that reads whole batches itself; ``rows`` as :func:`_served` says."""
    storage, rows = _served(dataset)
    if isinstance(storage, tuple):
        if device is not None:
            storage = tuple(t.to(torch.device(device)) for t in storage)
        return storage, None, rows
    name = type(storage).__name__
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"device={str(device)!r}: TensorLoader reads {name} batch by batch on the CPU and cannot "
                         "move its data once; move each batch (batchfeed.transforms.OnDevice)")
    return (), storage, rows
