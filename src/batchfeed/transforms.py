"""Per-sample and per-batch transforms: normalization and seeded augmentation.

Per-sample transforms (:class:`Normalize`, :class:`RandomFlip`, :class:`RandomCrop`,
:class:`GaussianNoise`, chained with :class:`Compose`) run inside a dataset's
``__getitem__``: pass them as ``transform=`` to a source in :mod:`batchfeed.sources`, or
wrap any map-style dataset in :class:`Transformed`. Random ones draw only from the
``generator`` they are called with; a dataset passes one that is a pure function of
``(seed, epoch, index)``, so augmentation is reproducible by seed whatever the order,
batching or number of worker processes. Called without one, a random transform uses its
own generator seeded by ``seed``. The global RNGs are never touched.

Batch transforms (:class:`BatchNormalize`, :class:`BatchRandomFlip`,
:class:`BatchGaussianNoise`) take a whole ``(B, ...)`` batch on whatever device it is on
and draw from a generator on that device; :class:`OnDevice` moves each batch of a loader to
a device and applies one there.

No transform modifies its input: each returns a new tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ._checks import check_index
from .sources import apply_transform, sample_generator

__all__ = [
    "BatchGaussianNoise",
    "BatchNormalize",
    "BatchRandomFlip",
    "Compose",
    "GaussianNoise",
    "Normalize",
    "OnDevice",
    "RandomCrop",
    "RandomFlip",
    "Transformed",
]


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__} {seed!r}")
    return seed


def _check_std(std: Any) -> float:
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0:
        raise ValueError(f"std must be a non-negative finite number, got {std!r}")
    return float(std)


def _check_p(p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


class _Random:
    """Mixin for random transforms: the generator to draw from for one call."""

    takes_generator = True
    seed: int

    def _gen(self, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        g = self.__dict__.get("_own")
        if g is None:
            g = self._own = torch.Generator().manual_seed(self.seed)
        return g

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_own", None)  # a copy restarts its own stream from `seed`
        return state


# --- per-sample -----------------------------------------------------------------------

class Compose:
    """Apply ``transforms`` in order; random ones share the generator of the call."""

    takes_generator = True

    def __init__(self, transforms: Sequence[Callable]) -> None:
        transforms = list(transforms)
        for k, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{k}] is not callable: {t!r}")
        self.transforms = transforms

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, generator=generator) if getattr(t, "takes_generator", False) else t(x)
        return x

    @property
    def batchable(self) -> bool:
        """Whether :meth:`on_batch` exists: every transform in it has an exact batch form."""
        return all(getattr(t, "batchable", False) for t in self.transforms)

    def on_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """The transforms on a ``(B, ...)`` batch, equal to applying them to each sample (needs :attr:`batchable`)."""
        for t in self.transforms:
            xb = t.on_batch(xb)
        return xb

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class Normalize:
    """``(x - mean) / std`` per channel: the statistics broadcast along ``channel_dim``.

    ``mean`` and ``std`` are numbers or 1-d sequences/tensors with one value per channel
    (the size of the sample's ``channel_dim``; for a ``(C, H, W)`` image ``channel_dim=0``,
    for a ``(F,)`` feature vector also 0, one statistic per feature). Computed in float64
    and returned in the input's floating dtype (float32 for integer input).
    :meth:`fit` computes them from a dataset in one streaming pass.

    Raises ValueError for a non-positive or non-finite std, or a mean/std length mismatch.
    """

    takes_generator = False
    #: :meth:`on_batch` gives exactly the per-sample results (a batch reader may call it instead).
    batchable = True

    def __init__(self, mean: Any, std: Any, *, channel_dim: int = 0) -> None:
        m = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        s = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        if m.numel() != s.numel() and 1 not in (m.numel(), s.numel()):
            raise ValueError(f"mean has {m.numel()} values and std {s.numel()}; they must match (or one be a scalar)")
        bad = [k for k, v in enumerate(s.tolist()) if not (math.isfinite(v) and v > 0)]
        if bad:
            raise ValueError(f"std must be positive and finite, got std[{bad[0]}]={s[bad[0]].item()!r}")
        if not torch.isfinite(m).all():
            raise ValueError(f"mean must be finite, got {m.tolist()}")
        self.mean, self.std, self.channel_dim = m, s, int(channel_dim)

    @classmethod
    def fit(cls, dataset: Dataset, *, channel_dim: int = 0) -> Normalize:
        """The per-channel mean and (population) std of ``dataset``'s features, in one pass.

        Reads ``dataset[i][0]`` for every ``i`` (one sample in memory at a time) and merges
        per-sample float64 statistics with Chan's parallel-variance update, so the result is
        accurate for any size. Every sample must have the same number of channels.
        """
        n = len(dataset)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("Normalize.fit needs a non-empty dataset")
        count = mean = m2 = None
        for i in range(n):
            x = torch.as_tensor(dataset[i][0]).to(torch.float64)
            if x.dim() == 0:
                x = x.reshape(1)
            c = channel_dim % x.dim()
            flat = x.movedim(c, 0).reshape(x.shape[c], -1)
            k = flat.shape[1]
            mu = flat.mean(dim=1)
            sq = ((flat - mu[:, None]) ** 2).sum(dim=1)
            if count is None:
                count, mean, m2 = k, mu, sq
                continue
            if mu.numel() != mean.numel():
                raise ValueError(f"sample {i} has {mu.numel()} channels along dim {channel_dim}, sample 0 has {mean.numel()}")
            total = count + k
            delta = mu - mean
            mean = mean + delta * (k / total)
            m2 = m2 + sq + delta**2 * (count * k / total)
            count = total
        std = (m2 / count).sqrt()
        return cls(mean, std, channel_dim=channel_dim)

    def _shape(self, x: torch.Tensor, batch: bool) -> list[int]:
        shape = [1] * x.dim()
        if self.mean.numel() > 1 or self.std.numel() > 1:
            c = self.channel_dim % (x.dim() - batch) + batch
            shape[c] = -1
        return shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        if x.dim() == 0:
            x = x.reshape(1)
        shape = self._shape(x, batch=False)
        out = (x.to(torch.float64) - self.mean.reshape(shape)) / self.std.reshape(shape)
        return out.to(_float(x).dtype)

    def on_batch(self, xb: torch.Tensor) -> torch.Tensor:
        """Each sample of a ``(B, ...)`` batch normalized as :meth:`__call__` normalizes it (float64,
        rounded once), bit for bit; samples need at least one dimension."""
        if xb.dim() < 2:
            raise ValueError(f"Normalize.on_batch needs a (B, ...) batch of samples with at least one dim, "
                             f"got shape {tuple(xb.shape)}")
        shape = self._shape(xb, batch=True)
        out = (xb.to(torch.float64) - self.mean.reshape(shape)) / self.std.reshape(shape)
        return out.to(_float(xb).dtype)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()}, channel_dim={self.channel_dim})"


class RandomFlip(_Random):
    """Reverse ``x`` along ``dim`` with probability ``p`` (default: the last dim, p = 0.5)."""

    def __init__(self, dim: int = -1, p: float = 0.5, *, seed: int = 0) -> None:
        self.dim, self.p, self.seed = int(dim), _check_p(p), _check_seed(seed)

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        flip = bool(torch.rand((), generator=self._gen(generator)) < self.p)
        return x.flip(self.dim) if flip else x.clone()

    def __repr__(self) -> str:
        return f"RandomFlip(dim={self.dim}, p={self.p}, seed={self.seed})"


class RandomCrop(_Random):
    """A random ``size`` window of the last ``len(size)`` dims, after zero ``padding`` on each side.

    ``RandomCrop((24, 24), padding=4)`` on a ``(C, 28, 28)`` image pads to 36 x 36 and takes a
    uniformly placed 24 x 24 window. Raises ValueError if ``size`` exceeds the padded input.
    """

    def __init__(self, size: int | Sequence[int], padding: int = 0, *, seed: int = 0) -> None:
        size = (size,) if isinstance(size, int) else tuple(size)
        if not size or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"size must be positive integers, got {size!r}")
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.size, self.padding, self.seed = size, padding, _check_seed(seed)

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        k = len(self.size)
        if x.dim() < k:
            raise ValueError(f"RandomCrop{self.size} needs at least {k} dims, got shape {tuple(x.shape)}")
        if self.padding:
            x = torch.nn.functional.pad(x, [self.padding] * (2 * k))
        g = self._gen(generator)
        out = x
        for d, s in zip(range(x.dim() - k, x.dim()), self.size):
            room = x.shape[d] - s
            if room < 0:
                raise ValueError(f"RandomCrop size {self.size} exceeds the padded input shape {tuple(x.shape)}")
            start = int(torch.randint(room + 1, (), generator=g))
            out = out.narrow(d, start, s)
        return out.clone()

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, padding={self.padding}, seed={self.seed})"


class GaussianNoise(_Random):
    """``x + std * N(0, 1)`` noise of x's shape (float32 for integer input)."""

    def __init__(self, std: float, *, seed: int = 0) -> None:
        self.std, self.seed = _check_std(std), _check_seed(seed)

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _float(x)
        noise = torch.randn(x.shape, generator=self._gen(generator), dtype=x.dtype)
        return x + self.std * noise

    def __repr__(self) -> str:
        return f"GaussianNoise(std={self.std}, seed={self.seed})"


class Transformed(Dataset):
    """Any map-style dataset of ``(x, y)`` pairs with per-sample transforms applied.

    Random transforms get a generator that is a pure function of ``(seed, epoch, index)``
    (see :meth:`set_epoch`), as in the lazy sources. The wrapped dataset is not modified.
    """

    def __init__(self, dataset: Dataset, transform: Callable | None = None, target_transform: Callable | None = None,
                 *, seed: int = 0) -> None:
        self.dataset, self.transform, self.target_transform = dataset, transform, target_transform
        self.seed, self.epoch = _check_seed(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s augmentations from now on."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, idx: Any) -> tuple[Any, Any]:
        i = check_index(idx, len(self), "Transformed")
        x, y = self.dataset[i]
        cache: list[torch.Generator] = []

        def gen() -> torch.Generator:
            if not cache:
                cache.append(sample_generator(self.seed, self.epoch, i))
            return cache[0]

        return apply_transform(self.transform, x, gen), apply_transform(self.target_transform, y, gen)


# --- per-batch, on the batch's device -----------------------------------------------

class _BatchRandom:
    takes_generator = True
    seed: int

    def _gen(self, device: torch.device, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        gens = self.__dict__.setdefault("_gens", {})
        key = str(device)
        if key not in gens:
            gens[key] = torch.Generator(device=device).manual_seed(self.seed)
        return gens[key]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_gens", None)
        return state


class BatchNormalize(Normalize):
    """:class:`Normalize` for a ``(B, ...)`` batch, computed on the batch's device in its dtype.

    ``channel_dim`` counts within a sample (0 = the dim after the batch dim).
    """

    batchable = False  # its __call__ already takes a batch, in the batch's dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = _float(x)
        shape = self._shape(x, batch=True)
        mean = self.mean.to(device=x.device, dtype=x.dtype).reshape(shape)
        std = self.std.to(device=x.device, dtype=x.dtype).reshape(shape)
        return (x - mean) / std


class BatchRandomFlip(_BatchRandom):
    """Reverse each sample of a ``(B, ...)`` batch along ``dim`` (within a sample) with probability ``p``, independently."""

    def __init__(self, dim: int = -1, p: float = 0.5, *, seed: int = 0) -> None:
        self.dim, self.p, self.seed = int(dim), _check_p(p), _check_seed(seed)

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() < 2:
            raise ValueError(f"BatchRandomFlip needs a (B, ...) batch with sample dims, got shape {tuple(x.shape)}")
        d = self.dim % (x.dim() - 1) + 1
        mask = torch.rand(x.shape[0], generator=self._gen(x.device, generator), device=x.device) < self.p
        return torch.where(mask.reshape(-1, *([1] * (x.dim() - 1))), x.flip(d), x)


class BatchGaussianNoise(_BatchRandom):
    """``x + std * N(0, 1)`` for a whole batch, drawn on the batch's device."""

    def __init__(self, std: float, *, seed: int = 0) -> None:
        self.std, self.seed = _check_std(std), _check_seed(seed)

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        x = _float(x)
        noise = torch.randn(x.shape, generator=self._gen(x.device, generator), device=x.device, dtype=x.dtype)
        return x + self.std * noise


class OnDevice:
    """Each ``(x, y)`` batch of ``loader`` moved to ``device``, then ``transform(x)`` applied there.

    Re-iterable (each ``iter`` starts a new pass over ``loader``) and sized when ``loader`` is.
    """

    def __init__(self, loader: Iterable, device: str | torch.device, transform: Callable | None = None,
                 *, non_blocking: bool = True) -> None:
        self.loader, self.device, self.transform = loader, torch.device(device), transform
        self.non_blocking = non_blocking

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in self.loader:
            xb = xb.to(self.device, non_blocking=self.non_blocking)
            yb = yb.to(self.device, non_blocking=self.non_blocking)
            yield (self.transform(xb) if self.transform is not None else xb), yb
