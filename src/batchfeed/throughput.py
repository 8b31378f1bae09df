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
rival alike) and returns :class:`Measurement` rows; :func:`format_table` prints the ratio
table; :func:`check_targets` compares the ratios with issue 5's targets. The benchmarks in
spec/bench, the C13 claim test and ``batchfeed bench`` (:func:`main`) all call these.

Absolute times on a shared machine are noise; ratios measured in the same run are the
result. On CUDA every timed epoch ends with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ._checks import check_positive_int
from .argtypes import OneLineParser, device, output_file, positive_int
from .datasets import make_seed_data
from .loader import TensorLoader
from .training import make_model, train

__all__ = [
    "BenchData",
    "Measurement",
    "RIVALS",
    "TRAINING_RIVALS",
    "Target",
    "check_targets",
    "device_name",
    "epoch_function",
    "format_table",
    "gather_profile",
    "main",
    "make_data",
    "measure_epochs",
    "time_calls",
    "training_epoch_function",
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
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"{model}, {threads} torch thread{'s' if threads != 1 else ''}"


def _sync(device: torch.device) -> None:
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


def _generator(device: torch.device, seed: int) -> torch.Generator:
    # The permutation is drawn where the data lives (airbench's way on a GPU).
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
            _sync(dev)
            return data.n
        return copy_epoch

    if rival == "permute_slice":
        bound = _permute_slice(data, _generator(dev, seed))

        def slice_epoch() -> int:
            fed = 0
            for _xb, yb in bound(batch_size):
                fed += yb.shape[0]
            _sync(dev)
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
        _sync(dev)
        return fed
    return loader_epoch


def training_epoch_function(rival: str, data: BenchData, batch_size: int = 32, *, lr: float = 0.1,
                            seed: int = 0) -> Callable[[], int]:
    """One epoch of the tutorial's training loop (``Linear(F, 2)``, CrossEntropy, SGD) fed by ``rival``.

    The loop is the tutorial's, verbatim; only the iterable it reads changes. Returns the
    samples trained on.
    """
    if rival not in TRAINING_RIVALS:
        raise ValueError(f"unknown training rival {rival!r}; known: {', '.join(TRAINING_RIVALS)}")
    dev = data.device
    model = make_model(data.features, 2, seed).to(dev)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    if rival == "permute_slice":
        bound = _permute_slice(data, _generator(dev, seed))

        def batches(_epoch: int) -> Iterable:
            return bound(batch_size)
    else:
        g = torch.Generator(device=dev if rival == "tensorloader" and dev.type == "cuda" else "cpu").manual_seed(seed)
        loader = _loader(rival, data, batch_size, g)

        def batches(_epoch: int) -> Iterable:
            return loader

    def train_epoch() -> int:
        # batchfeed's one training loop, as it trains everywhere else; no evaluation, no finiteness
        # check (a check reads the loss back from the device at every step)
        h = train(model, batches, epochs=1, optimizer=optimizer, device=dev, check_finite=False)
        return h.samples_per_epoch[0]
    return train_epoch


# --- measuring ---------------------------------------------------------------------------------

@dataclass
class Measurement:
    """Wall times of one rival's epochs on one configuration.

    ``samples_per_s`` and ``gb_per_s`` use the best (shortest) epoch: on a noisy machine
    the minimum is the least disturbed estimate of what the code costs.
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

    @property
    def best(self) -> float:
        return min(self.seconds)

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


def time_calls(fn: Callable[[], int], *, repeats: int, warmup: int = 1) -> tuple[list[float], int]:
    """Wall time of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, and what the last returned."""
    out = 0
    for _ in range(warmup):
        out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


class _Progress:
    """tqdm progress bar that shows up only if the run lasts more than ``delay`` seconds."""

    def __init__(self, total: int, desc: str, enabled: bool, delay: float = 2.0) -> None:
        self.desc = desc
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional: no bar
                return
            self._bar = tqdm(total=total, desc=desc, delay=delay, leave=False, file=sys.stderr, unit="epoch")

    def step(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(self.desc, refresh=False)
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


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
) -> dict[str, Measurement]:
    """Time one epoch of each rival, ``repeats`` times, rounds interleaved across rivals.

    ``rivals`` defaults to all of :data:`RIVALS`, or of :data:`TRAINING_RIVALS` with
    ``training=True`` (the rivals then feed the tutorial's training loop). Each rival's
    first ``warmup`` epochs are not timed. ``on_epoch(rival)`` is called after every epoch
    (progress display).
    """
    check_positive_int("repeats", repeats)
    table = TRAINING_RIVALS if training else RIVALS
    rivals = list(table) if rivals is None else list(rivals)
    unknown = [r for r in rivals if r not in table]
    if unknown:
        raise ValueError(f"unknown rival(s) {unknown}; known: {', '.join(table)}")
    make = training_epoch_function if training else epoch_function
    fns = {r: make(r, data, batch_size, seed=seed) for r in rivals}
    out = {r: Measurement("training" if training else "epoch", r, table[r], data.n, data.features, batch_size,
                          str(data.device), data.epoch_bytes, 0) for r in rivals}
    step = on_epoch or (lambda _r: None)
    for r in rivals:
        for _ in range(warmup):
            out[r].samples = fns[r]()
            step(r)
    for _ in range(repeats):
        for r in rivals:
            t0 = time.perf_counter()
            out[r].samples = fns[r]()
            out[r].seconds.append(time.perf_counter() - t0)
            step(r)
    return out


def gather_profile(data: BenchData, *, chunk_bytes: int = 8 << 20, repeats: int = 3) -> dict[str, float]:
    """GB/s of the steps between a memcpy and TensorLoader's gather, to say where the bandwidth goes.

    Every variant moves the features of one epoch (``X``, all rows once), in chunks of about
    ``chunk_bytes`` unless it says "whole":

    * ``memcpy whole``: ``dst.copy_(X)``, dst allocated once (the copy-bandwidth bound);
    * ``copy chunks, reused buffer``: contiguous rows into one chunk-sized buffer (writes stay in cache);
    * ``gather sequential indices, reused buffer``: ``index_select`` with indices in order;
    * ``gather random indices, reused buffer``: the same with a permutation (random rows);
    * ``gather random indices, fresh chunks``: what TensorLoader does (new memory per chunk).

    Best of ``repeats``; bytes counted once per row (read + write is twice that).
    """
    X = data.Xd
    n, row = X.shape[0], X[0].numel() * X.element_size()
    rows = max(1, chunk_bytes // row)
    stop = n - n % rows if n >= rows else n
    rows = min(rows, n)
    perm = torch.randperm(n, generator=_generator(data.device, 0), device=data.device)
    seq = torch.arange(n, device=data.device)
    dst, buf = torch.empty_like(X), torch.empty((rows, *X.shape[1:]), dtype=X.dtype, device=X.device)

    def whole() -> None:
        dst.copy_(X)

    def copy_chunks() -> None:
        for c in range(0, stop, rows):
            buf.copy_(X[c:c + rows])

    def gather(idx: torch.Tensor, out: torch.Tensor | None) -> Callable[[], None]:
        def run() -> None:
            for c in range(0, stop, rows):
                if out is None:
                    X.index_select(0, idx[c:c + rows])
                else:
                    torch.index_select(X, 0, idx[c:c + rows], out=out)
        return run

    variants = {
        "memcpy whole": (whole, n),
        "copy chunks, reused buffer": (copy_chunks, stop),
        "gather sequential indices, reused buffer": (gather(seq, buf), stop),
        "gather random indices, reused buffer": (gather(perm, buf), stop),
        "gather random indices, fresh chunks": (gather(perm, None), stop),
    }
    best = {k: math.inf for k in variants}
    for r in range(repeats + 1):  # round 0 warms the allocator up and is not kept
        for name, (fn, _rows) in variants.items():
            t0 = time.perf_counter()
            fn()
            _sync(data.device)
            if r:
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: rows_moved * row / best[name] / 1e9 for name, (_fn, rows_moved) in variants.items()}


#: torch threads while measuring unless --threads says otherwise.
DEFAULT_THREADS = 1
#: How far a same-run ratio moves between runs on a shared machine: a target missed by less is
#: not called a failure, and a DataLoader rival faster than the permute + slice bound by more
#: marks the run as disturbed. Measured (docs/benchmarks.md, "Noise"): six runs of
#: `batchfeed bench --n 3e5` at load average 5-8 on 2 vCPUs; the worst run fell below the median
#: ratio by 8%, 12% and 20% on three targets, and by 68% once on the bandwidth target (an outlier
#: --check should and does fail).
NOISE_MARGIN = 0.20

# --- targets and the table -------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One of issue 5's targets, checked against ratios measured in the same run."""

    name: str
    value: float
    target: float

    @property
    def met(self) -> bool:
        return self.value >= self.target

    @property
    def shortfall(self) -> float:
        """Fraction by which the target is missed (0 when met)."""
        return 0.0 if self.met else 1 - self.value / self.target


def disturbed(rows: Iterable[Measurement]) -> list[str]:
    """Ratios this run knows to be impossible: a DataLoader rival faster than permute + slice.

    DataLoader does strictly more work per batch than the permute + slice bound (a
    ``__getitem__`` per sample and a collate, or a gather per batch, against one slice), in
    the epoch and in the training loop alike; measured faster by more than the noise margin,
    the timings were changed by something else (other processes, threads waiting on busy cores).
    """
    by = {(m.group, m.device, m.n, m.features, m.batch_size, m.rival): m for m in rows}
    out = []
    for (group, dev, n, f, b, rival), m in sorted(by.items()):
        bound = by.get((group, dev, n, f, b, "permute_slice"))
        if rival.startswith("dataloader") and bound is not None and m.ratio_to(bound) > 1 + NOISE_MARGIN:
            out.append(f"{group} {dev} F={f} B={b}: {m.label} measured at {m.ratio_to(bound):.2f}x the permute + "
                       "slice bound, which does strictly less work")
    return out


def check_failures(rows: Iterable[Measurement]) -> list[str]:
    """Why ``--check`` fails: targets missed by more than the noise margin, and impossible ratios."""
    rows = list(rows)
    missed = [f"{t.name}: {t.value:.3g}, target >= {t.target:g} (missed by {t.shortfall:.0%}, "
              f"margin {NOISE_MARGIN:.0%})" for t in check_targets(rows) if t.shortfall > NOISE_MARGIN]
    return missed + [f"disturbed run: {d}" for d in disturbed(rows)]


def check_targets(rows: Iterable[Measurement]) -> list[Target]:
    """Issue 5's targets, from whichever of their measurements ``rows`` holds."""
    by = {(m.group, m.device, m.features, m.batch_size, m.rival): m for m in rows}
    out = []
    for (group, dev, f, b, rival), m in sorted(by.items()):
        if group == "epoch" and rival == "tensorloader":
            def other(r: str) -> Measurement | None:
                return by.get(("epoch", dev, f, b, r))
            dl, bound, copy = other("dataloader"), other("permute_slice"), other("memcpy")
            where = f"{dev} F={f} B={b}"
            if dev == "cpu" and (f, b) == (3, 32):
                if dl:
                    out.append(Target(f"{where}: TensorLoader / DataLoader default", m.ratio_to(dl), 25.0))
                if bound:
                    out.append(Target(f"{where}: TensorLoader / permute+slice bound", m.ratio_to(bound), 0.8))
            if dev == "cpu" and (f, b) == (256, 1024) and copy:
                out.append(Target(f"{where}: TensorLoader / memory-bandwidth bound", m.ratio_to(copy), 0.8))
            if dev.startswith("cuda") and copy:
                out.append(Target(f"{where}: TensorLoader / device copy-bandwidth bound", m.ratio_to(copy), 0.5))
        if group == "training" and rival == "tensorloader":
            dl = by.get(("training", dev, f, b, "dataloader"))
            if dl:
                out.append(Target(f"{dev} training epoch B={b}: TensorLoader loop / DataLoader loop",
                                  m.ratio_to(dl), 1.5))
    return out


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.1f}"


def format_table(rows: Iterable[Measurement]) -> str:
    """The ratio table: per configuration, each rival's samples/s and its ratios to the references."""
    rows = list(rows)
    lines = []
    groups: dict[tuple, list[Measurement]] = {}
    for m in rows:
        groups.setdefault((m.group, m.device, m.n, m.features, m.batch_size), []).append(m)
    for (group, dev, n, f, b), ms in groups.items():
        by = {m.rival: m for m in ms}
        dl, bound, copy = by.get("dataloader"), by.get("permute_slice"), by.get("memcpy")
        title = "one epoch of batches" if group == "epoch" else "one training epoch (tutorial's model, SGD)"
        lines.append(f"{title}: N={n:,}, F={f} float32, B={b}, device {dev}, best of {len(ms[0].seconds)}")
        lines.append(f"  {'rival':<40} {'samples/s':>11} {'GB/s':>7} {'x DataLoader':>13} {'/ slice bound':>14}"
                     f" {'/ copy bound':>13}")
        for m in ms:
            def r(ref: Measurement | None) -> str:
                return f"{m.ratio_to(ref):.3g}" if ref is not None else "-"
            lines.append(f"  {m.label:<40} {_si(m.samples_per_s):>11} {m.gb_per_s:>7.2f} {r(dl):>13} {r(bound):>14}"
                         f" {r(copy):>13}")
        lines.append("")
    targets = check_targets(rows)
    broken = disturbed(rows)
    if targets:
        lines.append("targets (ratios measured side by side in this run)")
        for t in targets:
            verdict = ("met" if t.met else f"MISSED by {t.shortfall:.0%}"
                       + (" (within the noise margin)" if t.shortfall <= NOISE_MARGIN else ""))
            lines.append(f"  {t.name}: {t.value:.3g} (target >= {t.target:g}): {verdict}")
    if broken:
        lines.append("")
        lines.append("DISTURBED RUN: these ratios cannot be right, so no ratio of this run should be trusted; rerun "
                     "on a quieter machine (and with --threads 1):")
        lines += [f"  {d}" for d in broken]
    return "\n".join(lines).rstrip() + "\n"


# --- command line --------------------------------------------------------------------------------

def build_parser(prog: str = "batchfeed bench") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Samples/s of one epoch fed by torch's DataLoader, DataLoader + __getitems__, TensorLoader and "
                    "the two bounds (permute + slice, memcpy), on the tutorial's data; prints ratios measured side "
                    "by side in one run (compare ratios, not absolute times, on a shared machine).")
    p.add_argument("--n", type=positive_int, default=1_000_000, help="samples (default 1e6)")
    p.add_argument("--features", type=positive_int, nargs="+", default=[3, 256], help="features F (default 3 256)")
    p.add_argument("--batch-size", type=positive_int, nargs="+", default=[32, 1024], help="batch sizes (default 32 1024)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed epochs per rival (default 3); best is reported")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--rivals", nargs="+", choices=list(RIVALS), default=list(RIVALS), help="rivals to run (default all)")
    p.add_argument("--training", dest="training", action="store_true", default=True,
                   help="also time one training epoch of the tutorial's model at F=3, B=32 (default)")
    p.add_argument("--no-training", dest="training", action="store_false", help="skip the training epoch")
    p.add_argument("--train-n", type=positive_int, default=None, help="samples for the training epoch (default --n)")
    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                   help=f"torch intra-op threads while measuring, restored afterwards (default {DEFAULT_THREADS}: "
                        "on a shared 2-core machine torch's own 2 threads made the training loop wait on busy "
                        "cores and printed impossible ratios; pass the core count to measure threading)")
    p.add_argument("--check", action="store_true",
                   help=f"exit 1 if a target ratio is missed by more than the noise margin ({NOISE_MARGIN:.0%}) "
                        "or the run was disturbed")
    p.add_argument("--profile", action="store_true",
                   help="also print where the bandwidth goes for each F: memcpy vs chunked copy vs sequential and "
                        "random gathers (gather_profile)")
    p.add_argument("--json", type=output_file, metavar="PATH", default=None, help="also write every measurement to PATH as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def run(args: argparse.Namespace, out: Any = None) -> list[Measurement]:
    """Run the measurements ``args`` asks for, printing the table to ``out``; returns the rows."""
    out = out or sys.stdout
    rows: list[Measurement] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, out, rows)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, out: Any, rows: list[Measurement]) -> list[Measurement]:
    print(f"batchfeed bench: torch {torch.__version__}, device {args.device} ({device_name(args.device)}), "
          f"load average at start {_loadavg()}", file=out, flush=True)
    warmup = 1
    total = (len(args.features) * len(args.batch_size) * len(args.rivals)
             + (len(TRAINING_RIVALS) if args.training else 0)) * (args.repeats + warmup)
    bar = _Progress(total, "bench", args.progress)
    profiles: dict[int, dict[str, float]] = {}
    try:
        for f in args.features:
            data = make_data(args.n, f, device=args.device)
            for b in args.batch_size:
                bar.desc = f"F={f} B={b}"
                rows.extend(measure_epochs(data, b, rivals=args.rivals, repeats=args.repeats, warmup=warmup,
                                           on_epoch=bar.step).values())
            if args.profile:
                profiles[f] = gather_profile(data, repeats=args.repeats)
            del data
        if args.training:
            data = make_data(args.train_n or args.n, 3, device=args.device)
            bar.desc = "training F=3 B=32"
            rows.extend(measure_epochs(data, 32, repeats=args.repeats, warmup=warmup, training=True,
                                       on_epoch=bar.step).values())
    finally:
        bar.close()
    print(format_table(rows), file=out, end="")
    for f, prof in profiles.items():
        print(f"\nwhere the bandwidth goes: N={args.n:,}, F={f} float32 features, 8 MiB chunks, {args.device}", file=out)
        ref = prof["memcpy whole"]
        for name, gbs in prof.items():
            print(f"  {name:<45} {gbs:7.2f} GB/s  {gbs / ref:5.2f} x memcpy", file=out)
    print(f"load average at end {_loadavg()} (other processes share these cores: compare ratios, not times)", file=out)
    if args.json:
        meta = {"torch": torch.__version__, "device": args.device, "device_name": device_name(args.device),
                "python": platform.python_version(), "argv": sys.argv[1:]}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": [m.to_dict() for m in rows], "profiles": profiles,
                       "targets": [asdict(t) | {"met": t.met} for t in check_targets(rows)]}, fh, indent=2)
    return rows


def main(argv: Sequence[str] | None = None, prog: str = "batchfeed bench") -> int:
    """``batchfeed bench``: print the ratio table of one run. Returns the exit status: 0, or
    with ``--check`` 1 when a target is missed beyond the noise margin or the run was disturbed."""
    args = build_parser(prog).parse_args(argv)
    rows = run(args)
    if not args.check:
        return 0
    failed = check_failures(rows)
    for line in failed:
        print(f"{prog} --check: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":  # python -m batchfeed.throughput
    raise SystemExit(main(prog="python -m batchfeed.throughput"))
