"""Suite-wide guards."""

import random
import zlib

import numpy as np
import pytest
import torch

from batchfeed.pytest_plugin import loader_under_test

_rng_key = pytest.StashKey[tuple]()
_RNGS = ("torch", "numpy", "random")


def _snapshot() -> tuple:
    return torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same(name: str, before, after) -> bool:
    if name == "torch":
        return torch.equal(before, after)
    if name == "numpy":
        return np.array_equal(before, after)
    return before == after


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):
    """Before any fixture of the test is set up (module- and session-scoped ones included), move
    torch's, numpy's and Python's global RNGs to a state of their own and remember it.

    The move makes a library that reseeds a global RNG (``torch.manual_seed(k)``) visible: the
    state after it would equal a fixed seed's, not this one. Seeded from the test id, so runs
    repeat.
    """
    if item.get_closest_marker("uses_global_rng") is None:
        seed = zlib.crc32(item.nodeid.encode())
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        item.stash[_rng_key] = _snapshot()
        loader_under_test(item.config).built_without_generator = 0
    return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    """After the test and every fixture torn down with it: fail if a global RNG moved.

    batchfeed, and the loader under test when it was given a ``generator``, must take every
    random choice from the generator or seed it was given. A loader built without one may
    draw from torch's global RNG, as DataLoader does (its base seed and shuffle order), but
    never from numpy's or Python's. Tests that use a global RNG on purpose are marked
    ``uses_global_rng``.
    """
    result = yield
    before = item.stash.get(_rng_key, None)
    if before is not None:
        after = _snapshot()
        exempt = {"torch"} if loader_under_test(item.config).built_without_generator else set()
        leaked = [name for name, b, a in zip(_RNGS, before, after) if name not in exempt and not _same(name, b, a)]
        assert not leaked, (f"{item.nodeid} advanced or reseeded the global RNG of: {', '.join(leaked)} "
                            "(use a generator, or mark the test uses_global_rng if that is its point)")
    return result
