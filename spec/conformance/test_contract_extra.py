"""DataLoader promises that mutating torch's own data-loading code showed no test kept
(tools/mutation_torch.py, docs/spec-strength.md): what ``batch_size=None`` does to numpy
strings and lists, a batch of one numpy sample, an IterableDataset served unbatched, the
random streams workers give a dataset's augmentations.

Every test here runs against the loader under test (``--loader``); all need map-style or
iterable datasets other than tensor datasets.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch.utils.data import DataLoader

from ..helpers import epoch
from ..worker_datasets import AugmentedDataset, RangeStream, SamplesOf


def _numpy_str(i):
    return np.str_(f"s{i}")


def _numpy_str_array(i):
    return np.array([f"a{i}", "b"])


def _list(i):
    return [i, np.array([i, i + 0.5], dtype=np.float32)]


class TaggedList(list):
    """A list subclass: a sample type that must come back as itself."""


def _tagged_list(i):
    return TaggedList([i, np.array([i], dtype=np.int64)])


def _numpy_pair(i):
    return np.array([i, -i], dtype=np.int32)


def test_batch_size_none_keeps_numpy_strings_as_they_are(make_loader):
    """batch_size=None yields a numpy string scalar, and a numpy array of strings, as they are: only numeric numpy data becomes tensors."""
    (scalar,) = epoch(make_loader(SamplesOf(1, _numpy_str), batch_size=None))
    assert type(scalar) is np.str_ and scalar == "s0", f"np.str_ sample came back as {scalar!r}"
    (array,) = epoch(make_loader(SamplesOf(1, _numpy_str_array), batch_size=None))
    assert isinstance(array, np.ndarray) and array.tolist() == ["a0", "b"], f"string array came back as {array!r}"


def test_batch_size_none_converts_each_item_of_a_list_sample(make_loader):
    """batch_size=None yields a list sample as a list, each numpy array in it made a tensor and the other items kept."""
    items = epoch(make_loader(SamplesOf(2, _list), batch_size=None))
    assert len(items) == 2
    got = items[1]
    assert type(got) is list and len(got) == 2, f"list sample came back as {got!r}"
    assert got[0] == 1 and type(got[0]) is int, f"item 0: {got[0]!r}, but should be the int 1"
    assert isinstance(got[1], torch.Tensor) and got[1].dtype == torch.float32 and got[1].tolist() == [1.0, 1.5], (
        f"item 1: {got[1]!r}, but should be tensor([1.0, 1.5])")


def test_batch_size_none_keeps_the_type_of_a_list_subclass_sample(make_loader):
    """batch_size=None yields a sample of a list subclass as that subclass, its numpy arrays made tensors."""
    (got,) = epoch(make_loader(SamplesOf(1, _tagged_list), batch_size=None))
    assert type(got) is TaggedList, f"a TaggedList sample came back as {type(got).__name__}"
    assert got[0] == 0 and isinstance(got[1], torch.Tensor) and got[1].tolist() == [0], f"items {got!r}"


@pytest.mark.parametrize("n", [1, 3])
def test_a_batch_of_one_numpy_sample_is_a_tensor_of_one_row(make_loader, n):
    """Numpy-array samples batch into a tensor of their dtype, a batch of one included (n=1, and the last batch of 3 samples by 2)."""
    batches = epoch(make_loader(SamplesOf(n, _numpy_pair), batch_size=2))
    last = batches[-1]
    assert isinstance(last, torch.Tensor) and last.dtype == torch.int32, f"last batch: {last!r}"
    assert last.tolist() == [[n - 1, -(n - 1)]], f"last batch {last.tolist()}, but should be the one sample {n - 1}"


def test_iterable_dataset_with_batch_size_none_yields_its_samples_one_by_one(make_loader):
    """batch_size=None over an IterableDataset yields each of its samples in its order, unbatched, and stops when it ends."""
    items = epoch(make_loader(RangeStream(5), batch_size=None))
    assert [int(x) for x in items] == [0, 1, 2, 3, 4], f"samples {items!r}"
    assert all(torch.as_tensor(x).dim() == 0 for x in items), "a sample came with a batch dimension"


def test_workers_give_augmentations_dataloaders_random_streams(make_loader):
    """With 2 workers and a generator seed, each sample's torch, numpy and random draws are the ones torch's DataLoader gives it from the same seed (numpy seeded per worker from the base seed as DataLoader does)."""
    def draws(factory) -> torch.Tensor:
        loader = factory(AugmentedDataset(12), batch_size=3, num_workers=2, generator=torch.Generator().manual_seed(7))
        return torch.cat([d for d, _, _ in loader])

    got, expected = draws(make_loader), draws(DataLoader)
    for k, name in enumerate(AugmentedDataset.RNGS):
        assert torch.equal(got[:, k], expected[:, k]), (
            f"{name} draws {got[:4, k].tolist()}..., but DataLoader's workers draw {expected[:4, k].tolist()}... from seed 7")
