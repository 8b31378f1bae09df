"""Reading ahead while training (issue 15): does TensorLoader's ``prefetch`` hide the reads of an
epoch from ``.npy`` files behind the training step, and what memory does it hold?

"Overlap reading with training": :func:`measure_overlap` times one training epoch (the
tutorial's ``Linear(F, 2)``, or an MLP ``F -> hidden -> 2``; cross-entropy, SGD, batches of B)
fed several ways from the same files, rounds interleaved, warm or cold (the pages dropped as
:mod:`batchfeed.outofcore` drops them):

* ``in_memory``: the same loop over batches already in memory: the training alone, no reads;
  the bound reading ahead can reach;
* ``reads_*``: TensorLoader's epoch with no training: the reads alone (``mmap``: memory map;
  ``pread``: ``NpyDataset(mmap=False)``);
* ``serial_*``: training fed by ``TensorLoader(NpyDataset)``, reads on the loop's thread;
* ``prefetch_*``: the same with ``prefetch=4`` (``prefetch_*_2``: and two reader threads);
* ``workers_pread``: training fed by torch's DataLoader over ``NpyDataset(mmap=False)`` with two
  persistent worker processes: workers, where the GIL does not share them.

Perfect overlap makes an epoch cost max(reads, training) instead of their sum.

:func:`prefetch_epoch` is the workload whose peak RSS (a fresh subprocess,
:func:`batchfeed.measure.peak_memory_series`) states the prefetch memory bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

import torch

from ._checks import check_positive_int
from .loader import TensorLoader
from .outofcore import OocFiles
from .pagecache import drop
from .sources import NpyDataset
from .throughput import Measurement
from .training import train

__all__ = ["OVERLAP_RIVALS", "measure_overlap", "prefetch_epoch", "prefetch_memory"]

OVERLAP_RIVALS: dict[str, str] = {
    "in_memory": "training alone: in-memory batches, no reads",
    "reads_mmap": "reads alone: TensorLoader, memmap",
    "serial_mmap": "training fed by TensorLoader, memmap",
    "prefetch_mmap": "the same, prefetch=4",
    "reads_pread": "reads alone: TensorLoader, preadv",
    "serial_pread": "training fed by TensorLoader, preadv",
    "prefetch_pread": "the same, prefetch=4",
    "prefetch_pread_2": "the same, prefetch=4, 2 reader threads",
    "prefetch_mmap_2": "TensorLoader, memmap, prefetch=4, 2 reader threads",
    "workers_pread": "DataLoader(NpyDataset(mmap=False)), 2 worker processes",
}
#: worker processes of the ``workers_pread`` rival (persistent: started once, before the timed epochs)
WORKERS = 2
#: rival -> (TensorLoader's reading-ahead keywords, memory map (else preadv), trains)
_SETUPS: dict[str, tuple[dict, bool, bool]] = {
    "reads_mmap": ({}, True, False), "serial_mmap": ({}, True, True), "prefetch_mmap": ({"prefetch": 4}, True, True),
    "reads_pread": ({}, False, False), "serial_pread": ({}, False, True),
    "prefetch_pread": ({"prefetch": 4}, False, True), "prefetch_pread_2": ({"prefetch": 4, "readers": 2}, False, True),
    "prefetch_mmap_2": ({"prefetch": 4, "readers": 2}, True, True),
}


def _model(features: int, hidden: int, seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    g = torch.Generator().manual_seed(seed)
    with torch.device("meta"):  # built without drawing from torch's global RNG, then initialised from g
        model = (torch.nn.Linear(features, 2) if not hidden else
                 torch.nn.Sequential(torch.nn.Linear(features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 2)))
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.1, 0.1, generator=g)
    return model, torch.optim.SGD(model.parameters(), lr=0.01)


def _epoch_function(name: str, files: OocFiles, batch_size: int, hidden: int,
                    seed: int) -> tuple[Callable[[], None], Callable[[], int]]:
    model, opt = _model(files.num_features, hidden, seed)
    g = torch.Generator().manual_seed(seed)
    if name == "in_memory":  # the training step's cost does not depend on the order: batches in file order
        X, y = NpyDataset(*files.paths).read_batch(torch.arange(files.n))

        def batches() -> Iterable:
            return zip(X.split(batch_size), y.split(batch_size))
        def close() -> None:  # nothing kept open: the data is in memory
            return None
    elif name == "workers_pread":  # preadv: the workers' open files do not keep the pages from being dropped
        ds = NpyDataset(*files.paths, mmap=False)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g, num_workers=WORKERS,
                                             persistent_workers=True)
        batches, close = (lambda: loader), ds.close
    else:
        ahead, mmap, _train = _SETUPS[name]
        ds = NpyDataset(*files.paths, mmap=mmap)
        loader = TensorLoader(ds, batch_size=batch_size, shuffle=True, generator=g, **ahead)
        batches, close = (lambda: loader), ds.close
    trains = name in ("in_memory", "workers_pread") or _SETUPS[name][2]

    def epoch() -> int:
        if not trains:
            return sum(int(yb.shape[0]) for _xb, yb in batches())
        # batchfeed's one training loop, as the in-memory training rivals run it: no evaluation, no
        # finiteness check (which reads every loss back)
        history = train(model, lambda _epoch: batches(), epochs=1, optimizer=opt, check_finite=False)
        return history.samples_per_epoch[0]
    return close, epoch


def measure_overlap(files: OocFiles, batch_size: int, *, cold: bool, hidden: int = 0,
                    rivals: Sequence[str] | None = None, repeats: int = 3, seed: int = 0,
                    on_epoch: Callable[[str], None] | None = None) -> dict[str, Measurement]:
    """One training epoch per rival, ``repeats`` times after one untimed epoch, rounds interleaved;
    cold: every rival's files closed and the pages dropped before each timed epoch. The model is
    the tutorial's ``Linear(F, 2)`` (``hidden=0``) or an MLP with one hidden layer."""
    check_positive_int("repeats", repeats)
    rivals = list(OVERLAP_RIVALS) if rivals is None else list(rivals)
    fns = {r: _epoch_function(r, files, batch_size, hidden, seed) for r in rivals}
    group = f"overlap-{'cold' if cold else 'warm'}"
    out = {r: Measurement(group, r, OVERLAP_RIVALS[r], files.n, files.num_features, batch_size, "cpu",
                          files.epoch_bytes, 0) for r in rivals}
    step = on_epoch or (lambda _r: None)
    for r in rivals:
        out[r].samples = fns[r][1]()
        step(r)
    for _ in range(repeats):
        for r in rivals:
            if cold:
                for close, _epoch in fns.values():
                    close()
                out[r].resident.append(max(drop(files.paths).values()))
            t0 = time.perf_counter()
            out[r].samples = fns[r][1]()
            out[r].seconds.append(time.perf_counter() - t0)
            step(r)
    for close, _epoch in fns.values():  # a loader and its iterator form a cycle: unmap now, not at some GC
        close()
    return out


def prefetch_epoch(features_path: str, labels_path: str, *, batch_size: int, prefetch: int, chunk_bytes: int,
                   readers: int = 1, step_seconds: float = 0.0) -> int:
    """One shuffled epoch of ``TensorLoader(NpyDataset(mmap=False))`` with ``prefetch`` reads ahead,
    the loop pausing ``step_seconds`` per batch (a training step, so the readers run ahead to the
    bound); ``preadv``, so that peak RSS counts only private memory, not mapped file pages."""
    loader = TensorLoader(NpyDataset(features_path, labels_path, mmap=False), batch_size=batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(0), chunk_bytes=chunk_bytes, prefetch=prefetch,
                          readers=readers)
    fed = 0
    for _xb, yb in loader:
        fed += yb.shape[0]
        if step_seconds:
            time.sleep(step_seconds)
    return fed


def prefetch_memory(files: OocFiles, batch_size: int, *, setups: Sequence[tuple[int, int]] = ((2, 1), (8, 1), (4, 2)),
                    chunk_bytes: int = 1 << 20, step_seconds: float = 0.002) -> dict[str, float]:
    """MiB of peak RSS above ``prefetch=0`` for each ``(prefetch, readers)`` in ``setups`` (one fresh
    subprocess per run, :func:`batchfeed.measure.peak_memory`), beside the stated bound
    ``prefetch + readers - 1`` reads' rows (:mod:`batchfeed.loader.prefetch`): the loop pauses
    ``step_seconds`` per batch so the readers run ahead to it."""
    from .measure import peak_memory

    def extra(depth: int, readers: int = 1) -> int:
        return peak_memory(prefetch_epoch, str(files.features), str(files.labels), batch_size=batch_size,
                           prefetch=depth, readers=readers, chunk_bytes=chunk_bytes,
                           step_seconds=step_seconds).rss_increase

    row_bytes = files.epoch_bytes // files.n
    rows_per_read = max(batch_size, chunk_bytes // row_bytes // batch_size * batch_size)
    read_mib = rows_per_read * row_bytes / 2**20
    base = extra(0)
    out = {"one read's rows": read_mib, "prefetch=0: peak RSS above start": base / 2**20}
    for depth, readers in setups:
        out[f"prefetch={depth} readers={readers}: measured"] = (extra(depth, readers) - base) / 2**20
        out[f"prefetch={depth} readers={readers}: bound"] = (depth + readers - 1) * read_mib
    return out
