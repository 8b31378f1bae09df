"""Throughput of feeding in-memory tensors to a training loop, against the bounds.

One epoch of batches is fed by each *rival* on the same data and batch size:

* ``dataloader``: torch's DataLoader, default use, over the tutorial's ``MyDataset``
  (one ``__getitem__`` per sample, ``default_collate`` per batch);
* ``dataloader_getitems``: DataLoader with its BatchSampler calling a dataset's
  ``__getitems__`` (one gather per batch) and no collate: the best DataLoader can do;
* ``tensorloader``: :class:`batchfeed.TensorLoader`;
* ``permute_slice``: the bound no loader can beat: one ``randperm``, one gather of the whole
  data into a buffer allocated once, then a slice view per batch;
* ``memcpy``: the memory-bandwidth bound: one contiguous copy of the epoch's bytes (the
  bytes every loader must move, at the measured copy bandwidth).

:func:`measure_epochs` times them side by side (rounds interleaved, so drift hits every
rival alike) and returns :class:`Measurement` rows; the same with the tutorial's training
loop fed three ways (:data:`TRAINING_RIVALS`), or step by step (:mod:`batchfeed.paired`). The benchmarks in spec/bench, the C13 claim
test and ``batchfeed bench`` all call these; the ratio table is printed by
:mod:`batchfeed.bench`, the targets are checked by :mod:`batchfeed.targets`.

Absolute times on a shared machine are noise; ratios measured in the same run are the
result. On CUDA every timed epoch ends with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ._checks import check_positive_int
from .datasets import make_seed_data
from .loader import TensorLoader
from .machine import cpu_name, cpu_wait
from .training import make_model, train

__all__ = [
    "BenchData", "Measurement", "RIVALS", "TRAINING_RIVALS", "device_name", "epoch_function",
    "make_data", "measure_epochs", "training_parts", "seeded_generator", "synchronize", "timed",
    "training_epoch_function"
]

#: Epoch rivals: key -> label, in table order.
RIVALS: dict[str, str] = {
    "dataloader": "DataLoader (default)",
    "dataloader_getitems": "DataLoader + __getitems__, no collate",
    "tensorloader": "TensorLoader",
    "permute_slice": "bound: permute once + slice views",
    "memcpy": "bound: memcpy of the epoch's bytes",
}
#: Training-epoch rivals: the tutorial's loop fed three ways.
TRAINING_RIVALS: dict[str, str] = {
    "dataloader": "tutorial loop fed by DataLoader",
    "tensorloader": "same loop fed by TensorLoader",
    "permute_slice": "same loop fed by permute + slice",
}


# --- data -----------------------------------------------------------------------------------

@dataclass
class BenchData:
    """The tutorial's data (``X ~ N(0, 1)`` float32, ``y = (X.sum(1) > 0)``) on the host and on ``device``."""

    X: torch.Tensor
    y: torch.Tensor
    device: torch.device
    Xd: torch.Tensor
    yd: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def features(self) -> int:
        return int(self.X.shape[1])

    @property
    def epoch_bytes(self) -> int:
        """Bytes an epoch delivers in batches: every sample's features and label once."""
        return self.X.numel() * self.X.element_size() + self.y.numel() * self.y.element_size()


def make_data(n: int, features: int, *, device: str | torch.device = "cpu", seed: int = 0) -> BenchData:
    """``n`` samples of the tutorial's data, also moved once to ``device``."""
    X, y = make_seed_data(n, features, seed)
    dev = torch.device(device)
    return BenchData(X, y, dev, X.to(dev), y.to(dev))


def device_name(device: str | torch.device = "cpu") -> str:
    """A human name for the machine a measurement ran on: CPU model or CUDA device name."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = cpu_name()
    threads = torch.get_num_threads()
    return f"{model}, {threads} torch thread{'s' if threads != 1 else ''}"


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing to wait for on the CPU. Ends every timed epoch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the rivals --------------------------------------------------------------------------------

class MyDataset(Dataset):
    """The tutorial's ``MyDataset``: one ``(X[i], y[i])`` per ``__getitem__``."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[idx], self.y[idx]


class GatherDataset(MyDataset):
    """``MyDataset`` plus ``__getitems__``: DataLoader's fetcher gathers a whole batch at once."""

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        idx = torch.as_tensor(indices)
        return [self.X[idx], self.y[idx]]


def _as_is(batch: Any) -> Any:
    """collate_fn for :class:`GatherDataset`: the batch is already gathered."""
    return batch


def _loader(rival: str, data: BenchData, batch_size: int, generator: torch.Generator) -> Iterable:
    pin = data.device.type == "cuda"
    if rival == "dataloader":
        return DataLoader(MyDataset(data.X, data.y), batch_size=batch_size, shuffle=True, generator=generator,
                          pin_memory=pin)
    if rival == "dataloader_getitems":
        return DataLoader(GatherDataset(data.X, data.y), batch_size=batch_size, shuffle=True, generator=generator,
                          collate_fn=_as_is, pin_memory=pin)
    if rival == "tensorloader":
        return TensorLoader((data.Xd, data.yd), batch_size=batch_size, shuffle=True, generator=generator)
    raise ValueError(f"no loader for rival {rival!r}")


def _permute_slice(data: BenchData, generator: torch.Generator) -> Callable[[int], Iterable]:
    """The bound: one permutation, one whole-data gather into a buffer allocated once, slice views.

    The buffer is reused from epoch to epoch (no page faults, no allocation), which no
    loader that hands out independent batches may do: a bound, not a rival.
    """
    bx, by = torch.empty_like(data.Xd), torch.empty_like(data.yd)

    def batches(batch_size: int) -> Iterable:
        perm = torch.randperm(data.n, generator=generator, device=generator.device).to(data.device)
        torch.index_select(data.Xd, 0, perm, out=bx)
        torch.index_select(data.yd, 0, perm, out=by)
        return ((bx[i:i + batch_size], by[i:i + batch_size]) for i in range(0, data.n, batch_size))
    return batches


def seeded_generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator seeded ``seed`` where the data lives: on CUDA there (airbench's way), else the CPU."""
    return torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)


def epoch_function(rival: str, data: BenchData, batch_size: int, *, seed: int = 0) -> Callable[[], int]:
    """A zero-argument function that feeds one epoch of ``rival`` and returns the samples fed.

    The loader is built once; each call is a fresh epoch (a fresh permutation). DataLoader
    rivals read host data and copy each batch to a CUDA device (``pin_memory``,
    ``non_blocking``); the others read the device-resident copy. On CUDA the call ends with
    a synchronize, so its wall time covers the work.

    Raises:
        ValueError: unknown rival or batch size.
    """
    if rival not in RIVALS:
        raise ValueError(f"unknown rival {rival!r}; known: {', '.join(RIVALS)}")
    check_positive_int("batch_size", batch_size)
    dev = data.device
    if rival == "memcpy":
        dst_x, dst_y = torch.empty_like(data.Xd), torch.empty_like(data.yd)

        def copy_epoch() -> int:
            dst_x.copy_(data.Xd)
            dst_y.copy_(data.yd)
            synchronize(dev)
            return data.n
        return copy_epoch

    if rival == "permute_slice":
        bound = _permute_slice(data, seeded_generator(dev, seed))

        def slice_epoch() -> int:
            fed = 0
            for _xb, yb in bound(batch_size):
                fed += yb.shape[0]
            synchronize(dev)
            return fed
        return slice_epoch

    g = torch.Generator(device=dev if rival == "tensorloader" and dev.type == "cuda" else "cpu").manual_seed(seed)
    loader = _loader(rival, data, batch_size, g)
    to_device = dev.type != "cpu" and rival != "tensorloader"

    def loader_epoch() -> int:
        fed = 0
        for xb, yb in loader:
            if to_device:
                xb, yb = xb.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
            fed += yb.shape[0]
        synchronize(dev)
        return fed
    return loader_epoch


def training_epoch_function(rival: str, data: BenchData, batch_size: int = 32, *, lr: float = 0.1,
                            seed: int = 0) -> Callable[[], int]:
    """One epoch of the tutorial's training loop (``Linear(F, 2)``, CrossEntropy, SGD) fed by ``rival``.

    The loop is the tutorial's, verbatim; only the iterable it reads changes. Returns the
    samples trained on.
    """
    model, optimizer, batches = training_parts(rival, data, batch_size, lr=lr, seed=seed)
    dev = data.device

    def train_epoch() -> int:
        # batchfeed's one training loop, as it trains everywhere else; no evaluation, no finiteness
        # check (a check reads the loss back from the device at every step)
        h = train(model, batches, epochs=1, optimizer=optimizer, device=dev, check_finite=False)
        return h.samples_per_epoch[0]
    return train_epoch


def training_parts(rival: str, data: BenchData, batch_size: int, *, lr: float,
                    seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, Callable[[int], Iterable]]:
    """The tutorial's model and SGD, and ``batches(epoch)``, the iterable ``rival`` feeds them."""
    if rival not in TRAINING_RIVALS:
        raise ValueError(f"unknown training rival {rival!r}; known: {', '.join(TRAINING_RIVALS)}")
    dev = data.device
    model = make_model(data.features, 2, seed).to(dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    if rival == "permute_slice":
        bound = _permute_slice(data, seeded_generator(dev, seed))

        def batches(_epoch: int) -> Iterable:
            return bound(batch_size)
    else:
        g = torch.Generator(device=dev if rival == "tensorloader" and dev.type == "cuda" else "cpu").manual_seed(seed)
        loader = _loader(rival, data, batch_size, g)

        def batches(_epoch: int) -> Iterable:
            return loader
    return model, optimizer, batches


# --- measuring ---------------------------------------------------------------------------------

@dataclass
class Measurement:
    """Times of one rival's epochs on one configuration.

    ``samples_per_s`` and ``gb_per_s`` use the best (shortest) epoch: on a noisy machine
    the minimum is the least disturbed estimate of what the code costs. ``clock`` says which
    time the best is taken from: ``"wall"`` (``seconds``), or ``"cpu"`` (``cpu_seconds``, the
    measuring thread's CPU time: the work of a loop that runs in that thread, which other
    processes taking the core do not change; for CPU-device work with torch on one thread).
    """

    group: str                 # "epoch" or "training"
    rival: str
    label: str
    n: int
    features: int
    batch_size: int
    device: str
    epoch_bytes: int
    samples: int
    seconds: list[float] = field(default_factory=list)
    #: Cold-cache runs (batchfeed.outofcore): the fraction of the files' pages still in the page
    #: cache after they were dropped, before each timed epoch (0.0: the epoch started cold).
    resident: list[float] = field(default_factory=list)
    #: Per timed epoch: the measuring thread's CPU seconds, and its seconds waiting for a CPU
    #: (:func:`batchfeed.machine.cpu_wait`; empty where the OS does not say).
    cpu_seconds: list[float] = field(default_factory=list)
    cpu_wait: list[float] = field(default_factory=list)
    #: batchfeed.paired only: CPU seconds of every timed full-batch step (fetch and update).
    step_cpu_seconds: list[float] = field(default_factory=list)
    clock: str = "wall"

    @property
    def best(self) -> float:
        """Shortest epoch by ``clock`` (wall, cpu); ``"step"``: samples / batch_size median steps."""
        if self.clock == "step":
            return statistics.median(self.step_cpu_seconds) * self.samples / self.batch_size
        return min(self.cpu_seconds if self.clock == "cpu" else self.seconds)

    @property
    def least_cpu_wait(self) -> float | None:
        """The smallest fraction of an epoch's wall time spent waiting for a CPU (None: not known)."""
        if not self.cpu_wait:
            return None
        return min(w / s for w, s in zip(self.cpu_wait, self.seconds))

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.best

    @property
    def gb_per_s(self) -> float:
        return self.epoch_bytes / self.best / 1e9

    def ratio_to(self, other: Measurement) -> float:
        """How many times faster than ``other`` (samples/s over samples/s)."""
        return self.samples_per_s / other.samples_per_s

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(best=self.best, samples_per_s=self.samples_per_s, gb_per_s=self.gb_per_s)
        return d


def timed(fn: Callable[[], Any], m: Measurement) -> Any:
    """Call ``fn()`` once and append its wall time, this thread's CPU time and its wait for a CPU to ``m``."""
    w0, t0, c0 = cpu_wait(), time.perf_counter(), time.thread_time()
    out = fn()
    c1, t1, w1 = time.thread_time(), time.perf_counter(), cpu_wait()
    m.seconds.append(t1 - t0)
    m.cpu_seconds.append(c1 - c0)
    if w0 is not None and w1 is not None:
        m.cpu_wait.append(w1 - w0)
    return out


def measure_epochs(
    data: BenchData,
    batch_size: int,
    *,
    rivals: Sequence[str] | None = None,
    repeats: int = 3,
    warmup: int = 1,
    training: bool = False,
    seed: int = 0,
    on_epoch: Callable[[str], None] | None = None,
    clock: str = "wall",
) -> dict[str, Measurement]:
    """Time one epoch of each rival, ``repeats`` times, rounds interleaved across rivals.

    ``rivals`` defaults to all of :data:`RIVALS`, or of :data:`TRAINING_RIVALS` with
    ``training=True`` (the rivals then feed the tutorial's training loop). Each rival's
    first ``warmup`` epochs are not timed. ``on_epoch(rival)`` is called after every epoch
    (progress display). Every timed epoch's wall time, CPU time and wait for a CPU are kept
    (:func:`timed`); ``clock`` (``"wall"`` or ``"cpu"``) says which the rates use.
    """
    check_positive_int("repeats", repeats)
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {clock!r}")
    table = TRAINING_RIVALS if training else RIVALS
    rivals = list(table) if rivals is None else list(rivals)
    unknown = [r for r in rivals if r not in table]
    if unknown:
        raise ValueError(f"unknown rival(s) {unknown}; known: {', '.join(table)}")
    make = training_epoch_function if training else epoch_function
    fns = {r: make(r, data, batch_size, seed=seed) for r in rivals}
    out = {r: Measurement("training" if training else "epoch", r, table[r], data.n, data.features, batch_size,
                          str(data.device), data.epoch_bytes, 0, clock=clock) for r in rivals}
    step = on_epoch or (lambda _r: None)
    for r in rivals:
        for _ in range(warmup):
            out[r].samples = fns[r]()
            step(r)
    for _ in range(repeats):
        for r in rivals:
            out[r].samples = timed(fns[r], out[r])
            step(r)
    return out


if __name__ == "__main__":  # the command this module once was; importing bench here made an import circle
    import sys

    sys.stderr.write("python -m batchfeed.throughput: error: this module measures, the command is "
                     "`batchfeed bench` (or `python -m batchfeed bench`), with the same options\n")
    raise SystemExit(2)
