"""batchfeed.adapters: lazy imports, the extra named when a peer is missing, the peer's own loader returned."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from batchfeed import adapters

#: adapter -> (the module it imports, the extra that brings it)
PEERS = {
    "accelerate_prepared": ("accelerate", "accelerate"),
    "accelerate_shard": ("accelerate.data_loader", "accelerate"),
    "accelerate_dispatcher": ("accelerate.data_loader", "accelerate"),
    "accelerate_skip_first_batches": ("accelerate", "accelerate"),
    "fabric_single_cpu": ("lightning.fabric", "lightning"),
    "fabric_ddp_world1": ("lightning.fabric", "lightning"),
    "webdataset_webloader": ("webdataset", "webdataset"),
    "webdataset_webloader_with_length": ("webdataset", "webdataset"),
    "accelerate_stateful": ("accelerate", "accelerate"),
    "torchdata_nodes": ("torchdata.nodes", "nodes"),
}


def test_every_adapter_is_listed():
    assert sorted(adapters.__all__) == sorted(PEERS)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_adapter_names_the_libraries_it_wraps(name):
    """``adapter.wraps`` names the distributions whose loader it builds (the versions batchfeed conform reports)."""
    wraps = getattr(adapters, name).wraps
    assert wraps and PEERS[name][1] in wraps + ("nodes",), f"{name}.wraps = {wraps}"


@pytest.mark.uses_global_rng  # torchdata.nodes' Loader draws from torch's global RNG (a peer's behaviour, not fixed)
def test_the_nodes_adapter_gives_dataloaders_batches():
    """torchdata_nodes: the migration guide's Loader gives DataLoader's batches in order, and a permutation of them shuffled."""
    pytest.importorskip("torchdata.nodes")
    from torch.utils.data import DataLoader

    ds = TensorDataset(torch.arange(10))
    for kw in ({"batch_size": 3}, {"batch_size": 4, "drop_last": True}):
        got = [b[0].tolist() for b in adapters.torchdata_nodes(ds, **kw)]
        assert got == [b[0].tolist() for b in DataLoader(ds, **kw)], kw
    shuffled = [b[0].tolist() for b in adapters.torchdata_nodes(ds, batch_size=5, shuffle=True,
                                                                generator=torch.Generator().manual_seed(1))]
    # Not DataLoader's order for the seed: DataLoader draws its base seed from the generator first.
    assert sorted(sum(shuffled, [])) == list(range(10)) and [len(b) for b in shuffled] == [5, 5], shuffled


def test_importing_the_module_imports_no_peer():
    """``import batchfeed.adapters`` needs none of the peers: their imports wait for a call."""
    code = ("import sys, batchfeed.adapters; "
            "print(sorted(m for m in ('accelerate', 'lightning', 'webdataset', 'torchdata') if m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", f"importing batchfeed.adapters imported {out.stdout.strip()}"


@pytest.mark.parametrize("name", sorted(PEERS))
def test_a_missing_peer_names_its_extra(monkeypatch, name):
    """With the peer's module unimportable, the adapter raises ImportError with the pip command for its extra."""
    module, extra = PEERS[name]
    monkeypatch.setitem(sys.modules, module, None)  # what `import module` sees when it is not installed
    with pytest.raises(ImportError, match=rf"pip install 'batchfeed\[{extra}\]'") as info:
        getattr(adapters, name)(TensorDataset(torch.arange(4)), batch_size=2)
    assert repr(module) in str(info.value), f"the error does not name the missing module {module!r}: {info.value}"


@pytest.mark.parametrize("name, module, cls", [
    ("accelerate_shard", "accelerate.data_loader", "DataLoaderShard"),
    ("accelerate_dispatcher", "accelerate.data_loader", "DataLoaderDispatcher"),
    ("fabric_single_cpu", "lightning.fabric.wrappers", "_FabricDataLoader"),
    ("webdataset_webloader", "webdataset", "WebLoader"),
])
def test_an_adapter_returns_the_peers_own_loader(name, module, cls):
    """No wrapper of batchfeed's in between: the object is the peer's class, holding the keywords given."""
    pytest.importorskip(module.partition(".")[0])
    loader = getattr(adapters, name)(TensorDataset(torch.arange(10)), batch_size=3, drop_last=True,
                                    generator=torch.Generator().manual_seed(0))
    expected = getattr(importlib.import_module(module), cls)
    # type(), not isinstance(): accelerate's loaders report DataLoader as their __class__.
    assert expected in type(loader).__mro__, f"{name} returned {type(loader).__name__}, not the peer's {cls}"
    assert [len(b[0]) for b in loader] == [3, 3, 3], f"{name}: batch_size=3, drop_last=True over 10 samples"
