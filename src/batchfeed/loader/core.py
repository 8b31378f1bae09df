"""The :class:`TensorLoader` class: DataLoader's keywords, checks and attributes, its length,
``iter()`` handing each epoch to a :class:`~batchfeed.loader.iterator.TensorLoaderIter` (with
the :class:`~batchfeed.loader.iterator.EpochPlan` it needs beyond the public attributes), and
the resumable state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
    default_collate,
    default_convert,
)

from .._checks import check_positive_int
from .draws import distinct_sampler_generator, restore, state_of
from .iterator import EpochPlan, TensorLoaderIter
from .prefetch import check_prefetch
from .served import USE_DATALOADER, storage_of

__all__ = ["STATE_FORMAT", "TensorLoader"]

STATE_FORMAT = "batchfeed.TensorLoader/1"
#: Bytes gathered per index_select. CPU: 8 MiB, measured (docs/benchmarks.md): larger chunks
#: stop being recycled by glibc's allocator and are page-faulted in afresh every epoch
#: (16 MiB: every page, every epoch); smaller ones mean more parallel regions per epoch, and
#: each can cost a scheduler tick when other processes share the cores. Other devices:
#: few kernel launches per epoch; the caching allocator recycles the memory.
#: A dataset read from files (``source``): 1 MiB of rows per ``read_batch``, measured at N=400k,
#: F=64, B=256 (docs/benchmarks.md, "Out of core"): one read per batch spent a quarter of a
#: warm epoch in per-call overhead; 16 batches per read brought it within the noise of the
#: bound, and more gained nothing while holding more memory per read (and per prefetched read).
_CHUNK_BYTES = {"cpu": 8 << 20, "other": 64 << 20, "source": 1 << 20}
_FROZEN = ("batch_size", "batch_sampler", "sampler", "drop_last", "dataset", "persistent_workers")


def _check_keywords(num_workers: int, timeout: float, prefetch_factor: int | None, persistent_workers: bool,
                    multiprocessing_context: Any, collate_fn: Any, generator: Any, chunk_bytes: int | None) -> None:
    """DataLoader's own checks first, in its order and with its exception types; then what
    TensorLoader cannot honour, refused by name."""
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
    if num_workers > 0:
        raise TypeError(f"TensorLoader gathers batches in the main process and cannot honour "
                        f"num_workers={num_workers}; {USE_DATALOADER} for worker processes")
    if collate_fn is not None:
        raise TypeError(f"TensorLoader gathers whole batches without collating and cannot honour "
                        f"collate_fn={collate_fn!r}; apply it to each batch, or {USE_DATALOADER}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if chunk_bytes is not None:
        check_positive_int("chunk_bytes", chunk_bytes)


def _sampling(dataset: Any, batch_size: int | None, shuffle: bool | None, sampler: Any, batch_sampler: Any,
              drop_last: bool, generator: torch.Generator | None) -> tuple[int | None, bool, Any, Any]:
    """DataLoader's sampler logic, verbatim in effect (its checks and messages come with it):
    ``(batch_size, drop_last, sampler, batch_sampler)`` as DataLoader would set them."""
    shuffle = bool(shuffle)
    if sampler is not None and shuffle:
        raise ValueError("sampler option is mutually exclusive with shuffle")
    if batch_sampler is not None:
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
    return batch_size, drop_last, sampler, batch_sampler


class TensorLoader:
    """Batches of an in-memory tensor dataset, or of arrays on disk, with DataLoader's keywords and semantics.

    Args:
        dataset: a :class:`~batchfeed.PairDataset`, a :class:`torch.utils.data.TensorDataset`
            (neither subclassed with its own ``__getitem__``/``__getitems__``/``__len__``),
            a tuple of tensors with a common first dimension (served as
            ``TensorDataset(*tensors)``), a dataset that reads whole batches from its files
            (:class:`~batchfeed.sources.NpyDataset`: one ``read_batch`` per chunk of whole
            batches, no ``__getitem__``, no collate), or a ``Subset`` of any of these.
        batch_size, shuffle, sampler, batch_sampler, drop_last, generator, pin_memory,
        timeout, worker_init_fn, prefetch_factor, persistent_workers, pin_memory_device,
        in_order, multiprocessing_context: as :class:`torch.utils.data.DataLoader`, with
        ``num_workers=0`` (the only value it honours) and ``collate_fn=None``.
        device: move the data there once, at construction (e.g. ``"cuda"``); batches are
            gathered on that device, and with ``generator=None`` or a generator on that
            device the permutation is drawn there too. ``None`` leaves the data where it is.
            Data on disk is read on the CPU (a GPU device is refused).
        chunk_bytes: about how many bytes are gathered per ``index_select`` (per
            ``read_batch`` for data on disk); batches are views into these chunks. Default
            8 MiB on CPU, 64 MiB on other devices, 1 MiB from disk; at least one batch.
        prefetch: for data on disk, how many reads (one per chunk; one per batch with a
            ``batch_sampler``) may run or wait ahead of the loop, on background threads (0:
            read on the loop's thread, when needed). The reads release the GIL, so they overlap
            with training. At most ``prefetch + 2`` reads' rows are alive at once (2 without
            reading ahead; see :mod:`batchfeed.loader.prefetch`). Batches, random draws and
            ``state_dict`` are unchanged; a read's error is raised where the loop takes it.
        readers: threads doing those reads (default 1; more keep more reads in flight, which a
            cold file on a device with queue depth can use). They run only while an epoch
            reads ahead: stopped when it ends, fails, the next starts, or it is collected.

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
        prefetch: int = 0,
        readers: int = 1,
    ) -> None:
        _check_keywords(num_workers, timeout, prefetch_factor, persistent_workers, multiprocessing_context, collate_fn,
                        generator, chunk_bytes)
        tensors, source, rows = storage_of(dataset, device)
        self.prefetch, self.readers = check_prefetch(prefetch, readers, source is not None)
        if isinstance(dataset, tuple):
            dataset = TensorDataset(*dataset)
        custom_batches = batch_sampler is not None
        batch_size, drop_last, sampler, batch_sampler = _sampling(dataset, batch_size, shuffle, sampler, batch_sampler,
                                                                  drop_last, generator)
        self._initialized = False
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        # DataLoader's own for collate_fn=None: the function whose batches TensorLoader yields.
        self.collate_fn = default_collate if batch_sampler is not None else default_convert
        self.pin_memory, self.pin_memory_device, self.timeout = pin_memory, pin_memory_device, timeout
        self.worker_init_fn = worker_init_fn  # never called: there are no workers, as in DataLoader
        self.num_workers, self.multiprocessing_context, self.prefetch_factor = 0, None, None
        self.persistent_workers, self.in_order = False, in_order
        # In-memory tensors, or (source) a dataset that reads whole batches from its files itself.
        self.tensors, self.source = tensors, source
        self.device = tensors[0].device if source is None else torch.device("cpu")
        self._rows = None if rows is None else rows.to(self.device)  # a Subset's rows (None: all, in order)
        self._row_list = None if rows is None else rows.tolist()
        self._n = (len(source) if source is not None else int(tensors[0].shape[0])) if rows is None else int(rows.numel())
        self._custom_batches = custom_batches
        self._order = self._fast_order()
        self._chunk_rows = self._rows_per_chunk(chunk_bytes)
        self._epochs = 0
        self._iterator: TensorLoaderIter | None = None
        self._pending: dict[str, Any] | None = None
        self._initialized = True

    def _rows_per_chunk(self, chunk_bytes: int | None) -> int:
        """Rows gathered per index_select: whole batches, about ``chunk_bytes`` (or the device's default)."""
        if self.batch_size is None:
            return 1
        if self.source is not None:
            row_bytes = max(1, getattr(self.source, "row_bytes", 1))
            budget = chunk_bytes or _CHUNK_BYTES["source"]
        else:
            row_bytes = max(1, sum(t[0].numel() * t.element_size() for t in self.tensors) if self._n else 1)
            budget = chunk_bytes or _CHUNK_BYTES["cpu" if self.device.type == "cpu" else "other"]
        return max(self.batch_size, budget // row_bytes // self.batch_size * self.batch_size)

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
        data = (f"tensors=[{', '.join(f'{tuple(t.shape)} {t.dtype}' for t in self.tensors)}]" if self.source is None
                else f"source={self.source!r}")
        return (f"TensorLoader(n={self._n}, batch_size={self.batch_size}, order={self._order}, "
                f"drop_last={self.drop_last}, device={self.device}, {data})")

    # --- iteration ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        """One epoch, handed to a :class:`TensorLoaderIter` (see there for when the draws happen)."""
        pending, self._pending = self._pending, None
        self._suspend_reads()
        self._iterator = TensorLoaderIter(self, self._plan(), pending)
        if not self._iterator.resumed:
            self._epochs += 1
        return self._iterator

    def _plan(self) -> EpochPlan:
        """What an epoch needs beyond the public attributes: fixed at construction, as the dataset and sampler are."""
        return EpochPlan(n=self._n, order=self._order, chunk_rows=self._chunk_rows, rows=self._rows,
                         row_list=self._row_list)

    def _suspend_reads(self) -> None:
        """The last epoch's reads ahead dropped and their threads stopped: one epoch at a time holds them."""
        if self._iterator is not None:
            self._iterator.suspend_reads()

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
        it = self._iterator
        state: dict[str, Any] = {"format": STATE_FORMAT, **self._config(), "epochs_started": self._epochs}
        if it is None or it.finished:
            state.update(in_epoch=False, batches_yielded=0, perm_drawn=False, epoch_seed=None,
                         generator_state=state_of(self.generator),
                         sampler_generator_state=state_of(distinct_sampler_generator(self.sampler, self.generator)))
        else:
            state.update(it.state())
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
        restore(self.generator, state["generator_state"], "generator")
        restore(distinct_sampler_generator(self.sampler, self.generator), state["sampler_generator_state"],
                "sampler generator")
        self._epochs = int(state["epochs_started"])
        self._suspend_reads()
        self._iterator = None
        self._pending = dict(state)
