"""Peers as rivals of ``batchfeed bench --out-of-core`` (issue 23): what a user who outgrows
DataLoader installs instead, fed the same data (the ``.npy`` files of :mod:`batchfeed.outofcore`)
after converting it with the library's own documented writer.

* ``litdata`` (extra ``bench-litdata``): ``litdata.optimize`` of one sample per row, then
  ``StreamingDataset(dir, shuffle=True)`` + ``StreamingDataLoader(batch_size=B, num_workers=w)``;
* ``mosaicml-streaming`` (extra ``streaming``): ``MDSWriter``, then ``StreamingDataset(local=dir,
  shuffle=True)`` + ``StreamingDataLoader``.

Each sample carries its row number, so every epoch can be checked to yield each sample exactly
once (:func:`order_quality`), and how shuffled its order is measured: a chunk-local shuffle
(both peers' default) is not a full shuffle. A peer whose library does not import is skipped
with a line naming the extra and the error (:func:`available`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .outofcore import OocFiles

__all__ = ["PEERS", "Converted", "available", "convert", "describe", "order_quality", "peer_epoch", "peer_rivals"]

#: peer -> (import name, extra, label)
PEERS = {
    "litdata": ("litdata", "bench-litdata", "litdata StreamingDataLoader (optimize'd)"),
    "mosaic": ("streaming", "streaming", "mosaicml-streaming StreamingDataLoader (MDS)"),
}
_BLOCK = 4096


def available(peer: str) -> str | None:
    """None when ``peer``'s library imports, else why not (naming the extra to install)."""
    module, extra, _label = PEERS[peer]
    try:
        __import__(module)
    except Exception as e:  # noqa: BLE001 - any import failure skips the peer, reported whole
        return f"{peer}: skipped: `import {module}` failed ({type(e).__name__}: {e}); pip install 'batchfeed[{extra}]'"
    return None


@dataclass(frozen=True)
class Converted:
    """A peer's copy of the data: where, how long the writer took, its size on disk."""

    peer: str
    folder: Path
    seconds: float
    features: int

    @property
    def bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    @property
    def paths(self) -> list[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())


def _rows(files: OocFiles, block: range) -> tuple[np.ndarray, np.ndarray]:
    x = np.load(files.features, mmap_mode="r")
    y = np.load(files.labels, mmap_mode="r")
    return np.array(x[block.start:block.stop]), np.array(y[block.start:block.stop])


def _litdata_samples(args: tuple[OocFiles, range]):
    files, block = args
    x, y = _rows(files, block)
    for k, i in enumerate(block):
        yield {"index": i, "x": x[k], "y": int(y[k])}


def convert(peer: str, files: OocFiles, folder: Path) -> Converted:
    """Write ``files`` with ``peer``'s documented writer and its defaults into ``folder`` (emptied first)."""
    with _rng_kept():  # the writers reseed the global generators
        return _convert(peer, files, folder)


def _convert(peer: str, files: OocFiles, folder: Path) -> Converted:
    shutil.rmtree(folder, ignore_errors=True)
    blocks = [range(a, min(files.n, a + _BLOCK)) for a in range(0, files.n, _BLOCK)]
    t0 = time.perf_counter()
    if peer == "litdata":
        import litdata
        litdata.optimize(fn=_litdata_samples, inputs=[(files, b) for b in blocks], output_dir=str(folder),
                         chunk_bytes="64MB", num_workers=1, verbose=False)
    else:
        from streaming import MDSWriter
        with MDSWriter(out=str(folder), columns={"index": "int64", "x": f"ndarray:float32:{files.num_features}", "y": "int64"}) as w:
            for b in blocks:
                x, y = _rows(files, b)
                for k, i in enumerate(b):
                    w.write({"index": i, "x": x[k], "y": int(y[k])})
    return Converted(peer, folder, time.perf_counter() - t0, files.num_features)


def _loader(conv: Converted, batch_size: int, workers: int, seed: int):
    if conv.peer == "litdata":
        from litdata import StreamingDataLoader, StreamingDataset
        ds = StreamingDataset(str(conv.folder), shuffle=True, seed=seed)
        return StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)
    from streaming import StreamingDataLoader, StreamingDataset
    ds = StreamingDataset(local=str(conv.folder), shuffle=True, shuffle_seed=seed, batch_size=batch_size)
    return StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers)


def peer_epoch(conv: Converted, batch_size: int, n: int, *, workers: int = 0, seed: int = 0, train: bool = False,
               qualities: list | None = None) -> tuple[Callable[[], None], Callable[[], int]]:
    """``(close, epoch)`` as :func:`batchfeed.outofcore.ooc_epoch` gives them: one epoch of the peer's
    loader (a fresh loader each epoch, as its docs use it); ``train``: the tutorial's model trained
    on each batch (``Linear(F, 2)``, cross-entropy, SGD); ``qualities``: each epoch's
    :func:`order_quality` (of the ``n`` samples) is appended to it."""
    with _rng_kept():
        model = torch.nn.Linear(conv.features, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    calls, held = [0], []

    def close() -> None:
        """Let go of the last epoch's loader (its maps and open chunk files), so a drop can work."""
        held.clear()
        gc.collect()

    def epoch() -> int:
        calls[0] += 1
        close()
        with _rng_kept():  # litdata reseeds the global generators; the caller's stay as they were
            return _run(held, conv, batch_size, workers, seed + calls[0], train and (model, opt, loss_fn), n, qualities)
    return close, epoch


def _run(held: list, conv: Converted, batch_size: int, workers: int, seed: int, train, n: int,
         qualities: list | None) -> int:
    fed, order = 0, []
    held.append(_loader(conv, batch_size, workers, seed))
    for batch in held[0]:
        xb, yb = batch["x"], batch["y"]
        if train:
            model, opt, loss_fn = train
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
        order.append(batch["index"].numpy().copy())
        fed += len(yb)
    if qualities is not None:
        qualities.append(order_quality(np.concatenate(order) if order else np.zeros(0), n))
    return fed


@contextlib.contextmanager
def _rng_kept():
    """The global generators of torch, numpy and random as they were, whatever runs inside."""
    state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        yield
    finally:
        torch.random.set_rng_state(state[0])
        np.random.set_state(state[1])
        random.setstate(state[2])


def order_quality(order: np.ndarray, n: int) -> dict[str, float | bool]:
    """Whether an epoch's row numbers are each sample exactly once, and how shuffled they are:
    ``mean_jump``: mean ``|order[k+1] - order[k]|`` over ``n / 3`` (1 for a full shuffle, whose
    expected jump is ``n / 3``; near 0 for a sequential or chunk-local order); ``near``: the share of
    neighbours within 1% of ``n`` of each other (0.02 for a full shuffle)."""
    order = np.asarray(order, dtype=np.int64)
    once = len(order) == n and bool((np.bincount(order, minlength=n) == 1).all()) if len(order) else False
    jump = np.abs(np.diff(order)) if len(order) > 1 else np.zeros(1)
    return {"exactly_once": once, "mean_jump": float(jump.mean() / (n / 3)), "near": float((jump <= n / 100).mean())}


def cache_dirs() -> list[Path]:
    """Where the peers keep copies of what they read besides the data folder (dropped cold too)."""
    home = Path(os.path.expanduser("~"))
    return [p for p in (home / ".lightning" / "chunks", Path("/tmp/streaming")) if p.exists()]


def peer_rivals(files: OocFiles, folder: Path, batch_size: int, *, workers: tuple[int, ...] = (0, 2),
                train: bool = True, say: Callable[[str], None] = print) -> tuple[dict, list[Path], dict]:
    """Every installed peer converted into ``folder`` and its rivals for
    :func:`batchfeed.outofcore.measure_files`: ``(extra, files to drop cold, report)``; ``report``
    per rival key: the conversion and the order qualities of its epochs (filled as they run)."""
    extra, drop, report = {}, [], {}
    for peer, (_module, _extra, label) in PEERS.items():
        why = available(peer)
        if why:
            say(why)
            continue
        conv = convert(peer, files, folder / peer)
        say(f"{peer}: converted with its writer in {conv.seconds:.1f} s, {conv.bytes / 1e6:.1f} MB on disk "
            f"({len(conv.paths)} files; the .npy files: {files.epoch_bytes / 1e6:.1f} MB)")
        drop += conv.paths
        for w in workers:
            for t in ((False, True) if train else (False,)):
                key = f"peer_{peer}_w{w}" + ("_train" if t else "")
                quals: list = []
                close, epoch = peer_epoch(conv, batch_size, files.n, workers=w, train=t, qualities=quals)
                extra[key] = (f"{label}, {w} workers" + (", + training" if t else ""), close, epoch)
                report[key] = {"peer": peer, "workers": w, "train": t, "convert_s": conv.seconds,
                               "bytes": conv.bytes, "qualities": quals}
    return extra, drop, report


def describe(report: dict) -> list[str]:
    """One line per peer rival: whether each epoch yielded every sample exactly once, and how shuffled."""
    lines = []
    for key, r in report.items():
        q = r["qualities"]
        if not q:
            continue
        once = all(x["exactly_once"] for x in q)
        jump, near = np.mean([x["mean_jump"] for x in q]), np.mean([x["near"] for x in q])
        kind = "full shuffle" if jump > 0.9 else "NOT a full shuffle (neighbours stay near: chunk-local)"
        lines.append(f"  {key}: {len(q)} epochs, each sample exactly once: {'yes' if once else 'NO'}; mean jump "
                     f"{jump:.3f} of a full shuffle's, {near:.0%} of neighbours within 1% of N (full shuffle: 2%): {kind}")
    return lines
