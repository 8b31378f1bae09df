"""Benchmark: one training epoch of the tutorial's model (Linear(3, 2), CrossEntropy, SGD lr=0.1, B=32).

The loop is the tutorial's, verbatim; only what feeds it changes: torch's DataLoader (the
tutorial), TensorLoader, and permute once + slice views (the bound).
"""

from __future__ import annotations

import pytest

from batchfeed.throughput import training_epoch_function

from .conftest import TRAIN_N

#: The DataLoader loop first, so the others' extra_info holds their ratio to it.
ORDER = ["dataloader", "permute_slice", "tensorloader"]


def _cases():
    for device in ("cpu", "cuda"):
        marks = [pytest.mark.cuda] if device == "cuda" else []
        for rival in ORDER:
            yield pytest.param(device, rival, marks=marks, id=f"{device}-{rival}")


@pytest.mark.parametrize(("device", "rival"), list(_cases()))
def test_training_epoch(benchmark, bench_data, record_rate, device, rival):
    """One epoch of the tutorial's training loop over N samples, B=32, fed by ``rival``."""
    data = bench_data(TRAIN_N, 3, device)
    fn = training_epoch_function(rival, data, 32)
    benchmark.group = f"one training epoch (tutorial's model): {device}, N={TRAIN_N:,}, F=3, B=32"
    samples = benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1 if device == "cuda" else 0)
    assert samples == TRAIN_N, f"{rival} trained on {samples} samples, but the epoch has {TRAIN_N}"
    record_rate(benchmark, rival, data, 32, samples, training=True)
