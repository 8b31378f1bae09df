"""The iterator of one :class:`~batchfeed.loader.TensorLoader` epoch, as DataLoader hands an
epoch to ``_SingleProcessDataLoaderIter``: it owns the epoch's draws (the base seed, the
permutation, the sampler's discarded tail), its position, and the part of ``state_dict``
that describes an epoch in progress. It reads only the loader's public attributes
(:class:`EpochSource`) and the :class:`EpochPlan` the loader hands it.
"""

from __future__ import annotations

import itertools
import operator
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from .._checks import check_index
from .draws import advance_like_randperm, distinct_sampler_generator, is_cpu, state_of
from .prefetch import ReadAhead

__all__ = ["EpochPlan", "EpochSource", "TensorLoaderIter"]


class EpochSource(Protocol):
    """What an epoch reads of its loader: DataLoader's attributes, and where the data is."""

    batch_size: int | None
    drop_last: bool
    sampler: Any
    batch_sampler: Any
    generator: torch.Generator | None
    pin_memory: bool
    pin_memory_device: str
    tensors: tuple[torch.Tensor, ...]  # in-memory data (empty when ``source`` reads from files)
    source: Any                        # a dataset that reads whole batches (``read_batch``), or None
    device: torch.device
    prefetch: int
    readers: int

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class EpochPlan:
    """What an epoch needs beyond :class:`EpochSource`, fixed when the loader is built."""

    n: int                            # samples served (a Subset's length)
    order: str                        # "sequential", "random" (torch's own sampler over all n) or "custom"
    chunk_rows: int                   # rows per index_select (per read_batch from files): whole batches
    rows: torch.Tensor | None         # a Subset's rows, on the loader's device (None: all, in order)
    row_list: list[int] | None        # the same rows as ints, for single samples


def _pinned(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The CPU tensors copied into pinned memory (a batch DataLoader's pin_memory=True would give)."""
    return [t.pin_memory() if t.device.type == "cpu" else t for t in tensors]


def _pinned_empty(rows: int, like: torch.Tensor) -> torch.Tensor:
    """Pinned CPU memory for ``rows`` rows of ``like``: where a pinned batch is gathered directly."""
    return torch.empty((rows, *like.shape[1:]), dtype=like.dtype, pin_memory=True)


class TensorLoaderIter:
    """One epoch of a TensorLoader: ``next()`` gives its batches in DataLoader's order.

    Created by ``iter(loader)``, which draws DataLoader's base seed at once; the
    permutation is drawn at the first ``next``. Created with ``resume`` (the state a
    loader loaded), it is the rest of the saved epoch and makes, at once, the draws the saved
    loader had made by then (the permutation, the sampler's tail, a user's sampler
    fast-forwarded): abandoned before its first ``next``, or saved again, it stands where the
    saved loader stood.
    """

    def __init__(self, loader: EpochSource, plan: EpochPlan, resume: dict[str, Any] | None = None) -> None:
        self.loader, self.plan = loader, plan
        self.base = 0              # batches handed out before ``current``
        self.current: Iterator | None = None  # iterator over the first tensor's batch views
        self.current_len = 0
        self.finished = False
        self.resumed = resume is not None and bool(resume["in_epoch"])
        self.skip = int(resume["batches_yielded"]) if self.resumed else 0
        self.perm_drawn = bool(resume["perm_drawn"]) if self.resumed else False
        # generator=None: the seed of this epoch's permutation (a resumed epoch's, once drawn, is the saved one)
        self.epoch_seed: int | None = resume["epoch_seed"] if self.resumed else None
        if self.resumed:
            self.base = self.skip  # a state_dict() before the first next() still counts them
            self.gen_state = resume["generator_state"]
            self.sampler_gen_state = resume["sampler_generator_state"]
        else:
            self.gen_state = state_of(loader.generator)
            self.sampler_gen_state = state_of(distinct_sampler_generator(loader.sampler, loader.generator))
        # DataLoader's base seed: drawn from the loader's generator (the global RNG without
        # one). A resumed epoch drew it before it was interrupted; an explicit generator has
        # been rewound to the epoch's start, so it draws again.
        if not (self.resumed and loader.generator is None) and is_cpu(loader.generator):
            torch.empty((), dtype=torch.int64).random_(generator=loader.generator)
        self._warn_pin_memory()
        self._ahead: ReadAhead | None = None  # the epoch's reads ahead, when the loader reads ahead
        self._batches = self._epoch(catch_up=self.resumed and (self.perm_drawn or self.skip > 0))

    def _epoch(self, catch_up: bool) -> Iterator[list[torch.Tensor]]:
        """The epoch's batches; a resumed epoch that had drawn or handed out anything catches up now."""
        if self.plan.order == "custom":
            return self._custom_epoch(self._custom_start() if catch_up else None)
        if self.loader.batch_size is None:
            return self._unbatched_epoch(self._unbatched_start() if catch_up else None)
        return self._fast_epoch(self._fast_start() if catch_up else None)

    def __iter__(self) -> TensorLoaderIter:
        return self

    def __next__(self) -> list[torch.Tensor]:
        return next(self._batches)

    def __len__(self) -> int:
        return len(self.loader)

    def suspend_reads(self) -> None:
        """Drop the reads run ahead and stop their threads (the loader started another epoch); this
        epoch, if taken up again, reads them again: its batches are unchanged."""
        if self._ahead is not None:
            self._ahead.suspend()

    def _read_ahead(self, jobs: Iterator[Any]) -> Iterator[list[torch.Tensor]]:
        """``read_batch(job)`` for each job, in order: on the loop's thread, or ahead of it when the loader prefetches."""
        read = self.loader.source.read_batch
        if not self.loader.prefetch:
            return map(read, jobs)
        self._ahead = ReadAhead(read, jobs, self.loader.prefetch, self.loader.readers)
        return self._ahead

    @property
    def yielded(self) -> int:
        """Batches handed out so far in this epoch (a resumed epoch counts the saved ones)."""
        if self.current is None:
            return self.base
        return self.base + self.current_len - operator.length_hint(self.current)

    def state(self) -> dict[str, Any]:
        """The in-epoch part of the loader's ``state_dict``: position, draws, generator states at the start."""
        return {"in_epoch": True, "batches_yielded": self.yielded, "perm_drawn": self.perm_drawn,
                "epoch_seed": self.epoch_seed, "generator_state": self.gen_state,
                "sampler_generator_state": self.sampler_gen_state}

    def _pinning(self) -> bool:
        return bool(self.loader.pin_memory) and torch.accelerator.is_available()

    def _warn_pin_memory(self) -> None:
        if self.loader.pin_memory and self.loader.pin_memory_device:
            warnings.warn("pin_memory_device is deprecated, the current accelerator will be used as the device,"
                          f"ignore pin_memory_device='{self.loader.pin_memory_device}'.", stacklevel=4)
        if self.loader.pin_memory and not torch.accelerator.is_available():
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, "
                          "then device pinned memory won't be used.", stacklevel=4)

    def _permutation(self) -> torch.Tensor | None:
        """This epoch's order (None: sequential), drawn as RandomSampler draws it."""
        if self.plan.order == "sequential":
            return None
        g = self.loader.sampler.generator
        n = self.plan.n
        if g is None:
            # RandomSampler without a generator seeds a private one from the global RNG. The
            # permutation is drawn on the data's device (on CPU: DataLoader's own draw).
            if self.resumed and self.perm_drawn:
                seed = self.epoch_seed
            else:
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
            self.epoch_seed = seed
            local = torch.Generator(device=self.loader.device).manual_seed(seed)
            perm = torch.randperm(n, generator=local, device=self.loader.device)
        else:
            perm = torch.randperm(n, generator=g, device=g.device)
        self.perm_drawn = True
        return perm

    def _draw_tail(self) -> None:
        """RandomSampler's discarded ``randperm(n)`` once it is exhausted (explicit CPU generators only)."""
        if self.plan.order != "random":
            return
        g = self.loader.sampler.generator
        if g is not None and g.device.type == "cpu":
            advance_like_randperm(g, self.plan.n)

    def _fast_shape(self) -> tuple[int, int, bool]:
        """(rows served, batches, whether RandomSampler's tail is drawn with the last batch)."""
        n, b = self.plan.n, self.loader.batch_size
        stop = n - n % b if self.loader.drop_last else n
        # DataLoader exhausts RandomSampler while building the last batch when that batch is
        # partial; otherwise only when asked for one more batch.
        return stop, -(-stop // b), not self.loader.drop_last and n % b != 0

    def _fast_start(self) -> tuple[torch.Tensor | None, int]:
        """The epoch's permutation and first batch; a resumed epoch also redraws the tail if its last batch was out."""
        perm = self._permutation()
        _, n_batches, tail_early = self._fast_shape()
        k0 = min(self.skip, n_batches)
        self.base = k0
        if tail_early and k0 == n_batches and n_batches > 0:
            self._draw_tail()
        return perm, k0

    def _fast_epoch(self, start: tuple[torch.Tensor | None, int] | None) -> Iterator[list[torch.Tensor]]:
        perm, k0 = start if start is not None else self._fast_start()
        b, step = self.loader.batch_size, self.plan.chunk_rows
        stop, _, tail_early = self._fast_shape()
        pin = self._pinning() and self.loader.device.type == "cpu"
        starts = range(k0 * b, stop, step)
        chunks = self._chunks(perm, starts, stop, pin)
        try:
            for c0, chunk in zip(starts, chunks):
                if pin and self.loader.source is not None:
                    chunk = _pinned(chunk)
                splits = [c.split(b) for c in chunk]
                # Batches are made lazily (a list per batch kept alive for the whole chunk would
                # wake Python's cyclic GC thousands of times an epoch); the first tensor's split
                # iterator tells how many were handed out.
                if tail_early and c0 + step >= stop:
                    last = [s[-1] for s in splits]
                    splits = [s[:-1] for s in splits]
                    yield from self._hand_out(splits)
                    self._draw_tail()
                    yield from self._hand_out([(t,) for t in last])
                else:
                    yield from self._hand_out(splits)
        finally:  # an epoch ended, failed or closed stops the reads it had started ahead, and their threads
            if isinstance(chunks, ReadAhead):
                chunks.close()
        if not tail_early:
            self._draw_tail()
        self.finished = True

    def _chunks(self, perm: torch.Tensor | None, starts: range, stop: int, pin: bool) -> Iterator[list[torch.Tensor]]:
        """The epoch's chunks from ``starts``, in order: gathered from in-memory tensors, or read from
        files (one ``read_batch`` each), on reader threads ahead of the loop when the loader prefetches."""
        loader, step = self.loader, self.plan.chunk_rows
        perms: dict[torch.device, torch.Tensor] = {} if perm is None else {perm.device: perm}
        if loader.source is None:
            return ([self._gather_rows(t, perms, perm, c0, min(c0 + step, stop), pin, self.plan.rows)
                     for t in loader.tensors] for c0 in starts)
        order = None if perm is None else perm.cpu()
        rows = None if self.plan.rows is None else self.plan.rows.cpu()

        def indices(c0: int) -> np.ndarray:  # on the loader's thread: which rows never depends on timing
            c1 = min(c0 + step, stop)
            idx = torch.arange(c0, c1) if order is None else order[c0:c1]
            return (idx if rows is None else rows[idx]).numpy()

        return self._read_ahead(map(indices, starts))

    def _sample(self, i: int) -> list[torch.Tensor]:
        """Sample ``i`` (a Subset's position mapped to its row), as DataLoader yields it unbatched."""
        j = i if self.plan.row_list is None else self.plan.row_list[i]
        if self.loader.source is not None:
            return list(self.loader.source[j])
        return [t[j] for t in self.loader.tensors]

    def _hand_out(self, splits: list[tuple[torch.Tensor, ...]]) -> Iterator[list[torch.Tensor]]:
        """Batches ``[s[0][i], s[1][i], ...]``, counted as they are taken."""
        if self.current is not None:
            self.base += self.current_len
        first = iter(splits[0])
        self.current, self.current_len = first, len(splits[0])
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
            out = _pinned_empty(c1 - c0, t)
            if idx is None:
                return out.copy_(t[c0:c1])
            return torch.index_select(t, 0, idx, out=out)
        if idx is None:
            return t[c0:c1].clone(memory_format=torch.contiguous_format)
        return t.index_select(0, idx)

    def _unbatched_start(self) -> tuple[Iterable[int], int]:
        perm = self._permutation()
        k0 = min(self.skip, self.plan.n)
        self.base = k0
        return (range(self.plan.n) if perm is None else perm.tolist()), k0

    def _unbatched_epoch(self, start: tuple[Iterable[int], int] | None) -> Iterator[list[torch.Tensor]]:
        """batch_size=None: single samples, as DataLoader yields them (views of the dataset)."""
        order, k0 = start if start is not None else self._unbatched_start()
        pin = self._pinning()
        for i in itertools.islice(order, k0, None):
            sample = self._sample(i)
            if pin:
                sample = _pinned(sample)
            self.base += 1
            yield sample
        self._draw_tail()
        self.finished = True

    def _custom_start(self) -> Iterator[Any]:
        source: Iterable = self.loader.batch_sampler if self.loader.batch_sampler is not None else self.loader.sampler
        self.base = 0
        it = iter(source)
        if self.skip:
            # A sampler with no state of its own is fast-forwarded (torchdata does the same).
            for _ in itertools.islice(it, self.skip):
                self.base += 1
        return it

    def _custom_epoch(self, start: Iterator[Any] | None) -> Iterator[list[torch.Tensor]]:
        """A user's sampler or batch_sampler: gather by the indices it gives, batch by batch."""
        it = start if start is not None else self._custom_start()
        pin = self._pinning()
        if self.loader.batch_sampler is not None and self.loader.source is not None:
            reads = self._read_ahead(map(self._batch_rows, it))  # the sampler is drawn on this thread, in order
            try:
                for batch in reads:
                    self.base += 1
                    yield _pinned(batch) if pin else batch
            finally:
                if isinstance(reads, ReadAhead):
                    reads.close()
            self.finished = True
            return
        for indices in it:
            if self.loader.batch_sampler is None:
                out = self._sample(check_index(indices, self.plan.n, "sampler"))
                if pin:
                    out = _pinned(out)
            else:
                out = self._gather_indices(indices, pin)
            self.base += 1
            yield out
        self.finished = True

    def _batch_rows(self, indices: Any) -> torch.Tensor:
        """A batch sampler's ``indices`` checked (TypeError, IndexError) and mapped to the rows of the storage."""
        idx = torch.as_tensor(indices if not isinstance(indices, torch.Tensor) else indices.cpu())
        if idx.numel() == 0:
            idx = idx.reshape(0).long()
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex() or idx.dim() != 1:
            raise TypeError(f"batch_sampler gave {indices!r}; each batch must be a 1-d sequence of integer indices")
        n = self.plan.n
        if idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < -n or hi >= n:
                bad = lo if lo < -n else hi
                raise IndexError(f"index {bad} out of range for dataset of length {n}")
        idx = torch.where(idx < 0, idx + n, idx).long()
        return idx if self.plan.rows is None else self.plan.rows.cpu()[idx]

    def _gather_indices(self, indices: Any, pin: bool) -> list[torch.Tensor]:
        """A batch sampler's batch from in-memory tensors."""
        idx = self._batch_rows(indices)
        out = []
        for t in self.loader.tensors:
            i = idx.to(t.device)
            if pin and t.device.type == "cpu":
                buf = _pinned_empty(i.numel(), t)
                out.append(torch.index_select(t, 0, i, out=buf))
            else:
                out.append(t.index_select(0, i))
        return out

