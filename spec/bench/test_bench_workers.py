"""Benchmark (claim C12): one training epoch fed by torch's DataLoader with num_workers in {0, 1, 2, 4}.

Groups, each compared against its own ``num_workers=0``:

* ``waiting``: every sample costs 10 ms of ``time.sleep`` (I/O-like latency; releases the CPU).
* ``decoding``: real files: 128 x 128 RGB noise PNGs read and decoded by
  ``batchfeed.sources.ImageFolderDataset`` (CPU-bound, ~0.4 ms per image).
* ``decoding-large``: 384 x 384 noise PNGs decoded and resized to 64 x 64 (~3 ms per image).
* ``in-memory``: the tutorial's tensors (N=1000, 3 features, B=32), fresh workers each epoch.
* ``in-memory, persistent workers``: the same with ``persistent_workers=True``, after a warm-up
  epoch: no start-up, only the per-batch inter-process cost.

Every epoch includes the tutorial's training step per batch (``batchfeed.workers.training_epoch``,
the function the C12 claim test times), with one torch thread in the main process (with 2
threads on 2 shared cores the tiny model's steps measure thread scheduling, not loading). ``extra_info`` holds samples/s, the speed-up over 0
workers measured in this run, and the machine. Run: ``pytest spec/bench/test_bench_workers.py
--benchmark-only``.
"""

from __future__ import annotations

import warnings

import pytest

from batchfeed import PairDataset, make_seed_data
from batchfeed.throughput import device_name
from batchfeed.workers import SlowDataset, cpu_count, training_epoch
from spec.worker_datasets import write_noise_pngs

WORKERS = [0, 1, 2, 4]
LATENCY, LATENCY_N, LATENCY_B = 0.010, 192, 16
PNG_N, PNG_SIDE, PNG_B = 256, 128, 16
BIG_N, BIG_SIDE, BIG_TO = 192, 384, 64
MEMORY_N, MEMORY_B = 1000, 32

_best: dict[str, float] = {}  # group -> fastest num_workers=0 epoch in this run


@pytest.fixture(scope="module")
def png_roots(tmp_path_factory):
    """Folders of noise PNGs, written on first use: ``png_roots(n, side)``."""
    made = {}

    def get(n: int, side: int):
        if (n, side) not in made:
            pytest.importorskip("PIL", reason="Pillow is not installed (pip install 'batchfeed[images]')")
            made[n, side] = tmp_path_factory.mktemp(f"png{side}")
            write_noise_pngs(made[n, side], n, side)
        return made[n, side]
    return get


def _dataset(kind: str, png_roots):
    if kind == "waiting":
        return SlowDataset(*make_seed_data(LATENCY_N, 3, seed=0), latency=LATENCY), LATENCY_B
    if kind.startswith("decoding"):
        sources = pytest.importorskip("batchfeed.sources", reason="batchfeed.sources is not available")
        if kind == "decoding":
            return sources.ImageFolderDataset(png_roots(PNG_N, PNG_SIDE)), PNG_B
        return sources.ImageFolderDataset(png_roots(BIG_N, BIG_SIDE), size=(BIG_TO, BIG_TO)), PNG_B
    return PairDataset(*make_seed_data(MEMORY_N, 3, seed=0)), MEMORY_B


GROUPS = {
    "waiting": f"training epoch, {LATENCY * 1e3:g} ms of waiting per sample (time.sleep), N={LATENCY_N}, B={LATENCY_B}",
    "decoding": f"training epoch, {PNG_SIDE}x{PNG_SIDE} PNG files decoded, N={PNG_N}, B={PNG_B}",
    "decoding-large": f"training epoch, {BIG_SIDE}x{BIG_SIDE} PNG files decoded and resized to {BIG_TO}x{BIG_TO}, "
                      f"N={BIG_N}, B={PNG_B}",
    "in-memory": f"training epoch, in-memory tensors (the tutorial's), N={MEMORY_N}, B={MEMORY_B}",
    "in-memory-persistent": f"training epoch, in-memory tensors, persistent workers, N={MEMORY_N}, B={MEMORY_B}",
}


@pytest.mark.parametrize("num_workers", WORKERS, ids=[f"{w}-workers" for w in WORKERS])
@pytest.mark.parametrize("kind", list(GROUPS))
def test_training_epoch_with_workers(benchmark, png_roots, kind, num_workers):
    """One shuffled training epoch fed by DataLoader(num_workers=w); speed-up over w=0 in extra_info."""
    if kind == "in-memory-persistent" and num_workers == 0:
        pytest.skip("persistent_workers needs num_workers > 0; the in-memory group's 0-worker run is the reference")
    dataset, batch_size = _dataset(kind.removesuffix("-persistent"), png_roots)
    persistent = kind.endswith("persistent")
    epoch = training_epoch(dataset, num_workers, batch_size=batch_size, threads=1,
                           loader_kwargs={"persistent_workers": True} if persistent else None)
    benchmark.group = GROUPS[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "4 workers exceed the suggested maximum of 2" on 2 cores
        # Epochs of waiting/decoding take seconds: 3 rounds; in-memory ones a fraction: 7.
        rounds = 7 if kind.startswith("in-memory") else 3
        samples = benchmark.pedantic(epoch, rounds=rounds, iterations=1, warmup_rounds=1 if persistent else 0)
    assert samples == len(dataset), f"the epoch fed {samples} samples, the dataset has {len(dataset)}"
    if benchmark.stats is None:  # --benchmark-disable
        return
    best = benchmark.stats.stats.min
    reference = kind.removesuffix("-persistent")
    if num_workers == 0:
        _best[reference] = best
    info = benchmark.extra_info
    info.update(device_name=device_name("cpu"), cores=cpu_count(), num_workers=num_workers, n=len(dataset),
                batch_size=batch_size, samples_per_s=round(samples / best, 1))
    if reference in _best:
        info["speedup_vs_0_workers"] = round(_best[reference] / best, 3)
