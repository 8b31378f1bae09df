"""In-memory sources: the tutorial's ``MyDataset`` done right, and its synthetic data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ._checks import check_index, check_positive_int

__all__ = ["PairDataset", "make_seed_data"]


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a tensor or array-like, got {type(value).__name__}: {exc}") from exc


class PairDataset(Dataset):
    """Aligned ``(features, label)`` pairs held in memory.

    ``X`` and ``y`` may be tensors or anything :func:`torch.as_tensor` accepts (lists,
    numpy arrays). Both must have the same first dimension, and at least one sample.

    Raises:
        ValueError: the lengths differ, the data is empty, or an input is a 0-d scalar.
        TypeError: an input cannot be converted to a tensor.
    """

    def __init__(self, X: Any, y: Any) -> None:
        X = _as_tensor("X", X)
        y = _as_tensor("y", y)
        for name, t in (("X", X), ("y", y)):
            if t.dim() == 0:
                raise ValueError(f"{name} must have a sample dimension, got a 0-d tensor")
        if X.shape[0] != y.shape[0]:
            raise ValueError(
                f"X and y must have the same number of samples, got len(X)={X.shape[0]} and len(y)={y.shape[0]}"
            )
        if X.shape[0] == 0:
            raise ValueError("PairDataset needs at least one sample, got len(X)=0")
        self.X = X
        self.y = y

    def __len__(self) -> int:
        return self.X.shape[0]

    def _check_index(self, idx: Any) -> int:
        return check_index(idx, len(self), "PairDataset")

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        i = self._check_index(idx)
        return self.X[i], self.y[i]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Fetch a whole batch with one gather; torch's fetcher calls this when present.

        Returns a list of pairs, the format ``default_collate`` expects from a fetcher. The
        indices are those ``dataset[i]`` accepts: a Python sequence of them (numpy and 0-d
        tensor integers included), or a 1-d integer tensor or array.
        """
        if len(indices) == 0:
            return []
        # A Python sequence (not a tensor or an array) of anything but plain ints, DataLoader's
        # batches, is checked index by index as dataset[i] checks it.
        if not hasattr(indices, "__array__") and not all(type(i) is int for i in indices):
            indices = [self._check_index(i) for i in indices]
        try:
            index = torch.as_tensor(indices, device=self.X.device)
        except (TypeError, ValueError, RuntimeError):  # e.g. an int beyond int64, an object array
            index = torch.as_tensor([self._check_index(i) for i in indices], device=self.X.device)
        if index.dtype == torch.bool or index.is_floating_point() or index.is_complex() or index.dim() != 1:
            raise TypeError(f"PairDataset.__getitems__ needs a 1-d sequence of integers, got {indices!r}")
        n = len(self)
        if int(index.min()) < -n or int(index.max()) >= n:
            bad = next(int(i) for i in index.tolist() if not -n <= i < n)
            raise IndexError(f"index {bad} out of range for dataset of length {n}")
        index = torch.where(index < 0, index + n, index).long()
        xs = self.X.index_select(0, index)
        ys = self.y.index_select(0, index.to(self.y.device))
        return list(zip(xs.unbind(0), ys.unbind(0)))

    def __repr__(self) -> str:
        return (
            f"PairDataset(n={len(self)}, X={tuple(self.X.shape)} {self.X.dtype}, "
            f"y={tuple(self.y.shape)} {self.y.dtype})"
        )


def make_seed_data(n: int = 1000, features: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's synthetic data: ``X ~ N(0, 1)`` float32, ``y = (X.sum(1) > 0).long()``.

    Deterministic by ``seed``; uses its own generator, never the global RNG.
    """
    check_positive_int("n", n)
    check_positive_int("features", features)
    g = torch.Generator().manual_seed(int(seed))
    X = torch.randn(n, features, generator=g, dtype=torch.float32)
    y = (X.sum(dim=1) > 0).long()
    return X, y
