"""Datasets for the worker, resume and failure specs (spec/conformance/test_parallel.py, spec/conformance/test_resume.py).

They live in a module of their own, not in a test module, so that DataLoader workers can
import them under any start method (fork, forkserver, spawn).
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info


class AugmentedDataset(Dataset):
    """Sample ``i`` is ``(draws, i, worker)``: one draw each from torch's, numpy's and
    Python's global RNGs, as a random augmentation would make them, and the worker id
    (-1 in the main process).

    ``draws`` is a float64 tensor ``[torch.rand(), np.random.random(), random.random()]``.
    """

    RNGS = ("torch", "numpy", "random")

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        info = get_worker_info()
        draws = torch.tensor([float(torch.rand(())), float(np.random.random()), random.random()], dtype=torch.float64)
        return draws, i, -1 if info is None else info.id


class WorkerSeedProbe(Dataset):
    """Sample ``i`` is ``(torch.initial_seed(), np.random.random(), random.random())`` as seen
    in the process that loads it: enough to check what a ``worker_init_fn`` seeded."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[int, float, float]:
        return torch.initial_seed(), float(np.random.random()), random.random()


class FailingDataset(Dataset):
    """``n`` samples ``i``; loading sample ``bad`` raises ``error(message)``.

    ``message`` may contain ``{i}``; the default names nothing, as many real decoders'
    errors do ("cannot identify image file").
    """

    def __init__(self, n: int, bad: int, error: type[Exception] = ValueError, message: str = "cannot decode sample") -> None:
        self.n, self.bad, self.error, self.message = n, bad, error, message

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            raise self.error(self.message.format(i=i))
        return i


class DyingDataset(Dataset):
    """``n`` samples ``i``; loading sample ``bad`` in a worker process ends that process.

    ``how`` is an exit code (``os._exit(code)``) or ``"SIGKILL"`` (what the kernel's OOM
    killer sends). In the process that built the dataset (the test's) it raises
    ``RuntimeError`` instead: a test must never end the pytest process itself.

    "Which process am I in" is the process id recorded at construction, not
    ``get_worker_info() is None``: a loader's worker processes need not set worker info,
    and the fixture must not decide the test's outcome for them (a loader whose workers
    leave it unset would otherwise raise here instead of dying, hiding how it handles a
    dead worker). Any other process, worker of any loader, ends.
    """

    def __init__(self, n: int, bad: int, how: int | str) -> None:
        self.n, self.bad, self.how = n, bad, how
        self.owner_pid = os.getpid()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            if os.getpid() == self.owner_pid:
                raise RuntimeError("DyingDataset refuses to end the process that built it; use num_workers > 0")
            # Let this worker's queue feeder thread finish sending its previous batch first.
            # A process killed in the middle of that write leaves a torn message in the result
            # pipe that all workers share, and the main process then fails with EOFError (or an
            # unpickling error) before torch's SIGCHLD check can say which worker died: a race
            # in torch, seen once under torch 2.14.1 (docs/parallel.md). The spec is about a
            # worker that dies while loading a sample, so it waits that race out.
            time.sleep(0.5)
            if self.how == "SIGKILL":
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(int(self.how))
        return i


def write_npy_samples(root: Path, n: int, features: int = 3) -> list[Path]:
    """Write sample ``i`` as ``root/{i:04d}.npy``: a float32 vector ``i * F + arange(F)``, label ``i``."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = root / f"{i:04d}.npy"
        np.save(p, np.arange(i * features, (i + 1) * features, dtype=np.float32))
        paths.append(p)
    return paths


def corrupt(path: Path) -> bytes:
    """Truncate ``path`` to half its bytes (a partly written file); returns the original bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


class NpyFilesDataset(Dataset):
    """A lazy dataset: sample ``i`` is read from ``root/{i:04d}.npy`` when it is asked for.

    Returns ``(x, i)``; a file numpy cannot read raises ``ValueError`` naming the sample
    and its file.
    """

    def __init__(self, root: Path) -> None:
        self.paths = sorted(Path(root).glob("*.npy"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path = self.paths[i]
        try:
            x = np.load(path)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"sample {i} ({path.name}): cannot decode: {exc}") from exc
        return torch.from_numpy(x), i


def write_png_samples(root: Path, n: int, side: int = 4) -> list[Path]:
    """Write sample ``i`` (< 256) as ``root/all/{i:04d}.png``: a ``side x side`` grey image of value ``i``.

    Laid out for :class:`batchfeed.sources.ImageFolderDataset` (one class folder); the
    sample's index is ``round(x.mean() * 255)`` of its decoded image.
    """
    from PIL import Image

    if n > 256:
        raise ValueError(f"write_png_samples encodes the index in 8 bits: n must be <= 256, got {n}")
    folder = root / "all"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{i:04d}.png"
        Image.new("RGB", (side, side), (i, i, i)).save(p)
        paths.append(p)
    return paths


def write_noise_pngs(root: Path, n: int, side: int = 128, seed: int = 0) -> None:
    """``n`` RGB noise images ``side x side`` in two class folders (``root/c0``, ``root/c1``).

    Noise does not compress, so each decode costs real CPU work (about 1 ms at 128 x 128).
    """
    from PIL import Image

    g = torch.Generator().manual_seed(seed)
    for c in ("c0", "c1"):
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pixels = torch.randint(0, 256, (side, side, 3), generator=g, dtype=torch.uint8).numpy()
        Image.fromarray(pixels, "RGB").save(root / f"c{i % 2}" / f"{i:05d}.png")


class SamplesOf(Dataset):
    """``n`` samples ``make(i)``: a map-style dataset of whatever ``make`` builds (``make`` a
    module-level function, so that worker processes can import it under any start method)."""

    def __init__(self, n: int, make) -> None:
        self.n, self.make = n, make

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.make(i)


#: What a worker's ``worker_init_fn`` was called with (set in the worker; None in the main process).
INIT_WORKER_ID: list[int] = []


def record_worker_id(worker_id: int) -> None:
    """A ``worker_init_fn`` that remembers the id it was called with, in the worker process."""
    INIT_WORKER_ID.append(worker_id)


class WorkerInfoProbe(Dataset):
    """Sample ``i`` is a tensor ``[i, pid, info.id, info.num_workers, info.seed, torch.initial_seed(),
    is info.dataset a copy of self (1/0), worker_init_fn calls so far, last worker_init_fn id]``,
    as seen in the process that loads it (-1 for what is unset: no worker info, no init call).

    ``served`` counts the samples this copy of the dataset has loaded (it lives on in a
    persistent worker), returned as the last column.
    """

    COLUMNS = ("i", "pid", "id", "num_workers", "seed", "initial_seed", "is_copy", "init_calls", "init_id", "served")

    def __init__(self, n: int) -> None:
        self.n, self.served, self.owner_pid = n, 0, os.getpid()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        info = get_worker_info()
        self.served += 1
        fields = [-1, -1, -1, -1] if info is None else [info.id, info.num_workers, info.seed,
                                                         int(info.dataset is self and os.getpid() != self.owner_pid)]
        init = INIT_WORKER_ID[-1] if INIT_WORKER_ID else -1
        return torch.tensor([i, os.getpid(), *fields[:3], torch.initial_seed(), fields[3], len(INIT_WORKER_ID), init,
                             self.served], dtype=torch.int64)


class SlowAt(Dataset):
    """``n`` samples ``i``; loading sample ``slow`` first sleeps ``seconds`` (a stalled read)."""

    def __init__(self, n: int, slow: int, seconds: float) -> None:
        self.n, self.slow, self.seconds = n, slow, seconds

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.slow:
            time.sleep(self.seconds)
        return i


class RangeStream(torch.utils.data.IterableDataset):
    """An iterable-style dataset of ``n`` samples ``i`` (int64 tensors), in order.

    With ``shard=True`` each worker yields only the samples ``i`` with ``i % num_workers ==
    id`` (the sharding torch's IterableDataset docs show); without, every worker yields all.
    ``sized``: whether it has ``__len__`` (``n``).
    """

    def __init__(self, n: int, shard: bool = False) -> None:
        self.n, self.shard = n, shard

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        info = get_worker_info()
        if self.shard and info is not None:
            return (torch.tensor(i) for i in range(info.id, self.n, info.num_workers))
        return (torch.tensor(i) for i in range(self.n))
