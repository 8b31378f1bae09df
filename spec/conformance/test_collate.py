"""Collation: a user's ``collate_fn`` is what makes each batch (or each sample, with
``batch_size=None``); without one, ``default_collate`` builds batches and
``default_convert`` unbatched samples, by the type table torch documents.

Every test here runs against the loader under test (``--loader``); the type table needs
map-style datasets (any ``__getitem__``), ``collate_fn`` tests the ``collate_fn`` keyword.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
import torch

from ..helpers import IndexedDataset, epoch
from ..worker_datasets import SamplesOf

Point = namedtuple("Point", ["x", "y"])


class Collated:
    """What the spec's collate_fn returns: the samples it was given, untouched, and a mark."""

    def __init__(self, samples) -> None:
        self.samples = samples


def collate_to_marked(samples):
    """A user's collate_fn: keeps the list of samples as it came."""
    return Collated(samples)


def label_of(sample) -> int:
    return int(sample[1])


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
def test_collate_fn_makes_every_batch(make_loader, num_workers):
    """A user's collate_fn is called with each batch's list of samples, and what it returns is yielded as it is."""
    ds = IndexedDataset(11)
    batches = epoch(make_loader(ds, batch_size=4, collate_fn=collate_to_marked, num_workers=num_workers))
    assert all(isinstance(b, Collated) for b in batches), f"batches are {[type(b).__name__ for b in batches]}, not what collate_fn returned"
    got = [[label_of(s) for s in b.samples] for b in batches]
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]], f"collate_fn was given the samples {got}"
    assert all(isinstance(b.samples, list) for b in batches), "collate_fn was not given a list of samples"


def test_collate_fn_with_batch_size_none_gets_each_sample(make_loader):
    """With batch_size=None a user's collate_fn is called with each sample (not a list), and its result yielded."""
    items = epoch(make_loader(IndexedDataset(5), batch_size=None, collate_fn=collate_to_marked))
    assert [type(b).__name__ for b in items] == ["Collated"] * 5
    assert [label_of(b.samples) for b in items] == [0, 1, 2, 3, 4], "collate_fn was not given the single samples in order"


def test_collate_fn_with_a_batch_sampler_gets_its_batches(make_loader):
    """With a batch_sampler, collate_fn gets exactly the samples of each index list."""
    items = epoch(make_loader(IndexedDataset(10), batch_sampler=[[3, 1], [9]], collate_fn=collate_to_marked))
    assert [[label_of(s) for s in b.samples] for b in items] == [[3, 1], [9]]


# --- default_collate's type table (torch/utils/data/_utils/collate.py, default_collate's docstring)

def _tensor(i):
    return torch.tensor([i, -i], dtype=torch.int16)


def _numpy_array(i):
    return np.array([i, i + 0.5], dtype=np.float32)


def _numpy_scalar(i):
    return np.float64(i)


def _int(i):
    return i


def _float(i):
    return i + 0.25


def _bool(i):
    return i % 2 == 0


def _str(i):
    return f"s{i}"


def _dict(i):
    return {"a": i, "b": _numpy_array(i)}


def _namedtuple(i):
    return Point(i, float(i))


def _tuple(i):
    return (i, _tensor(i))


def _list(i):
    return [i, float(i)]


def _list_of_numpy(i):
    return [i, _numpy_array(i)]


IDX = [0, 1, 2]

# (sample maker, expected batch of samples IDX): the documented mapping, written out.
TABLE = {
    "tensor": (_tensor, torch.tensor([[i, -i] for i in IDX], dtype=torch.int16)),
    "numpy-array": (_numpy_array, torch.tensor([[i, i + 0.5] for i in IDX], dtype=torch.float32)),
    "numpy-scalar": (_numpy_scalar, torch.tensor(IDX, dtype=torch.float64)),
    "int": (_int, torch.tensor(IDX, dtype=torch.int64)),
    "float": (_float, torch.tensor([i + 0.25 for i in IDX], dtype=torch.float64)),
    "bool": (_bool, torch.tensor([i % 2 == 0 for i in IDX], dtype=torch.bool)),
    "str": (_str, [f"s{i}" for i in IDX]),
    "dict": (_dict, {"a": torch.tensor(IDX), "b": torch.tensor([[i, i + 0.5] for i in IDX], dtype=torch.float32)}),
    "namedtuple": (_namedtuple, Point(torch.tensor(IDX), torch.tensor(IDX, dtype=torch.float64))),
    "tuple": (_tuple, [torch.tensor(IDX), torch.tensor([[i, -i] for i in IDX], dtype=torch.int16)]),
    "list": (_list, [torch.tensor(IDX), torch.tensor(IDX, dtype=torch.float64)]),
}


def assert_same_batch(got, expected, path: str = "batch") -> None:
    """``got`` has ``expected``'s types all the way down, tensors equal with the same dtype."""
    __tracebackhide__ = True
    assert type(got) is type(expected), f"{path}: {type(got).__name__}, but should be {type(expected).__name__} ({got!r})"
    if isinstance(expected, torch.Tensor):
        assert got.dtype == expected.dtype and torch.equal(got, expected), f"{path}: {got!r}, but should be {expected!r}"
    elif isinstance(expected, dict):
        assert list(got) == list(expected), f"{path}: keys {list(got)}, but should be {list(expected)}"
        for k in expected:
            assert_same_batch(got[k], expected[k], f"{path}[{k!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{path}: {len(got)} fields, but should be {len(expected)}"
        for k, (g, e) in enumerate(zip(got, expected)):
            assert_same_batch(g, e, f"{path}[{k}]")
    else:
        assert got == expected, f"{path}: {got!r}, but should be {expected!r}"


@pytest.mark.parametrize("kind", list(TABLE))
def test_default_collate_follows_the_type_table(make_loader, kind):
    """Without a collate_fn, samples of each type are batched as default_collate documents (tensors stacked, numbers to int64/float64/bool tensors, str kept, dict/namedtuple/sequence field by field)."""
    make, expected = TABLE[kind]
    (batch,) = epoch(make_loader(SamplesOf(len(IDX), make), batch_size=len(IDX)))
    assert_same_batch(batch, expected, f"batch of {kind} samples")


# default_convert (batch_size=None): numpy arrays become tensors, everything else is kept.
CONVERT = {
    "tensor": (_tensor, _tensor(1)),
    "numpy-array": (_numpy_array, torch.tensor([1, 1.5], dtype=torch.float32)),
    "int": (_int, 1),
    "str": (_str, "s1"),
    "dict": (_dict, {"a": 1, "b": torch.tensor([1, 1.5], dtype=torch.float32)}),
    "namedtuple": (_namedtuple, Point(1, 1.0)),
    "tuple": (_tuple, [1, _tensor(1)]),  # a plain tuple comes back a list (torch: "Backwards compatibility")
    "list-of-numpy": (_list_of_numpy, [1, torch.tensor([1, 1.5], dtype=torch.float32)]),
}


@pytest.mark.parametrize("kind", list(CONVERT))
def test_batch_size_none_converts_samples_as_default_convert(make_loader, kind):
    """batch_size=None without a collate_fn yields each sample with numpy arrays made tensors and every other value kept, containers included."""
    make, expected = CONVERT[kind]
    items = epoch(make_loader(SamplesOf(2, make), batch_size=None))
    assert len(items) == 2, f"batch_size=None gave {len(items)} items for 2 samples"
    assert_same_batch(items[1], expected, f"sample 1 ({kind})")


def test_default_collate_refuses_samples_of_unequal_length(make_loader):
    """Samples that are sequences of different lengths cannot be batched: RuntimeError, not a truncated batch."""
    with pytest.raises(RuntimeError, match="equal size"):
        epoch(make_loader(SamplesOf(3, _ragged), batch_size=3))


def _ragged(i):
    return list(range(i + 1))
