"""Batching: how many batches, of what size, shape and dtype, in what order, from what source.

Every test here runs against the loader under test (``--loader``).
"""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, Sampler, SequentialSampler, TensorDataset

from batchfeed import PairDataset

from ..helpers import (
    DictDataset,
    IndexedDataset,
    assert_aligned,
    assert_batch_sizes,
    epoch,
    epoch_labels,
)
from ..strategies import batch_sizes, drop_lasts, feature_dtypes, label_dtypes, sizes


@given(n=sizes, batch_size=batch_sizes, drop_last=drop_lasts)
@example(n=5, batch_size=10, drop_last=False)
@example(n=5, batch_size=10, drop_last=True)
@example(n=64, batch_size=32, drop_last=False)
@example(n=7, batch_size=1, drop_last=True)
def test_len_is_ceil_or_floor_of_n_over_b(make_loader, n, batch_size, drop_last):
    """len(loader) is ceil(N/B), or floor(N/B) with drop_last=True, and matches the batches yielded."""
    loader = make_loader(IndexedDataset(n), batch_size=batch_size, drop_last=drop_last)
    expected = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(loader) == expected, f"len(loader)={len(loader)}, but should be {expected} [n={n}, b={batch_size}, drop_last={drop_last}]"
    assert len(epoch(loader)) == expected


@given(n=sizes, batch_size=batch_sizes, drop_last=drop_lasts, shuffle=st.booleans())
@example(n=100, batch_size=32, drop_last=False, shuffle=False)
@example(n=100, batch_size=32, drop_last=True, shuffle=True)
@example(n=5, batch_size=10, drop_last=True, shuffle=False)  # no batch at all: an empty epoch, not an error
def test_every_batch_but_the_last_is_full(make_loader, n, batch_size, drop_last, shuffle):
    """Every batch has B samples; the last has the remainder, or is dropped with drop_last=True."""
    loader = make_loader(IndexedDataset(n), batch_size=batch_size, drop_last=drop_last, shuffle=shuffle,
                         generator=torch.Generator().manual_seed(n))
    assert_batch_sizes([len(y) for _, y in loader], n=n, batch_size=batch_size, drop_last=drop_last)


@given(n=st.integers(1, 100), batch_size=batch_sizes, features=st.integers(1, 8),
       xdtype=feature_dtypes, ydtype=label_dtypes)
def test_batch_shapes_and_dtypes(make_loader, n, batch_size, features, xdtype, ydtype):
    """Batches have shapes (B, F) and (B,), and the dataset's dtypes (float32 stays float32, int64 stays int64)."""
    X = torch.arange(n * features).reshape(n, features).to(xdtype)
    y = torch.arange(n).to(ydtype)
    for xb, yb in make_loader(PairDataset(X, y), batch_size=batch_size):
        b = min(batch_size, xb.shape[0])
        assert tuple(xb.shape) == (b, features), f"x batch shape {tuple(xb.shape)}, but should be ({b}, {features})"
        assert tuple(yb.shape) == (b,), f"y batch shape {tuple(yb.shape)}, but should be ({b},)"
        assert xb.dtype == xdtype, f"x batch dtype {xb.dtype}, but the dataset holds {xdtype}"
        assert yb.dtype == ydtype, f"y batch dtype {yb.dtype}, but the dataset holds {ydtype}"


@given(n=sizes, batch_size=batch_sizes)
def test_without_shuffle_batches_come_in_dataset_order(make_loader, n, batch_size):
    """shuffle=False yields samples 0, 1, ..., N-1 in order, features aligned with labels."""
    ds = IndexedDataset(n)
    loader = make_loader(ds, batch_size=batch_size, shuffle=False)
    order = []
    for xb, yb in loader:
        assert_aligned(xb, yb, features=ds.features)
        order.extend(yb.tolist())
    assert order == list(range(n)), f"order {order[:10]}..., but should be 0..{n - 1}"


@pytest.mark.parametrize("dataset_kind", ["tuple", "dict"])
def test_labels_stay_aligned_when_shuffled(make_loader, dataset_kind):
    """With shuffle=True each label stays with its features, for tuple and dict samples."""
    n = 257
    ds = IndexedDataset(n) if dataset_kind == "tuple" else DictDataset(n)
    loader = make_loader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    seen = []
    for batch in loader:
        x, y = (batch[0], batch[1]) if dataset_kind == "tuple" else (batch["x"], batch["y"])
        assert_aligned(x, y, features=ds.features, context=dataset_kind)
        seen.extend(y.tolist())
    assert sorted(seen) == list(range(n))


def test_batch_size_none_yields_unbatched_samples(make_loader):
    """batch_size=None yields single samples: no batch dimension, one item per index."""
    ds = IndexedDataset(10, features=4)
    items = epoch(make_loader(ds, batch_size=None, shuffle=False))
    assert len(items) == 10
    for i, (x, y) in enumerate(items):
        assert tuple(x.shape) == (4,), f"sample {i}: x shape {tuple(x.shape)}, but should be (4,) (no batch dim)"
        assert int(y) == i and torch.as_tensor(y).dim() == 0


class _EveryThirdReversed(Sampler):
    """Indices n-1, n-4, ...: an order no loader would produce by accident."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):
        return iter(range(self.n - 1, -1, -3))

    def __len__(self) -> int:
        return len(range(self.n - 1, -1, -3))


def test_sampler_is_honoured(make_loader):
    """A custom sampler decides which samples come and in what order."""
    n = 50
    sampler = _EveryThirdReversed(n)
    labels = epoch_labels(make_loader(IndexedDataset(n), batch_size=4, sampler=sampler))
    assert labels == list(sampler), f"loader yielded {labels}, but the sampler gives {list(sampler)}"


def test_batch_sampler_is_honoured(make_loader):
    """A batch_sampler decides each batch's indices exactly, including uneven batches."""
    batches = [[3, 1], [0, 4, 2, 9], [7]]
    got = [yb.tolist() for _, yb in make_loader(IndexedDataset(10), batch_sampler=batches)]
    assert got == batches, f"batches {got}, but batch_sampler gave {batches}"


def test_batch_sampler_object_sets_len(make_loader):
    """len(loader) is len(batch_sampler) when one is given."""
    bs = BatchSampler(SequentialSampler(range(23)), batch_size=5, drop_last=False)
    loader = make_loader(IndexedDataset(23), batch_sampler=bs)
    assert len(loader) == len(bs) == 5
    assert [len(y) for _, y in loader] == [5, 5, 5, 5, 3]


def test_any_tensor_dataset_is_served(make_loader):
    """A TensorDataset of three tensors yields three aligned batch tensors."""
    a = torch.arange(12.0).reshape(6, 2)
    b = torch.arange(6)
    c = torch.arange(6) * 10
    batches = epoch(make_loader(TensorDataset(a, b, c), batch_size=4))
    assert [len(t) for t in batches[0]] == [4, 4, 4]
    assert torch.equal(torch.cat([t[2] for t in batches]), c)
    assert torch.equal(torch.cat([t[0] for t in batches]), a)
