"""Worker processes: the same batches as in-process loading, nothing lost, errors surfaced.

Every test here runs against the loader under test (``--loader``); a loader without
``num_workers`` is skipped with that reason.
"""

import pytest
import torch
from torch.utils.data import Dataset

from ..helpers import IndexedDataset, assert_permutation, epoch


class FailsAt(Dataset):
    """IndexedDataset that raises ``KeyError`` with a recognisable message at one index."""

    def __init__(self, n: int, bad: int) -> None:
        self.inner, self.bad = IndexedDataset(n), bad

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        if i == self.bad:
            raise KeyError(f"sample {i} is unreadable")
        return self.inner[i]


@pytest.mark.parametrize("shuffle", [False, True], ids=["sequential", "shuffled"])
def test_two_workers_yield_the_same_batches_as_none(make_loader, shuffle):
    """num_workers=2 yields the same batches, in the same order, as num_workers=0 for the same seed."""
    ds = IndexedDataset(103)

    def batches(workers):
        loader = make_loader(ds, batch_size=8, shuffle=shuffle, num_workers=workers,
                             generator=torch.Generator().manual_seed(3))
        return [(x.clone(), y.clone()) for x, y in epoch(loader)]

    in_process, parallel = batches(0), batches(2)
    assert len(parallel) == len(in_process)
    for i, ((x0, y0), (x2, y2)) in enumerate(zip(in_process, parallel)):
        assert torch.equal(y0, y2) and torch.equal(x0, x2), f"batch {i}: workers=2 gave {y2.tolist()}, workers=0 gave {y0.tolist()}"


@pytest.mark.parametrize("drop_last", [False, True])
def test_every_sample_exactly_once_with_workers(make_loader, drop_last):
    """With 2 workers each sample arrives exactly once per epoch (the partial batch only dropped on request)."""
    n, b = 101, 8
    loader = make_loader(IndexedDataset(n), batch_size=b, shuffle=True, num_workers=2, drop_last=drop_last,
                         generator=torch.Generator().manual_seed(5))
    labels = [i for _, y in epoch(loader) for i in y.tolist()]
    if drop_last:
        assert len(labels) == n - n % b and len(set(labels)) == len(labels), f"{len(labels)} labels, {len(set(labels))} distinct"
    else:
        assert_permutation(labels, n, context="num_workers=2")


def test_worker_exception_reaches_the_caller(make_loader):
    """An exception in a worker is re-raised in the caller with its type and original message."""
    loader = make_loader(FailsAt(40, bad=17), batch_size=4, num_workers=2, timeout=60)
    with pytest.raises(KeyError, match="sample 17 is unreadable"):
        epoch(loader)


def test_in_process_exception_reaches_the_caller(make_loader):
    """Without workers the dataset's exception propagates unchanged."""
    with pytest.raises(KeyError, match="sample 3 is unreadable"):
        epoch(make_loader(FailsAt(10, bad=3), batch_size=2))
