"""Assertion helpers and small datasets for the spec.

Helpers are keyword-only where it helps and fail with messages that say what was expected,
what came, and for which input. ``__tracebackhide__`` makes a failure point at the test.
They are tested themselves in spec/meta/test_helpers.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset


def indexed_tensors(n: int, features: int = 3, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` where sample ``i`` is ``(x_i, i)`` with ``x_i[j] = i * F + j``."""
    X = torch.arange(n * features, dtype=torch.float64).reshape(n, features).to(dtype)
    return X, torch.arange(n, dtype=torch.int64)


class IndexedDataset(TensorDataset):
    """A ``TensorDataset`` in which every sample names itself: ``(x_i, i)``, ``x_i[j] = i * F + j``.

    From any batch the indices are the labels, and ``x[:, 0] == y * F`` checks that features
    and labels stayed aligned. Being a plain TensorDataset, tensor-only loaders can serve it.
    """

    def __init__(self, n: int, features: int = 3, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(*indexed_tensors(n, features, dtype))
        self.n, self.features = n, features
        self.X, self.y = self.tensors


class DictDataset(Dataset):
    """Samples are dicts ``{"x": x_i, "y": i}`` with :class:`IndexedDataset`'s values."""

    def __init__(self, n: int, features: int = 3) -> None:
        self.n, self.features = n, features
        self.X, self.y = indexed_tensors(n, features)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.X[i], "y": self.y[i]}


class TutorialDataset(Dataset):
    """The tutorial's ``MyDataset``, verbatim: a plain map-style dataset."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X = X
        self.y = y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[idx], self.y[idx]


def epoch(loader: Iterable) -> list[Any]:
    """All batches of one pass over ``loader``."""
    return list(iter(loader))


def epoch_labels(loader: Iterable, *, key: Any = 1) -> list[int]:
    """The labels of one epoch, concatenated in the order they came."""
    out: list[int] = []
    for batch in loader:
        out.extend(torch.as_tensor(batch[key]).reshape(-1).tolist())
    return out


def assert_aligned(x: torch.Tensor, y: torch.Tensor, *, features: int, context: str = "") -> None:
    """Features and labels of an :class:`IndexedDataset` batch belong to the same sample."""
    __tracebackhide__ = True
    x = torch.as_tensor(x)
    first = x.reshape(x.shape[0], -1)[:, 0] if x.dim() > 1 else x.reshape(1, -1)[:, 0]
    expected = torch.as_tensor(y).reshape(-1).to(torch.float64) * features
    bad = (first.to(torch.float64) != expected).nonzero().reshape(-1).tolist()
    assert not bad, (
        f"labels not aligned with features at batch rows {bad[:10]}: x[:,0]={first[bad[:5]].tolist()}, "
        f"but labels {torch.as_tensor(y).reshape(-1)[bad[:5]].tolist()} need {expected[bad[:5]].tolist()} [{context}]"
    )


def assert_permutation(order: Sequence[int], n: int, *, context: str = "") -> None:
    """``order`` holds each of ``0..n-1`` exactly once: none lost, none repeated."""
    __tracebackhide__ = True
    counts = Counter(order)
    missing = sorted(set(range(n)) - counts.keys())
    repeated = sorted(i for i, c in counts.items() if c > 1)
    extra = sorted(i for i in counts if not 0 <= i < n)
    assert not (missing or repeated or extra), (
        f"expected a permutation of range({n}), got {len(order)} samples: "
        f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} ({len(missing)}), "
        f"repeated {repeated[:10]} ({len(repeated)}), out of range {extra[:10]} [{context}]"
    )


def assert_batch_sizes(sizes: Sequence[int], *, n: int, batch_size: int, drop_last: bool, context: str = "") -> None:
    """Every batch has ``batch_size`` samples but the last, which has the remainder or is dropped."""
    __tracebackhide__ = True
    full, rest = divmod(n, batch_size)
    expected = [batch_size] * full + ([] if drop_last or rest == 0 else [rest])
    assert list(sizes) == expected, (
        f"batch sizes {_short(sizes)}, but should be {_short(expected)} "
        f"[n={n}, batch_size={batch_size}, drop_last={drop_last}{', ' + context if context else ''}]"
    )


def _short(seq: Sequence[int]) -> str:
    seq = list(seq)
    return str(seq) if len(seq) <= 8 else f"[{seq[0]}, {seq[1]}, ..., {seq[-2]}, {seq[-1]}] (len {len(seq)})"


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X ~ chi-square(df): the regularised upper incomplete gamma Q(df/2, x/2)."""
    return float(torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), torch.tensor(x / 2, dtype=torch.float64)))


def chi2_threshold(df: int, alpha: float) -> float:
    """Upper ``alpha`` quantile of chi-square(df), by bisection on :func:`chi2_sf` (no scipy needed)."""
    lo, hi = 0.0, float(df)
    while chi2_sf(hi, df) > alpha:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if chi2_sf(mid, df) > alpha else (lo, mid)
    return (lo + hi) / 2


def chi2_statistic(counts: torch.Tensor) -> float:
    """Pearson's statistic of a table of counts against the uniform table with the same total."""
    counts = counts.to(torch.float64)
    expected = counts.sum() / counts.numel()
    return float(((counts - expected) ** 2 / expected).sum())
