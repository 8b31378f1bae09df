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
    killer sends). In the main process it raises ``RuntimeError`` instead: a test must
    never end the pytest process itself.
    """

    def __init__(self, n: int, bad: int, how: int | str) -> None:
        self.n, self.bad, self.how = n, bad, how

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if i == self.bad:
            if get_worker_info() is None:
                raise RuntimeError("DyingDataset refuses to end the main process; use num_workers > 0")
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
