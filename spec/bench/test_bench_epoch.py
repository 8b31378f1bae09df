"""Benchmark: one epoch of batches of the tutorial's data, every rival on the same work.

Groups: one per (device, N, F, B). Rivals: torch DataLoader default, DataLoader with a
BatchSampler calling ``__getitems__`` (no collate), TensorLoader, and the two bounds
(permute once + slice views; a memcpy of the epoch's bytes). On CUDA the DataLoader rivals
read host memory and copy each pinned batch to the GPU; the others are GPU-resident, and
every timed epoch ends with a synchronize (after one warm-up epoch).
"""

from __future__ import annotations

import pytest

from batchfeed.throughput import epoch_function

from .conftest import N

CPU_CONFIGS = [(3, 32), (3, 1024), (256, 32), (256, 1024)]
#: On a GPU the per-batch Python cost hides the bandwidth at small batches; B=8192 shows it.
CUDA_CONFIGS = CPU_CONFIGS + [(256, 8192)]
#: References first, so the later rivals' extra_info holds their ratios.
ORDER = ["permute_slice", "memcpy", "dataloader", "dataloader_getitems", "tensorloader"]
SLOW = {"dataloader", "dataloader_getitems"}


def _cases():
    for device, configs in (("cpu", CPU_CONFIGS), ("cuda", CUDA_CONFIGS)):
        marks = [pytest.mark.cuda] if device == "cuda" else []
        for features, batch_size in configs:
            for rival in ORDER:
                yield pytest.param(device, features, batch_size, rival, marks=marks,
                                   id=f"{device}-F{features}-B{batch_size}-{rival}")


@pytest.mark.parametrize(("device", "features", "batch_size", "rival"), list(_cases()))
def test_epoch_of_batches(benchmark, bench_data, record_rate, device, features, batch_size, rival):
    """One shuffled epoch of B-sample batches of N tutorial samples, fed by ``rival``."""
    data = bench_data(N, features, device)
    fn = epoch_function(rival, data, batch_size)
    benchmark.group = f"one epoch of batches: {device}, N={N:,}, F={features}, B={batch_size}"
    slow = rival in SLOW
    samples = benchmark.pedantic(fn, rounds=3 if slow else 5, iterations=1,
                                 warmup_rounds=0 if slow and device == "cpu" else 1)
    assert samples == N, f"{rival} fed {samples} samples, but the epoch has {N}"
    record_rate(benchmark, rival, data, batch_size, samples)
