"""batchfeed.peers: the order check every peer epoch passes through, and skipping a peer that does not import."""

from __future__ import annotations

import numpy as np
import pytest

from batchfeed import peers


def test_a_full_permutation_is_exactly_once_and_fully_shuffled():
    """A random permutation: each sample once, mean jump near a full shuffle's (n/3), few near neighbours."""
    n = 100_000
    for seed in range(5):
        q = peers.order_quality(np.random.default_rng(seed).permutation(n), n)
        assert q["exactly_once"] and abs(q["mean_jump"] - 1) < 0.02 and q["near"] < 0.03


def test_a_chunk_local_shuffle_is_flagged_as_not_full():
    """Shuffled within blocks of 256 (litdata's default window): exactly once, but neighbours stay near."""
    n = 100_000
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(np.arange(a, min(n, a + 256))) for a in range(0, n, 256)])
    q = peers.order_quality(order, n)
    assert q["exactly_once"] and q["mean_jump"] < 0.01 and q["near"] > 0.99


@pytest.mark.parametrize("order", [[0, 1, 1], [0, 1], [0, 1, 2, 3]], ids=["repeat", "missing", "extra"])
def test_an_epoch_that_repeats_or_misses_a_sample_is_not_exactly_once(order):
    """A repeat, a missing sample or one too many: exactly_once is False."""
    assert not peers.order_quality(np.asarray(order), 3)["exactly_once"]


def test_a_peer_that_does_not_import_is_skipped_naming_its_extra(monkeypatch):
    """available() gives the line naming the extra and the import error, never raises."""
    monkeypatch.setitem(peers.PEERS, "nope", ("batchfeed_no_such_module", "no-extra", "nothing"))
    why = peers.available("nope")
    assert why is not None and "batchfeed[no-extra]" in why and "ModuleNotFoundError" in why
