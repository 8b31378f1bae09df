"""len() in every mode, drop_last with a user's sampler, IterableDataset rules, and several
iterators of one loader.

DataLoader's ``len()`` is the length of the sampler it batches from: ``ceil(len(sampler) /
B)`` (``floor`` with ``drop_last``), ``len(batch_sampler)``, ``len(sampler)`` without
batching; for an IterableDataset, ``len(dataset) / B`` rounded the same way. Every test here
runs against the loader under test (``--loader``).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch.utils.data import Sampler

from ..helpers import IndexedDataset, assert_permutation, epoch, epoch_labels
from ..strategies import batch_sizes, drop_lasts, sizes
from ..worker_datasets import RangeStream


class EveryKth(Sampler):
    """Indices ``start, start + k, ...`` below ``n``: a sampler shorter than its dataset."""

    def __init__(self, n: int, k: int, start: int = 0) -> None:
        self.indices = list(range(start, n, k))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@given(n=sizes, k=st.integers(1, 5), batch_size=batch_sizes, drop_last=drop_lasts)
@example(n=10, k=3, batch_size=2, drop_last=True)  # 4 indices: two full batches
@example(n=11, k=2, batch_size=4, drop_last=True)  # 6 indices: one full batch, 2 dropped
@example(n=3, k=5, batch_size=2, drop_last=True)  # 1 index: no batch at all
def test_len_and_drop_last_follow_a_users_sampler(make_loader, n, k, batch_size, drop_last):
    """With a user's sampler, len() is ceil(len(sampler)/B) (floor with drop_last) and the batches are the sampler's indices in order, the partial last batch dropped only with drop_last."""
    sampler = EveryKth(n, k)
    loader = make_loader(IndexedDataset(n), batch_size=batch_size, sampler=sampler, drop_last=drop_last)
    m = len(sampler)
    expected_len = m // batch_size if drop_last else math.ceil(m / batch_size)
    assert len(loader) == expected_len, f"len(loader)={len(loader)}, but should be {expected_len} [len(sampler)={m}, b={batch_size}, drop_last={drop_last}]"
    labels = epoch_labels(loader)
    kept = expected_len * batch_size if drop_last else m
    assert labels == sampler.indices[:kept], f"labels {labels[:10]}..., but the sampler gives {sampler.indices[:kept][:10]}..."


def test_len_without_batching_is_the_samplers(make_loader):
    """With batch_size=None, len() is the number of samples: len(dataset), or len(sampler) with a user's sampler."""
    assert len(make_loader(IndexedDataset(13), batch_size=None)) == 13
    sampler = EveryKth(13, 4)
    loader = make_loader(IndexedDataset(13), batch_size=None, sampler=sampler)
    assert len(loader) == len(sampler) == 4, f"len(loader)={len(loader)} with a sampler of 4 indices"
    assert [int(y) for _, y in loader] == [0, 4, 8, 12]


@given(n=st.integers(0, 60), batch_size=batch_sizes, drop_last=drop_lasts)
@example(n=0, batch_size=4, drop_last=False)
def test_iterable_dataset_is_batched_in_its_order(make_loader, n, batch_size, drop_last):
    """An IterableDataset's samples come in its own order, batched by B, the partial last batch dropped with drop_last; len() is len(dataset)/B rounded the same way."""
    loader = make_loader(RangeStream(n), batch_size=batch_size, drop_last=drop_last)
    expected_len = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(loader) == expected_len, f"len(loader)={len(loader)}, but should be {expected_len} [n={n}, b={batch_size}, drop_last={drop_last}]"
    batches = [b.tolist() for b in loader]
    flat = [i for b in batches for i in b]
    assert flat == list(range(expected_len * batch_size if drop_last else n)), f"samples {flat[:10]}... not in the dataset's order"
    assert len(batches) == expected_len


@pytest.mark.parametrize("shard", [False, True], ids=["unsharded", "sharded-by-worker-info"])
def test_iterable_dataset_with_workers_gives_each_worker_a_copy(make_loader, shard):
    """With 2 workers each iterates its own copy of an IterableDataset: every sample twice unless the dataset shards by get_worker_info(), then once."""
    loader = make_loader(RangeStream(10, shard=shard), batch_size=3, num_workers=2)
    labels = sorted(i for b in epoch(loader) for i in b.tolist())
    expected = list(range(10)) if shard else sorted(list(range(10)) * 2)
    assert labels == expected, f"[{'sharded' if shard else 'unsharded'}] samples {labels}, expected {expected}"


@pytest.mark.parametrize("shuffle", [False, True], ids=["sequential", "shuffled"])
def test_two_iterators_of_one_loader_each_run_a_whole_epoch(make_loader, shuffle):
    """Two iterators of one loader, taken in turn, each yield a whole epoch: neither steals the other's batches."""
    loader = make_loader(IndexedDataset(20), batch_size=3, shuffle=shuffle, generator=torch.Generator().manual_seed(9))
    first, second = iter(loader), iter(loader)
    got: dict[str, list[int]] = {"first": [], "second": []}
    for a, b in zip(first, second):
        got["first"].extend(a[1].tolist())
        got["second"].extend(b[1].tolist())
    got["first"].extend(i for batch in first for i in batch[1].tolist())
    got["second"].extend(i for batch in second for i in batch[1].tolist())
    for name, labels in got.items():
        if shuffle:
            assert_permutation(labels, 20, context=f"{name} of two iterators")
        else:
            assert labels == list(range(20)), f"the {name} of two iterators yielded {labels}"
