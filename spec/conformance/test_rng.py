"""Random numbers: what building a loader and running its epochs take from the generator it
is given, and from torch's global RNG when it has none.

DataLoader only stores the generator when it is built; each epoch then takes, as torch's
DataLoader does, the workers' base seed and the sampler's permutation from it (from the
global RNG without one). A loader that reseeds or rewinds either at construction makes the
next loader, or the caller's own later draws, repeat earlier ones. The reference for what
an epoch takes is torch's DataLoader itself, run on the same input beside the loader under
test. Every test here runs against the loader under test (``--loader``).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from ..helpers import IndexedDataset, epoch_labels


def _advanced(seed: int) -> torch.Generator:
    """A generator seeded with ``seed`` and then used a little, as a training script's would be."""
    g = torch.Generator().manual_seed(seed)
    torch.rand(5, generator=g)
    return g


SHUFFLE = pytest.mark.parametrize("shuffle", [False, True], ids=["sequential", "shuffled"])


@SHUFFLE
def test_building_a_loader_takes_nothing_from_its_generator(make_loader, shuffle):
    """Building a loader leaves the generator it is given exactly where it was: not reseeded, not rewound, not drawn from."""
    g = _advanced(11)
    before = g.get_state()
    make_loader(IndexedDataset(20), batch_size=4, shuffle=shuffle, generator=g)
    assert torch.equal(g.get_state(), before), "building the loader changed its generator's state"


@SHUFFLE
def test_building_a_loader_with_a_generator_leaves_the_global_rng_alone(make_loader, shuffle):
    """A loader given a generator takes nothing from torch's global RNG when it is built, and never reseeds it."""
    before = torch.random.get_rng_state()
    make_loader(IndexedDataset(20), batch_size=4, shuffle=shuffle, generator=_advanced(12))
    assert torch.equal(torch.random.get_rng_state(), before), "building the loader moved or reseeded torch's global RNG"


def test_building_loaders_without_a_generator_never_resets_the_global_rng(make_loader):
    """Two loaders built without a generator, one after the other, shuffle differently, and the caller's draws after each differ: the global RNG is never reset."""
    ds = IndexedDataset(50)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20261202)
        first = make_loader(ds, batch_size=5, shuffle=True)
        after_first = torch.rand(4)
        second = make_loader(ds, batch_size=5, shuffle=True)
        after_second = torch.rand(4)
        orders = epoch_labels(first), epoch_labels(second)
    assert not torch.equal(after_first, after_second), (
        f"the draws after building each loader repeat ({after_first.tolist()}): building a loader reset torch's global RNG")
    assert orders[0] != orders[1], f"two loaders without a generator shuffled alike: {orders[0][:10]}..."


def test_a_generator_shared_by_two_loaders_goes_on_where_the_first_left_it(make_loader):
    """A loader built on a generator another loader has used goes on from where that one left it: its epoch is not a replay of the first loader's."""
    ds, g = IndexedDataset(50), torch.Generator().manual_seed(21)
    first = epoch_labels(make_loader(ds, batch_size=5, shuffle=True, generator=g))
    after_a = g.get_state()
    second = epoch_labels(make_loader(ds, batch_size=5, shuffle=True, generator=g))
    assert first != second, f"the second loader replayed the first one's order {first[:10]}...: the shared generator was rewound"
    assert not torch.equal(g.get_state(), after_a), "the second loader's epoch took nothing from the shared generator"


CASES = {
    "sequential": dict(shuffle=False),
    "shuffled": dict(shuffle=True),
    "shuffled-2-workers": dict(shuffle=True, num_workers=2),
    "shuffled-persistent-workers": dict(shuffle=True, num_workers=2, persistent_workers=True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_epoch_takes_from_the_generator_what_dataloader_takes(make_loader, case):
    """After every epoch the generator stands where torch's DataLoader leaves the same generator, and the batches are DataLoader's: a generator shared with other code stays in step."""
    ds, kw = IndexedDataset(23), CASES[case]
    g, ref = _advanced(22), _advanced(22)
    loader = make_loader(ds, batch_size=4, generator=g, **kw)
    reference = DataLoader(ds, batch_size=4, generator=ref, **kw)
    for e in range(3):
        got, expected = epoch_labels(loader), epoch_labels(reference)
        assert got == expected, f"epoch {e} [{case}]: {got}, but DataLoader gave {expected} from the same generator"
        assert torch.equal(g.get_state(), ref.get_state()), (
            f"after epoch {e} [{case}] the generator is not where DataLoader leaves it: the loader took other draws")


@pytest.mark.parametrize("case", ["sequential", "shuffled"])
def test_each_epoch_without_a_generator_takes_from_the_global_rng_what_dataloader_takes(make_loader, case):
    """Without a generator, an epoch takes from torch's global RNG what DataLoader's takes, and shuffles as DataLoader would from the same seed."""
    ds, kw = IndexedDataset(23), CASES[case]
    runs = {}
    for name, factory in (("loader", make_loader), ("DataLoader", DataLoader)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(23)
            loader = factory(ds, batch_size=4, **kw)
            orders = [epoch_labels(loader) for _ in range(2)]
            runs[name] = (orders, torch.random.get_rng_state())
    (got, state), (expected, ref_state) = runs["loader"], runs["DataLoader"]
    assert got == expected, f"[{case}] epochs {got}, but DataLoader gave {expected} from the same global seed"
    assert torch.equal(state, ref_state), f"[{case}] after 2 epochs torch's global RNG is not where DataLoader leaves it"
