"""What the lazy sources share: index checks, ``.npy`` header validation, windows, errors.

Nothing here reads data; it only checks that data can be read and says where it is.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from .._checks import check_index as _check_index
from .._checks import check_positive_int  # noqa: F401 - re-exported for the sources

__all__ = ["SourceDataset", "SourceError", "NpyHeader", "check_index", "check_positive_int", "existing_file", "read_npy_header",
           "apply_transform", "batch_form", "sample_generator", "natural_key", "window_count"]


class SourceError(ValueError):
    """A data file is malformed: wrong shape, dtype, size or contents. The message names the file."""


def existing_file(path: str | os.PathLike, what: str = "file") -> Path:
    """``path`` as a Path; FileNotFoundError / IsADirectoryError naming it if it is not a readable file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"{what} {str(p)!r} is a directory, expected a file")
    return p


def check_index(owner: str, idx: Any, n: int) -> int:
    """``idx`` as an int in ``[0, n)`` (:func:`batchfeed._checks.check_index`, named for ``owner``)."""
    return _check_index(idx, n, owner)


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` file's header says: shape, dtype, element order and where the data starts."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


def read_npy_header(path: str | os.PathLike, what: str = "file") -> NpyHeader:
    """Read and check a ``.npy`` header without reading its data.

    Raises:
        FileNotFoundError: no such file.
        SourceError: not a ``.npy`` file, an object dtype (cannot be memory-mapped), or a
            file shorter (truncated) or longer than its header says, naming the byte counts.
    """
    p = existing_file(path, what)
    size = p.stat().st_size
    with open(p, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # pragma: no cover - numpy's read_magic accepts only these
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, EOFError, OSError, SyntaxError) as exc:
            raise SourceError(f"{what} {str(p)!r} is not a readable .npy file: {exc}") from exc
        offset = f.tell()
    if dtype.hasobject:
        raise SourceError(f"{what} {str(p)!r} holds dtype {dtype} (Python objects), which cannot be read lazily")
    header = NpyHeader(p, tuple(int(s) for s in shape), dtype, bool(fortran), offset)
    expected = offset + header.nbytes
    if size < expected:
        raise SourceError(
            f"{what} {str(p)!r} is truncated: its header says shape {header.shape} {dtype} "
            f"({expected} bytes with the header), but the file has {size} bytes"
        )
    if size > expected:
        raise SourceError(f"{what} {str(p)!r} has {size - expected} bytes after the data its header describes")
    return header


def window_count(length: int, window: int, stride: int) -> int:
    """How many windows of ``window`` steps, ``stride`` apart, fit in ``length`` steps: ``(T - L) // S + 1``."""
    return 0 if length < window else (length - window) // stride + 1


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator for one sample's random transforms, a pure function of (seed, epoch, index).

    The same sample gets the same augmentation in a given epoch whatever the order, the
    batch it lands in or the worker that loads it; another epoch or seed gives another one.
    """
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & ((1 << 63) - 1))


def apply_transform(transform: Callable | None, x: torch.Tensor, gen: Callable[[], torch.Generator]) -> torch.Tensor:
    """``transform(x)``, passing a generator to transforms that take one (batchfeed's do)."""
    if transform is None:
        return x
    if getattr(transform, "takes_generator", False):
        return transform(x, generator=gen())
    return transform(x)


def batch_form(transform: Callable | None, batch: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function that transforms the ``(B, ...)`` ``batch`` exactly as ``transform`` transforms
    each of its samples (the results stacked), or None if ``transform`` has no such form.

    No transform: the identity. A transform declaring ``batchable = True`` and an ``on_batch``
    method (:class:`batchfeed.transforms.Normalize`, a :class:`~batchfeed.transforms.Compose`
    of such): its ``on_batch``, for samples of at least one dimension. Random transforms draw
    per sample and have none.
    """
    if transform is None:
        return lambda b: b
    if getattr(transform, "batchable", False) and batch.dim() >= 2:
        return transform.on_batch
    return None


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame2`` before ``frame10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


class SourceDataset(torch.utils.data.Dataset):
    """Base of the lazy sources: per-sample transforms, their seed, and the epoch.

    ``transform`` is applied to each sample's features and ``target_transform`` to its
    label, inside ``__getitem__``. A transform with ``takes_generator = True`` (every
    random transform in :mod:`batchfeed.transforms`) is called with ``generator=`` a CPU
    generator that is a pure function of ``(seed, epoch, index)``, so augmentation is
    reproducible by seed and independent of the order, batching and worker processes;
    call :meth:`set_epoch` to get fresh augmentations each epoch.
    Subclasses implement ``__len__`` and ``_read(i) -> (x, y)``, and name in
    ``_per_process`` the attributes holding open files or maps: they are not pickled, so
    each DataLoader worker process opens its own.
    """

    _per_process: tuple[str, ...] = ()

    def __init__(self, transform: Callable | None = None, target_transform: Callable | None = None, seed: int = 0) -> None:
        for name, t in (("transform", transform), ("target_transform", target_transform)):
            if t is not None and not callable(t):
                raise TypeError(f"{name} must be callable or None, got {type(t).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
        self.transform = transform
        self.target_transform = target_transform
        self.seed = int(seed)
        self.epoch = 0

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in self._per_process:
            state[name] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s augmentations from now on (as DistributedSampler.set_epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = int(epoch)

    def _read(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, i: int, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.transform is None and self.target_transform is None:
            return x, y
        cache: list[torch.Generator] = []

        def gen() -> torch.Generator:  # one generator per sample, shared by x's and y's transforms
            if not cache:
                cache.append(sample_generator(self.seed, self.epoch, i))
            return cache[0]

        return apply_transform(self.transform, x, gen), apply_transform(self.target_transform, y, gen)

    def _finish_batch(self, rows: Any, xb: torch.Tensor, yb: torch.Tensor) -> list[torch.Tensor]:
        """A batch read at once, transformed as :meth:`_finish` transforms each of its samples:
        ``[xb, yb]`` equal to ``default_collate([self._finish(i, x, y) ...])``.

        On the whole batch when both transforms have an exact batch form (:func:`batch_form`);
        otherwise sample by sample, each with its own seeded generator, then collated.
        """
        if self.transform is None and self.target_transform is None:
            return [xb, yb]
        fx, fy = batch_form(self.transform, xb), batch_form(self.target_transform, yb)
        if fx is not None and fy is not None:
            return [fx(xb), fy(yb)]
        rows = [int(i) for i in rows]
        return default_collate([self._finish(i, x, y) for i, x, y in zip(rows, xb.unbind(0), yb.unbind(0))])

    def __getitem__(self, idx: Any) -> tuple[torch.Tensor, torch.Tensor]:
        i = check_index(type(self).__name__, idx, len(self))
        x, y = self._read(i)
        return self._finish(i, x, y)


class WindowedSource(SourceDataset):
    """A source cut into windows ``stride`` steps apart; ``self.labels`` is a :class:`WindowLabels`."""

    labels: WindowLabels
    stride: int

    def __len__(self) -> int:
        return self.labels.count

    def start_of(self, i: int) -> int:
        """The first step (time step, frame) of window ``i``."""
        return i * self.stride


class WindowLabels:
    """One label per window of ``window`` steps, ``stride`` apart, over ``length`` steps.

    ``labels`` is a ``.npy`` path (memory-mapped, per process) or None:
    - ``length`` labels (one per step): a window's label is the label of its step named by
      ``label_at`` ("last", default; "first"; "center" = step ``start + window // 2``);
    - ``count`` labels (one per window): taken as they are;
    - None: a window's label is its index (unlabelled data).
    The two lengths coincide only when window == stride == 1, where both readings agree.
    """

    def __init__(self, labels: str | os.PathLike | None, *, length: int, window: int, stride: int,
                 label_at: str, owner: str) -> None:
        if label_at not in ("last", "first", "center"):
            raise ValueError(f"label_at must be 'last', 'first' or 'center', got {label_at!r}")
        self.window, self.stride, self.label_at = window, stride, label_at
        self.count = window_count(length, window, stride)
        self.path: Path | None = None
        self.per_step = False
        self._mm: np.ndarray | None = None
        if labels is None:
            return
        h = read_npy_header(labels, "labels file")
        if len(h.shape) != 1 or h.dtype.kind not in "biuf":
            raise SourceError(f"labels file {str(h.path)!r} has shape {h.shape} {h.dtype}; expected a 1-d numeric array")
        if h.shape[0] == length:
            self.per_step = True
        elif h.shape[0] != self.count:
            raise ValueError(
                f"labels file {str(h.path)!r} has {h.shape[0]} labels; {owner} needs {length} (one per step) "
                f"or {self.count} (one per window of {window}, stride {stride})"
            )
        self.path = h.path

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_mm"] = None
        return state

    def step_of(self, i: int) -> int:
        start = i * self.stride
        return {"last": start + self.window - 1, "first": start, "center": start + self.window // 2}[self.label_at]

    def __call__(self, i: int) -> torch.Tensor:
        if self.path is None:
            return torch.tensor(i, dtype=torch.int64)
        if self._mm is None:
            self._mm = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(np.array(self._mm[self.step_of(i) if self.per_step else i]))
