"""``TensorLoader``: torch's DataLoader for data already in memory, without the per-sample work.

For an in-memory tensor dataset, torch's DataLoader calls ``__getitem__`` once per sample
and collates a Python list of samples into each batch. ``TensorLoader`` draws one
permutation per epoch and cuts every batch out of a permuted gather of the data:
``index_select`` over a chunk of the permutation (8 MiB of rows), then ``split`` into
batch views. No per-sample Python, no collate.

It is DataLoader-compatible: the same constructor keywords (plus ``device`` and
``chunk_bytes``), the same ``len``, the same batches. With a CPU generator it yields exactly
the batches ``DataLoader(dataset, shuffle=True, generator=g)`` yields, epoch after epoch,
and leaves ``g`` (or, with ``generator=None``, torch's global RNG) in the same state:

* ``DataLoader``'s iterator draws a "base seed" from the generator when ``iter(loader)`` is
  called (``_BaseDataLoaderIter.__init__``), then ``RandomSampler`` draws
  ``torch.randperm(n, generator=g)`` at the first ``next``; once the sampler is exhausted it
  draws a second ``randperm(n)`` whose result it throws away (its ``num_samples % n`` tail).
  ``TensorLoader`` makes the same draws at the same moments; the discarded tail is
  replayed with ``n - 1`` 32-bit draws, which advance the generator exactly as
  ``randperm`` does (checked at run time; it falls back to ``randperm`` otherwise).
* With ``generator=None`` both draw from torch's global RNG, as DataLoader does.

Resumable: ``state_dict()`` / ``load_state_dict(state)`` follow torchdata's
``StatefulDataLoader``: a fresh loader that loads the state yields exactly the batches
that were left of the interrupted epoch, then the same later epochs as an uninterrupted
run. The state is plain JSON (generator states as lists of ints).
"""

from __future__ import annotations

import functools
import itertools
import operator
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import (
    Subset,
    BatchSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
    default_convert,
)

from ._checks import check_positive_int
from .datasets import PairDataset

__all__ = ["TensorLoader"]

STATE_FORMAT = "batchfeed.TensorLoader/1"
_USE_DATALOADER = "use torch.utils.data.DataLoader"
#: Bytes gathered per index_select. CPU: 8 MiB, measured (docs/benchmarks.md): larger chunks
#: stop being recycled by glibc's allocator and are page-faulted in afresh every epoch
#: (16 MiB: every page, every epoch); smaller ones mean more parallel regions per epoch, and
#: each can cost a scheduler tick when other processes share the cores. Other devices:
#: few kernel launches per epoch; the caching allocator recycles the memory.
_CHUNK_BYTES = {"cpu": 8 << 20, "other": 64 << 20}
#: torch's CPU randperm uses one 32-bit draw per element below this size (random64 above).
_RANDPERM_32BIT_LIMIT = (2**32 - 1) // 20
_FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


# --- which datasets can be served ---------------------------------------------------------

def _same_method(cls: type, base: type, name: str) -> bool:
    return getattr(cls, name, None) is getattr(base, name, None)


def _dataset_tensors(dataset: Any) -> tuple[torch.Tensor, ...]:
    """The tensors behind ``dataset``, if TensorLoader can serve it without ``__getitem__``."""
    if isinstance(dataset, tuple) and not hasattr(dataset, "_fields"):
        if not dataset or not all(isinstance(t, torch.Tensor) for t in dataset):
            raise TypeError(
                "TensorLoader cannot serve this dataset: a tuple dataset must hold one or more tensors, got "
                f"({', '.join(type(t).__name__ for t in dataset)}); {_USE_DATALOADER} for other datasets"
            )
        if any(t.dim() == 0 for t in dataset):
            raise ValueError("TensorLoader: every tensor of a tuple dataset needs a sample dimension, got a 0-d tensor")
        sizes = [t.shape[0] for t in dataset]
        if len(set(sizes)) != 1:
            raise ValueError(f"TensorLoader: the tensors of a tuple dataset must have the same length, got {sizes}")
        return tuple(dataset)
    cls = type(dataset)
    methods = ("__getitem__", "__getitems__", "__len__")
    if isinstance(dataset, PairDataset) and all(_same_method(cls, PairDataset, m) for m in methods):
        return (dataset.X, dataset.y)
    if isinstance(dataset, TensorDataset) and all(_same_method(cls, TensorDataset, m) for m in methods):
        return tuple(dataset.tensors)
    why = ("it overrides __getitem__, __getitems__ or __len__, which TensorLoader would bypass"
           if isinstance(dataset, (PairDataset, TensorDataset, Subset)) else "it is not tensor-backed")
    raise TypeError(
        f"TensorLoader cannot serve dataset of type {cls.__name__} ({why}): it serves PairDataset, "
        f"TensorDataset, tuples of tensors and Subsets of them (random_split); {_USE_DATALOADER} for other datasets"
    )


def _served(dataset: Any) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
    """``(tensors, rows)``: the tensors behind ``dataset`` and, for a ``Subset`` (``random_split``'s
    parts, nested or not), the rows of them it holds, in its order; ``rows`` is None otherwise.

    A subset is an index map: the loader gathers ``rows[i]`` where DataLoader would call
    ``subset[i] = base[rows[i]]``, so the batches are the same, and nothing is copied.
    """
    cls = type(dataset)
    if isinstance(dataset, Subset) and all(_same_method(cls, Subset, m) for m in ("__getitem__", "__getitems__", "__len__")):
        tensors, inner = _served(dataset.dataset)
        n = int(tensors[0].shape[0]) if inner is None else int(inner.numel())
        try:
            rows = torch.as_tensor(list(dataset.indices) if not isinstance(dataset.indices, torch.Tensor)
                                   else dataset.indices.cpu(), dtype=torch.int64).reshape(-1)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"TensorLoader: Subset.indices must be integers, got {dataset.indices!r}") from exc
        if rows.numel() and (int(rows.min()) < -n or int(rows.max()) >= n):
            bad = int(rows.min()) if int(rows.min()) < -n else int(rows.max())
            raise IndexError(f"TensorLoader: Subset index {bad} out of range for its dataset of length {n}")
        rows = torch.where(rows < 0, rows + n, rows)
        return tensors, (rows if inner is None else inner[rows])
    return _dataset_tensors(dataset), None


# --- generators: DataLoader's draws, replayed -----------------------------------------------

def _state_of(g: torch.Generator | None) -> list[int] | None:
    return None if g is None else g.get_state().tolist()


def _restore(g: torch.Generator | None, state: list[int] | None, name: str) -> None:
    if (g is None) != (state is None):
        have = "no generator" if g is None else "a generator"
        raise ValueError(f"state_dict {name}: the saved loader {'had' if state is not None else 'had no'} "
                         f"{name}, this loader has {have}")
    if g is not None:
        g.set_state(torch.tensor(state, dtype=torch.uint8))


def _is_cpu(g: torch.Generator | None) -> bool:
    return g is None or g.device.type == "cpu"


def _skip_draws(g: torch.Generator, count: int) -> None:
    buf = torch.empty(min(count, 1 << 16), dtype=torch.int32)
    while count > 0:
        k = min(count, buf.numel())
        buf[:k].random_(generator=g)
        count -= k


@functools.cache
def _skip_matches_randperm() -> bool:
    """Whether ``n - 1`` int32 ``random_`` draws advance a CPU generator exactly as ``randperm(n)``."""
    for n in (1, 2, 3, 1000, 70_001):
        a, b = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
        torch.randperm(n, generator=a)
        _skip_draws(b, n - 1)
        if not torch.equal(a.get_state(), b.get_state()):
            return False
    return True


def _advance_like_randperm(g: torch.Generator, n: int) -> None:
    """Advance ``g`` as ``torch.randperm(n, generator=g)`` would, without building the permutation."""
    if n < _RANDPERM_32BIT_LIMIT and _skip_matches_randperm():
        _skip_draws(g, n - 1)
    else:
        torch.randperm(n, generator=g)


class _Epoch:
    """One pass: the draws it made (or will make) and how many batches it has handed out."""

    __slots__ = ("base", "current", "current_len", "finished", "perm_drawn", "epoch_seed",
                 "gen_state", "sampler_gen_state", "resumed", "skip", "resume_seed")

    def __init__(self) -> None:
        self.base = 0              # batches handed out before ``current``
        self.current: Iterator | None = None  # iterator over the first tensor's batch views
        self.current_len = 0
        self.finished = False
        self.perm_drawn = False
        self.epoch_seed: int | None = None   # generator=None: seed of this epoch's permutation
        self.gen_state: list[int] | None = None
        self.sampler_gen_state: list[int] | None = None
        self.resumed = False
        self.skip = 0
        self.resume_seed: int | None = None

    @property
    def yielded(self) -> int:
        if self.current is None:
            return self.base
        return self.base + self.current_len - operator.length_hint(self.current)


# --- the loader -------------------------------------------------------------------------------

class TensorLoader:
    """Batches of an in-memory tensor dataset, with DataLoader's keywords and semantics.

    Args:
        dataset: a :class:`~batchfeed.PairDataset`, a :class:`torch.utils.data.TensorDataset`
            (neither subclassed with its own ``__getitem__``/``__getitems__``/``__len__``),
            or a tuple of tensors with a common first dimension (served as
            ``TensorDataset(*tensors)``).
        batch_size, shuffle, sampler, batch_sampler, drop_last, generator, pin_memory,
        timeout, worker_init_fn, prefetch_factor, persistent_workers, pin_memory_device,
        in_order, multiprocessing_context: as :class:`torch.utils.data.DataLoader`, with
        ``num_workers=0`` (the only value it honours) and ``collate_fn=None``.
        device: move the data there once, at construction (e.g. ``"cuda"``); batches are
            gathered on that device, and with ``generator=None`` or a generator on that
            device the permutation is drawn there too. ``None`` leaves the data where it is.
        chunk_bytes: about how many bytes are gathered per ``index_select``; batches are
            views into these chunks. Default 8 MiB on CPU, 64 MiB on other devices.

    Batches are lists of tensors, one per dataset tensor, as DataLoader yields for tuple
    samples. They are fresh memory, never views of the dataset; a batch can be a view into
    a chunk shared with its neighbours, so ``torch.save`` a ``batch.clone()``.

    Raises:
        TypeError: a keyword it cannot honour (``num_workers > 0``, a ``collate_fn``) or a
            dataset it cannot serve; the message says to use torch's DataLoader.
        ValueError: the invalid values and combinations DataLoader rejects.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Any = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Any = None,
        multiprocessing_context: Any = None,
        generator: torch.Generator | None = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        device: str | torch.device | None = None,
        chunk_bytes: int | None = None,
    ) -> None:
        # DataLoader's own checks first, in its order and with its exception types.
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing; "
                             f"got prefetch_factor={prefetch_factor!r} with num_workers=0")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        if multiprocessing_context is not None and num_workers == 0:
            raise ValueError("multiprocessing_context can only be used with multi-process loading "
                             f"(num_workers > 0), but got num_workers={num_workers}")
        # What TensorLoader cannot honour: refuse by name.
        if num_workers > 0:
            raise TypeError(f"TensorLoader gathers batches in the main process and cannot honour "
                            f"num_workers={num_workers}; {_USE_DATALOADER} for worker processes")
        if collate_fn is not None:
            raise TypeError(f"TensorLoader gathers whole batches without collating and cannot honour "
                            f"collate_fn={collate_fn!r}; apply it to each batch, or {_USE_DATALOADER}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        if chunk_bytes is not None:
            check_positive_int("chunk_bytes", chunk_bytes)

        tensors, rows = _served(dataset)
        if isinstance(dataset, tuple):
            dataset = TensorDataset(*dataset)
        if device is not None:
            device = torch.device(device)
            tensors = tuple(t.to(device) for t in tensors)
        if rows is not None:
            rows = rows.to(tensors[0].device)

        # DataLoader's sampler logic, verbatim in effect (its checks and messages come with it).
        shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        custom_batches = batch_sampler is not None
        if custom_batches:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)

        self._initialized = False
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.generator = generator
        self.num_workers = 0
        # DataLoader's own for collate_fn=None: the function whose batches TensorLoader yields.
        self.collate_fn = default_collate if batch_sampler is not None else default_convert
        self.pin_memory = pin_memory
        self.pin_memory_device = pin_memory_device
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn  # never called: there are no workers, as in DataLoader
        self.multiprocessing_context = None
        self.prefetch_factor = None
        self.persistent_workers = False
        self.in_order = in_order
        self.tensors = tensors
        self.device = tensors[0].device
        self._rows = rows  # a Subset's rows of the tensors (None: all of them, in order)
        self._row_list = None if rows is None else rows.tolist()
        self._n = int(tensors[0].shape[0]) if rows is None else int(rows.numel())
        self._custom_batches = custom_batches
        self._order = self._fast_order()
        row_bytes = max(1, sum(t[0].numel() * t.element_size() for t in tensors) if self._n else 1)
        budget = chunk_bytes or _CHUNK_BYTES["cpu" if self.device.type == "cpu" else "other"]
        if batch_size is not None:
            self._chunk_rows = max(batch_size, budget // row_bytes // batch_size * batch_size)
        else:
            self._chunk_rows = 1
        self._epochs = 0
        self._epoch: _Epoch | None = None
        self._pending: dict[str, Any] | None = None
        self._initialized = True

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FROZEN and getattr(self, "_initialized", False):
            raise ValueError(f"{name} attribute should not be set after {type(self).__name__} is initialized")
        super().__setattr__(name, value)

    def _fast_order(self) -> str:
        """``random`` / ``sequential`` when the sampler is torch's own over all n samples, else ``custom``."""
        if self._custom_batches:
            return "custom"
        s = self.sampler
        try:
            size = len(s)
        except TypeError:
            return "custom"
        if type(s) is SequentialSampler and size == self._n:
            return "sequential"
        if (type(s) is RandomSampler and not s.replacement and s.num_samples == self._n
                and len(s.data_source) == self._n):
            return "random"
        return "custom"

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in self.tensors)
        return (f"TensorLoader(n={self._n}, batch_size={self.batch_size}, order={self._order}, "
                f"drop_last={self.drop_last}, device={self.device}, tensors=[{shapes}])")

    # --- iteration ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        """One epoch. Draws DataLoader's base seed now and the permutation at the first ``next``.

        The first ``iter()`` after :meth:`load_state_dict` resumes the saved epoch and makes,
        at once, the draws the saved loader had made by then (the permutation, the
        sampler's discarded tail, a user's sampler fast-forwarded): abandoned before its
        first ``next``, or saved again, it stands where the saved loader stood.
        """
        ep = _Epoch()
        pending, self._pending = self._pending, None
        if pending is not None and pending["in_epoch"]:
            ep.resumed, ep.skip = True, pending["batches_yielded"]
            ep.base = ep.skip  # a state_dict() before the first next() still counts them
            ep.perm_drawn, ep.resume_seed = pending["perm_drawn"], pending["epoch_seed"]
            ep.gen_state, ep.sampler_gen_state = pending["generator_state"], pending["sampler_generator_state"]
            ep.epoch_seed = ep.resume_seed
        else:
            self._epochs += 1
            ep.gen_state = _state_of(self.generator)
            ep.sampler_gen_state = _state_of(self._sampler_generator_if_distinct())
        # DataLoader's base seed: drawn from the loader's generator (the global RNG without
        # one). A resumed epoch drew it before it was interrupted; an explicit generator has
        # been rewound to the epoch's start, so it draws again.
        if not (ep.resumed and self.generator is None) and _is_cpu(self.generator):
            torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        self._epoch = ep
        self._warn_pin_memory()
        # A resumed epoch that had drawn or handed out anything catches up now, not lazily.
        catch_up = ep.resumed and (ep.perm_drawn or ep.skip > 0)
        if self._order == "custom":
            return self._custom_epoch(ep, self._custom_start(ep) if catch_up else None)
        if self.batch_size is None:
            return self._unbatched_epoch(ep, self._unbatched_start(ep) if catch_up else None)
        return self._fast_epoch(ep, self._fast_start(ep) if catch_up else None)

    def _sampler_generator_if_distinct(self) -> torch.Generator | None:
        """The sampler's own generator, when it has one that is not the loader's."""
        g = getattr(self.sampler, "generator", None)
        return None if g is self.generator or not isinstance(g, torch.Generator) else g

    def _pinning(self) -> bool:
        return bool(self.pin_memory) and torch.accelerator.is_available()

    def _warn_pin_memory(self) -> None:
        if self.pin_memory and self.pin_memory_device:
            warnings.warn("pin_memory_device is deprecated, the current accelerator will be used as the device,"
                          f"ignore pin_memory_device='{self.pin_memory_device}'.", stacklevel=3)
        if self.pin_memory and not torch.accelerator.is_available():
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=3)

    def _permutation(self, ep: _Epoch) -> torch.Tensor | None:
        """This epoch's order (None: sequential), drawn as RandomSampler draws it."""
        if self._order == "sequential":
            return None
        g = self.sampler.generator
        n = self._n
        if g is None:
            # RandomSampler without a generator seeds a private one from the global RNG. The
            # permutation is drawn on the data's device (on CPU: DataLoader's own draw).
            if ep.resumed and ep.perm_drawn:
                seed = ep.resume_seed
            else:
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
            ep.epoch_seed = seed
            local = torch.Generator(device=self.device).manual_seed(seed)
            perm = torch.randperm(n, generator=local, device=self.device)
        else:
            perm = torch.randperm(n, generator=g, device=g.device)
        ep.perm_drawn = True
        return perm

    def _draw_tail(self) -> None:
        """RandomSampler's discarded ``randperm(n)`` once it is exhausted (explicit CPU generators only)."""
        if self._order != "random":
            return
        g = self.sampler.generator
        if g is not None and g.device.type == "cpu":
            _advance_like_randperm(g, self._n)

    def _fast_shape(self) -> tuple[int, int, bool]:
        """(rows served, batches, whether RandomSampler's tail is drawn with the last batch)."""
        n, b = self._n, self.batch_size
        stop = n - n % b if self.drop_last else n
        # DataLoader exhausts RandomSampler while building the last batch when that batch is
        # partial; otherwise only when asked for one more batch.
        return stop, -(-stop // b), not self.drop_last and n % b != 0

    def _fast_start(self, ep: _Epoch) -> tuple[torch.Tensor | None, int]:
        """The epoch's permutation and first batch; a resumed epoch also redraws the tail if its last batch was out."""
        perm = self._permutation(ep)
        _, n_batches, tail_early = self._fast_shape()
        k0 = min(ep.skip, n_batches)
        ep.base = k0
        if tail_early and k0 == n_batches and n_batches > 0:
            self._draw_tail()
        return perm, k0

    def _fast_epoch(self, ep: _Epoch, start: tuple[torch.Tensor | None, int] | None) -> Iterator[list[torch.Tensor]]:
        perm, k0 = start if start is not None else self._fast_start(ep)
        perms: dict[torch.device, torch.Tensor] = {} if perm is None else {perm.device: perm}
        b, tensors = self.batch_size, self.tensors
        stop, _, tail_early = self._fast_shape()
        pin = self._pinning() and self.device.type == "cpu"
        for c0 in range(k0 * b, stop, self._chunk_rows):
            c1 = min(c0 + self._chunk_rows, stop)
            chunks = [self._gather_rows(t, perms, perm, c0, c1, pin, self._rows) for t in tensors]
            splits = [c.split(b) for c in chunks]
            # Batches are made lazily (a list per batch kept alive for the whole chunk would
            # wake Python's cyclic GC thousands of times an epoch); the first tensor's split
            # iterator tells how many were handed out.
            if tail_early and c1 == stop:
                last = [s[-1] for s in splits]
                splits = [s[:-1] for s in splits]
                yield from self._hand_out(ep, splits)
                self._draw_tail()
                yield from self._hand_out(ep, [(t,) for t in last])
            else:
                yield from self._hand_out(ep, splits)
        if not tail_early:
            self._draw_tail()
        ep.finished = True

    @staticmethod
    def _hand_out(ep: _Epoch, splits: list[tuple[torch.Tensor, ...]]) -> Iterator[list[torch.Tensor]]:
        """Batches ``[s[0][i], s[1][i], ...]``, counted in ``ep`` as they are taken."""
        if ep.current is not None:
            ep.base += ep.current_len
        first = iter(splits[0])
        ep.current, ep.current_len = first, len(splits[0])
        return map(list, zip(first, *splits[1:]))

    @staticmethod
    def _gather_rows(t: torch.Tensor, perms: dict[torch.device, torch.Tensor], perm: torch.Tensor | None,
                     c0: int, c1: int, pin: bool, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Rows ``perm[c0:c1]`` of ``t`` (rows ``c0:c1`` without a permutation) as fresh memory;
        with a Subset's ``rows``, the tensor rows those positions map to."""
        idx = None
        if perm is not None:
            if t.device not in perms:  # the permutation crosses to a data device once per epoch
                perms[t.device] = perm.to(t.device)
            idx = perms[t.device][c0:c1]
        if rows is not None:
            r = rows if rows.device == t.device else rows.to(t.device)
            idx = r[c0:c1] if idx is None else r[idx]
        if pin and t.device.type == "cpu":
            out = torch.empty((c1 - c0, *t.shape[1:]), dtype=t.dtype, pin_memory=True)
            if idx is None:
                return out.copy_(t[c0:c1])
            return torch.index_select(t, 0, idx, out=out)
        if idx is None:
            return t[c0:c1].clone(memory_format=torch.contiguous_format)
        return t.index_select(0, idx)

    def _unbatched_start(self, ep: _Epoch) -> tuple[Iterable[int], int]:
        perm = self._permutation(ep)
        k0 = min(ep.skip, self._n)
        ep.base = k0
        return (range(self._n) if perm is None else perm.tolist()), k0

    def _unbatched_epoch(self, ep: _Epoch, start: tuple[Iterable[int], int] | None) -> Iterator[list[torch.Tensor]]:
        """batch_size=None: single samples, as DataLoader yields them (views of the dataset)."""
        order, k0 = start if start is not None else self._unbatched_start(ep)
        pin = self._pinning()
        rows = self._row_list
        for i in itertools.islice(order, k0, None):
            sample = [t[i if rows is None else rows[i]] for t in self.tensors]
            if pin:
                sample = [s.pin_memory() if s.device.type == "cpu" else s for s in sample]
            ep.base += 1
            yield sample
        self._draw_tail()
        ep.finished = True

    def _custom_start(self, ep: _Epoch) -> Iterator[Any]:
        source: Iterable = self.batch_sampler if self.batch_sampler is not None else self.sampler
        ep.base = 0
        it = iter(source)
        if ep.skip:
            # A sampler with no state of its own is fast-forwarded (torchdata does the same).
            for _ in itertools.islice(it, ep.skip):
                ep.base += 1
        return it

    def _custom_epoch(self, ep: _Epoch, start: Iterator[Any] | None) -> Iterator[list[torch.Tensor]]:
        """A user's sampler or batch_sampler: gather by the indices it gives, batch by batch."""
        it = start if start is not None else self._custom_start(ep)
        pin = self._pinning()
        for indices in it:
            if self.batch_sampler is None:
                j = self._check_index(indices)
                out = [t[j if self._row_list is None else self._row_list[j]] for t in self.tensors]
                if pin:
                    out = [s.pin_memory() if s.device.type == "cpu" else s for s in out]
            else:
                out = self._gather_indices(indices, pin)
            ep.base += 1
            yield out
        ep.finished = True

    def _check_index(self, i: Any) -> int:
        """A sampler's index as an int in ``[0, n)``. Bools and tensors other than 0-d integers are
        refused: ``operator.index`` reads a one-element or bool tensor as an int, where
        DataLoader on a TensorDataset would index with it (``t[True]`` is the whole tensor)."""
        n = self._n
        if isinstance(i, bool) or (isinstance(i, torch.Tensor) and (i.dim() != 0 or i.dtype == torch.bool)):
            raise TypeError(f"sampler gave index {i!r} of type {type(i).__name__}; indices must be integers")
        try:
            j = operator.index(i)
        except TypeError:
            raise TypeError(f"sampler gave index {i!r} of type {type(i).__name__}; indices must be integers") from None
        if not -n <= j < n:
            raise IndexError(f"index {j} out of range for dataset of length {n}")
        return j + n if j < 0 else j

    def _gather_indices(self, indices: Any, pin: bool) -> list[torch.Tensor]:
        idx = torch.as_tensor(indices if not isinstance(indices, torch.Tensor) else indices.cpu())
        if idx.numel() == 0:
            idx = idx.reshape(0).long()
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex() or idx.dim() != 1:
            raise TypeError(f"batch_sampler gave {indices!r}; each batch must be a 1-d sequence of integer indices")
        n = self._n
        if idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < -n or hi >= n:
                bad = lo if lo < -n else hi
                raise IndexError(f"index {bad} out of range for dataset of length {n}")
        idx = torch.where(idx < 0, idx + n, idx).long()
        if self._rows is not None:
            idx = self._rows.cpu()[idx]
        out = []
        for t in self.tensors:
            i = idx.to(t.device)
            if pin and t.device.type == "cpu":
                buf = torch.empty((i.numel(), *t.shape[1:]), dtype=t.dtype, pin_memory=True)
                out.append(torch.index_select(t, 0, i, out=buf))
            else:
                out.append(t.index_select(0, i))
        return out

    # --- resumable state -------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return {"n": self._n, "batch_size": self.batch_size, "drop_last": bool(self.drop_last), "order": self._order}

    def state_dict(self) -> dict[str, Any]:
        """Where this loader stands, as plain JSON-serialisable data (StatefulDataLoader's semantics).

        Mid-epoch (an iterator was started and has not raised ``StopIteration``): the
        batches it handed out and the generators' states at the epoch's start, so a loader
        that loads it redraws the same order and yields the rest. Between epochs: the
        generators' current states.
        """
        if self._pending is not None:
            return dict(self._pending)
        ep = self._epoch
        state: dict[str, Any] = {"format": STATE_FORMAT, **self._config(), "epochs_started": self._epochs}
        if ep is None or ep.finished:
            state.update(in_epoch=False, batches_yielded=0, perm_drawn=False, epoch_seed=None,
                         generator_state=_state_of(self.generator),
                         sampler_generator_state=_state_of(self._sampler_generator_if_distinct()))
        else:
            state.update(in_epoch=True, batches_yielded=ep.yielded, perm_drawn=ep.perm_drawn,
                         epoch_seed=ep.epoch_seed, generator_state=ep.gen_state,
                         sampler_generator_state=ep.sampler_gen_state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next ``iter(self)`` yields what was left of that epoch.

        Restores the generators' states now. With ``generator=None`` the resumed epoch
        reuses its saved seed; later epochs draw from torch's global RNG, as DataLoader does.

        Raises:
            ValueError: the state is not a TensorLoader state, or was saved by a loader with
                a different dataset length, batch size, drop_last, order or generator setup.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a TensorLoader state_dict: expected format {STATE_FORMAT!r}, got {got!r}")
        mine = self._config()
        diff = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if diff:
            raise ValueError("state_dict was saved by a different loader: "
                             + ", ".join(f"{k}={a!r} in the state but {b!r} here" for k, (a, b) in diff.items()))
        _restore(self.generator, state["generator_state"], "generator")
        _restore(self._sampler_generator_if_distinct(), state["sampler_generator_state"], "sampler generator")
        self._epochs = int(state["epochs_started"])
        self._epoch = None
        self._pending = dict(state)
