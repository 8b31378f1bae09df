"""Suite-wide guards."""

import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _no_global_rng_use(request: pytest.FixtureRequest):
    """Fail a test whose library code advanced torch's, numpy's or Python's global RNG.

    batchfeed takes a generator or seed for every random choice. Loader-facing tests
    (those using ``make_loader``) are exempt: a third-party loader's use of the global RNG
    is not what they specify.
    """
    if "make_loader" in request.fixturenames or request.node.get_closest_marker("uses_global_rng"):
        yield
        return
    before = (torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    yield
    after = (torch.random.get_rng_state(), np.random.get_state()[1], random.getstate())
    leaked = [name for name, b, a in zip(("torch", "numpy", "random"), before, after)
              if not (torch.equal(b, a) if name == "torch" else (np.array_equal(b, a) if name == "numpy" else b == a))]
    assert not leaked, f"{request.node.nodeid} advanced the global RNG of: {', '.join(leaked)}"
