"""Parallel loading with ``num_workers``: worker seeding, failures that name their sample,
and the measurement behind claim C12 ("workers speed up training").

* :func:`seed_worker` is PyTorch's documented ``worker_init_fn`` recipe: numpy's and
  Python's ``random`` global RNGs seeded from ``torch.initial_seed()``, which the
  DataLoader sets to ``base_seed + worker_id`` in each worker. (Since torch 1.9 the
  DataLoader seeds numpy and ``random`` per worker itself; the recipe keeps code correct
  with other loaders and older torch; pytorch issue #5059 is the bug it prevents.)
* :class:`SlowDataset` is a dataset whose ``__getitem__`` costs a stated latency
  (``time.sleep``: I/O-like waiting, which releases the CPU).
* :class:`NamedSampleErrors` wraps a dataset so that an exception raised while loading
  sample ``i`` says so, also when it crosses a worker process.
* :func:`training_epoch`, :func:`epoch_time`, :func:`worker_epochs` and :func:`worker_speedups`
  run and time one training epoch fed by a ``DataLoader`` with ``num_workers`` workers; the
  C12 claim test and the benchmark (spec/bench/test_bench_workers.py) use them.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ._checks import check_positive_int
from .throughput import Measurement, timed

__all__ = [
    "NamedSampleErrors",
    "SlowDataset",
    "cpu_count",
    "epoch_time",
    "seed_worker",
    "training_epoch",
    "worker_epochs",
    "worker_speedups",
]


def seed_worker(worker_id: int) -> None:  # noqa: ARG001 - the DataLoader passes it
    """Seed numpy's and Python's global RNGs in a DataLoader worker from torch's seed.

    Use as ``DataLoader(..., worker_init_fn=seed_worker, generator=g)``. Inside a worker
    ``torch.initial_seed()`` is ``base_seed + worker_id``, and ``base_seed`` is drawn from
    the loader's ``generator`` once per epoch: each worker gets its own numpy/random
    stream, every epoch gets new ones, and all of it is reproducible from the seed of ``g``.
    Meant to run in a worker process; called in the main process it reseeds the global RNGs.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


class SlowDataset(Dataset):
    """``n`` samples ``(x_i, y_i)`` of the tutorial's data, each costing ``latency`` seconds.

    ``__getitem__`` sleeps ``latency`` seconds before returning ``(X[i], y[i])``: a stand-in
    for reading and decoding a file, whose cost is mostly waiting. Sleeping releases the
    CPU, so the speed-up workers give is not capped by the number of cores, as it would be
    for a CPU-bound decode.

    Args:
        X, y: the samples (see :func:`batchfeed.make_seed_data`).
        latency: seconds per sample, >= 0.

    Raises:
        ValueError: ``latency`` is negative or not finite, or the lengths differ.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, latency: float = 0.005) -> None:
        if not (isinstance(latency, (int, float)) and not isinstance(latency, bool) and 0 <= latency < float("inf")):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency!r}")
        if len(X) != len(y):
            raise ValueError(f"X and y must have the same number of samples, got len(X)={len(X)} and len(y)={len(y)}")
        self.X, self.y, self.latency = X, y, float(latency)

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.X[i], self.y[i]  # an out-of-range index fails before the wait
        if self.latency:
            time.sleep(self.latency)
        return x, y

    def __repr__(self) -> str:
        return f"SlowDataset(n={len(self)}, latency={self.latency * 1e3:g} ms per sample)"


def _name_sample(exc: BaseException, note: str) -> None:
    """Attach ``note`` to ``exc`` so that it shows in the message the caller sees."""
    if sys.version_info >= (3, 11):
        # A note is printed with the traceback, and DataLoader workers forward the
        # formatted traceback text: the note reaches the main process.
        exc.add_note(note)
    elif exc.args and isinstance(exc.args[0], str):  # pragma: no cover - Python 3.10
        exc.args = (f"{exc.args[0]} [{note}]", *exc.args[1:])


class NamedSampleErrors(Dataset):
    """A map-style dataset whose loading errors name the sample that failed.

    ``NamedSampleErrors(ds)[i]`` is ``ds[i]``; an exception raised by ``ds[i]`` is re-raised
    unchanged (same type, same message) with the note ``"while loading sample i of <ds>"``.
    torch's DataLoader forwards a worker's exception as the same type with the worker id
    and the original traceback, but adds no index: this wrapper supplies it.
    ``__getitems__`` is not forwarded, so batches are fetched one sample at a time.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: Any) -> Any:
        try:
            return self.dataset[i]
        except Exception as exc:
            _name_sample(exc, f"while loading sample {i} of {type(self.dataset).__name__}")
            raise

    def __repr__(self) -> str:
        return f"NamedSampleErrors({self.dataset!r})"


# --- measuring C12 ----------------------------------------------------------------------

def training_epoch(
    dataset: Dataset,
    num_workers: int,
    *,
    batch_size: int = 32,
    seed: int = 0,
    train: bool = True,
    features: int | None = None,
    loader_kwargs: dict | None = None,
    threads: int | None = None,
) -> Callable[[], int]:
    """A callable that runs one epoch fed by ``DataLoader(dataset, num_workers=num_workers)``
    and returns the number of samples it fed.

    Each call is one epoch: ``iter(loader)`` (which starts the workers, unless
    ``loader_kwargs`` has ``persistent_workers=True``) and every batch. With ``train=True``
    every batch also takes a step of the tutorial's training loop (``Linear(features, 2)``,
    ``CrossEntropyLoss``, ``SGD(lr=0.1)``); one warm-up step is taken here, so autograd's
    one-off start-up (~1 s) is not charged to the first epoch. Shuffled with a generator
    seeded by ``seed``. ``threads`` sets torch's intra-op threads in this process for the
    duration of each epoch (restored after): with the tutorial's tiny model, 2 threads on 2
    busy cores spend most of each step waiting for each other (measured: 1.9 s instead of
    10 ms per epoch of 32 steps on a loaded 2-core machine), which would swamp what the
    workers change. DataLoader workers always run with 1 thread.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed), **(loader_kwargs or {}),
    )
    if train:
        from .training import make_model, train as train_loop

        if features is None:
            features = int(dataset[0][0].numel())
        model = make_model(features, 2, seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        flat = [(torch.zeros(2, features), torch.zeros(2, dtype=torch.long))]
        train_loop(model, flat, epochs=1, optimizer=opt, check_finite=False)  # warm-up: the first step's set-up

    def epoch() -> int:
        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            if train:
                batches = ((xb.reshape(xb.shape[0], -1), yb) for xb, yb in loader)
                return train_loop(model, batches, epochs=1, optimizer=opt, check_finite=False).samples_per_epoch[0]
            return sum(len(batch[1]) for batch in loader)
        finally:
            torch.set_num_threads(before)

    return epoch


def epoch_time(dataset: Dataset, num_workers: int, **kwargs: Any) -> float:
    """Wall seconds of one :func:`training_epoch` (``kwargs`` go to it).

    The clock starts before ``iter(loader)``, so worker start-up, paid every epoch unless
    ``persistent_workers=True``, is counted; it stops after the last batch.
    """
    epoch = training_epoch(dataset, num_workers, **kwargs)
    start = time.perf_counter()
    epoch()
    return time.perf_counter() - start


def worker_epochs(
    dataset: Dataset,
    workers: Sequence[int] = (0, 2),
    *,
    rounds: int = 1,
    max_rounds: int | None = None,
    max_cpu_wait: float | None = None,
    **kwargs: Any,
) -> dict[int, Measurement]:
    """Wall times of a :func:`training_epoch` (``kwargs`` go to it) with each of ``workers``
    workers, in interleaved rounds (0, 2, 0, 2, ...: load that comes and goes hits every
    configuration alike); per configuration a :class:`~batchfeed.throughput.Measurement` whose
    ``best`` is its fastest epoch, with each epoch's CPU time and wait for a CPU (main thread).

    ``rounds`` rounds are taken; with ``max_cpu_wait`` and ``max_rounds``, more (up to
    ``max_rounds`` in all) while a configuration has no clean epoch, one that waited at most
    ``max_cpu_wait`` of its time for a CPU. The clock starts before ``iter(loader)`` (worker
    start-up counted). An untimed epoch over the first two batches runs first, so one-off
    start-up costs are not charged to whichever configuration happens to be timed first.
    """
    check_positive_int("rounds", rounds)
    limit = rounds if max_rounds is None else max_rounds
    if limit < rounds:
        raise ValueError(f"max_rounds ({max_rounds}) must be at least rounds ({rounds})")
    # The process's first epoch pays one-off costs (lazy imports, first collate).
    few = Subset(dataset, range(min(len(dataset), 2 * kwargs.get("batch_size", 32))))  # type: ignore[arg-type]
    epoch_time(few, 0, **kwargs)
    b = kwargs.get("batch_size", 32)
    rows = {w: Measurement("workers", f"w{w}", f"{w} workers" if w else "no workers", len(dataset),  # type: ignore[arg-type]
                           kwargs.get("features") or 0, b, "cpu", 0, 0) for w in sorted(set(workers))}
    def unclean() -> bool:
        return max_cpu_wait is not None and any(
            m.least_cpu_wait is not None and m.least_cpu_wait > max_cpu_wait for m in rows.values())

    for k in range(limit):
        if k >= rounds and not unclean():
            break
        for w, m in rows.items():
            m.samples = timed(training_epoch(dataset, w, **kwargs), m)
    return rows


def worker_speedups(
    dataset: Dataset,
    workers: Sequence[int] = (0, 1, 2, 4),
    *,
    rounds: int = 1,
    **kwargs: Any,
) -> dict[int, float]:
    """Speed-up of a training epoch with ``w`` workers over ``num_workers=0``, for each ``w``.

    Each configuration is timed ``rounds`` times, rounds interleaved, by :func:`worker_epochs`
    (``kwargs`` go to it) and its fastest time kept; the result maps ``w`` to
    ``time(0) / time(w)`` (> 1: workers help; < 1: they slow the epoch down). ``0`` is always
    measured.
    """
    rows = worker_epochs(dataset, (0, *workers), rounds=rounds, **kwargs)
    return {w: rows[0].best / rows[w].best for w in workers}


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1

