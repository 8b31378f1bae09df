"""Deliberately broken DataLoader-compatible loaders, each named by what it breaks.

The meta tests run the loader-facing spec against each and check that the spec catches
it. Every one is torch's DataLoader with exactly one defect, except the resumable ones at
the end: batchfeed's TensorLoader with exactly one defect in its state_dict /
load_state_dict (spec/meta/test_resume_model_finds_deviation.py).
"""

from __future__ import annotations

import itertools
import queue
import threading

import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler
from torch.utils.data._utils.collate import default_collate

from batchfeed.loader import TensorLoader

__all__ = [
    "drops_partial_last_batch",
    "same_order_every_epoch",
    "ignores_generator",
    "samples_with_replacement",
    "misaligns_labels",
    "shuffles_within_blocks",
    "refuses_every_dataset",
    "refuses_when_shuffling",
    "refuses_workers_undeclared",
    "refuses_generator",
    "resume_restarts_the_epoch",
    "resume_ignores_the_generator_state",
    "state_dict_is_live",
    "replaces_collate_fn",
    "reseeds_at_construction",
    "hangs_when_a_worker_dies",
]


def drops_partial_last_batch(dataset, **kw):
    """Always drops the last, partial batch, as if drop_last=True were the default."""
    if kw.get("batch_sampler") is None and kw.get("batch_size", 1) is not None:
        kw["drop_last"] = True
    return DataLoader(dataset, **kw)


class _Fresh:
    """Builds a new DataLoader at every epoch from keyword arguments a subclass adjusts."""

    def __init__(self, dataset, **kw) -> None:
        self.dataset, self.kw = dataset, kw
        self._len = len(DataLoader(dataset, **kw))

    def __len__(self) -> int:
        return self._len

    def epoch_kwargs(self) -> dict:
        return dict(self.kw)

    def __iter__(self):
        return iter(DataLoader(self.dataset, **self.epoch_kwargs()))


class same_order_every_epoch(_Fresh):  # noqa: N801 - named by what it breaks
    """Re-seeds its shuffling at every epoch, so every epoch repeats the first one's order."""

    def __init__(self, dataset, **kw) -> None:
        super().__init__(dataset, **kw)
        g = kw.get("generator")
        self.seed = g.initial_seed() if g is not None else 0

    def epoch_kwargs(self) -> dict:
        return {**self.kw, "generator": torch.Generator().manual_seed(self.seed)}


_other_seeds = itertools.count(1_000_003, 7919)


def ignores_generator(dataset, **kw):
    """Shuffles with a generator of its own, so the caller's seed does not reproduce the order."""
    kw["generator"] = torch.Generator().manual_seed(next(_other_seeds))
    return DataLoader(dataset, **kw)


def samples_with_replacement(dataset, **kw):
    """Shuffles by drawing indices with replacement: some samples repeat, others are lost."""
    if kw.pop("shuffle", False):
        kw["sampler"] = RandomSampler(dataset, replacement=True, generator=kw.get("generator"))
    return DataLoader(dataset, **kw)


def _roll_labels(batch):
    batch = default_collate(batch)
    if isinstance(batch, dict):
        return {**batch, "y": batch["y"].roll(1)}
    if isinstance(batch, (list, tuple)) and len(batch) >= 2 and batch[1].dim() >= 1:
        return [batch[0], batch[1].roll(1), *batch[2:]]
    return batch


def misaligns_labels(dataset, **kw):
    """Collates correctly, then shifts each batch's labels by one position."""
    if kw.get("batch_size", 1) is not None:
        kw.setdefault("collate_fn", _roll_labels)
    return DataLoader(dataset, **kw)


class _BlockShuffle(Sampler):
    """Shuffles indices only within consecutive blocks of a tenth of the data."""

    def __init__(self, n: int, generator) -> None:
        self.n, self.generator = n, generator
        self.block = max(1, n // 10)

    def __iter__(self):
        for start in range(0, self.n, self.block):
            stop = min(start + self.block, self.n)
            yield from (start + torch.randperm(stop - start, generator=self.generator)).tolist()

    def __len__(self) -> int:
        return self.n


def shuffles_within_blocks(dataset, **kw):
    """Shuffles only within blocks of 10% of the data: a sample never leaves its neighbourhood."""
    if kw.pop("shuffle", False):
        kw["sampler"] = _BlockShuffle(len(dataset), kw.get("generator"))
    return DataLoader(dataset, **kw)


# --- loaders that refuse work they never declared unsupported --------------------------------
# A conformance run against any of these must fail: a test skips only for a feature the
# loader's deviations file declares, never because the loader raised.

def refuses_every_dataset(dataset, **kw):
    """Refuses to build for any dataset, with a TypeError that names the dataset."""
    raise TypeError("cannot serve any dataset")


def refuses_when_shuffling(dataset, **kw):
    """Works in order; raises TypeError naming shuffle when asked to shuffle."""
    if kw.get("shuffle"):
        raise TypeError("shuffle=True is not supported by this loader")
    return DataLoader(dataset, **kw)


def refuses_workers_undeclared(dataset, **kw):
    """Raises for num_workers > 0 without declaring num_workers unsupported."""
    if kw.get("num_workers", 0) > 0:
        raise TypeError(f"num_workers={kw['num_workers']} is not supported")
    return DataLoader(dataset, **kw)


def refuses_generator(dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                      collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                      multiprocessing_context=None, *, prefetch_factor=None, persistent_workers=False,
                      pin_memory_device="", in_order=True):
    """DataLoader's signature without ``generator``: a caller's seed cannot even be passed."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, batch_sampler=batch_sampler,
                      num_workers=num_workers, collate_fn=collate_fn, pin_memory=pin_memory, drop_last=drop_last,
                      timeout=timeout, worker_init_fn=worker_init_fn, multiprocessing_context=multiprocessing_context,
                      prefetch_factor=prefetch_factor, persistent_workers=persistent_workers,
                      pin_memory_device=pin_memory_device, in_order=in_order)
# --- the three deviations of real loaders the suite once missed (issue 20) ------------------

def replaces_collate_fn(dataset, **kw):
    """Batches with default_collate whatever collate_fn it is given (a user's collate_fn is
    kept only with batch_size=None, where nothing is batched)."""
    if kw.get("batch_size", 1) is not None or kw.get("batch_sampler") is not None:
        kw.pop("collate_fn", None)
    return DataLoader(dataset, **kw)


def reseeds_at_construction(dataset, **kw):
    """Seeds torch's global RNG and rewinds the generator it is given to its seed when built,
    "for reproducibility": the next loader's shuffle order, and the caller's draws, repeat."""
    torch.manual_seed(0)
    generator = kw.get("generator")
    if generator is not None:
        generator.manual_seed(generator.initial_seed())
    return DataLoader(dataset, **kw)


_END = object()


class hangs_when_a_worker_dies:  # noqa: N801 - named by what it breaks
    """DataLoader iterated on a thread of its own, batches handed over a queue; the thread
    drops any error (a dead worker's included), so the caller waits for the next batch forever."""

    def __init__(self, dataset, **kw) -> None:
        self.loader = DataLoader(dataset, **kw)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        batches: queue.Queue = queue.Queue()

        def feed() -> None:
            try:
                for batch in self.loader:
                    batches.put(batch)
                batches.put(_END)
            except Exception:  # noqa: BLE001 - the defect: the error never reaches the caller
                pass

        threading.Thread(target=feed, daemon=True).start()
        while (batch := batches.get()) is not _END:
            yield batch


# --- resumable loaders with a broken state_dict / load_state_dict ------------------------

class resume_restarts_the_epoch(TensorLoader):  # noqa: N801 - named by what it breaks
    """Drops the saved position: a loader resumed mid-epoch replays that epoch from its start."""

    def load_state_dict(self, state):
        super().load_state_dict({**state, "batches_yielded": 0})


class resume_ignores_the_generator_state(TensorLoader):  # noqa: N801
    """Keeps its own generator's state on load: right in epoch 0 (a fresh generator is at
    epoch 0's start), wrong order once the saved epoch is a later one."""

    def load_state_dict(self, state):
        own = None if self.generator is None else self.generator.get_state().tolist()
        super().load_state_dict({**state, "generator_state": own})


class state_dict_is_live(TensorLoader):  # noqa: N801
    """Returns the same dict from every state_dict() call, updated in place: a checkpoint
    kept in memory changes as the loader runs on (only a later restore of it shows)."""

    def state_dict(self):
        live = self.__dict__.setdefault("_live_state", {})
        live.clear()
        live.update(super().state_dict())
        return live
