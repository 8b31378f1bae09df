"""Block shuffle: an order that reads files in contiguous runs yet is still shuffled.

:class:`BlockShuffleSampler` is what streaming loaders do for sequential I/O (WebDataset's
shard shuffle plus ``.shuffle(buffer)``, ``tf.data``'s ``shuffle(buffer_size)`` after
interleaving files): cut the ``n`` indices into blocks of ``block_size`` contiguous indices
(the last one shorter when ``block_size`` does not divide ``n``), put the blocks in a random
order, and stream them through a shuffle buffer of ``buffer_size`` indices: the buffer is
filled with the stream's first indices, then each step hands out a uniformly chosen one and
refills its slot with the stream's next index; once the stream is spent, what is left in the
buffer comes out in a uniformly random order.

So ``block_size=1`` (any buffer) is a uniform shuffle, as ``RandomSampler``; ``buffer_size=1``
hands out the blocks whole, in shuffled order; ``block_size >= n`` with ``buffer_size=1`` is
sequential order; ``buffer_size >= n`` is a uniform shuffle whatever the blocks. An index
never comes out more than ``buffer_size - 1`` places before its place in the block stream
(it must have entered the buffer first); it can come out later (it may wait in the buffer).

It is a torch ``Sampler``: give it to ``DataLoader(ds, batch_size=B, sampler=...)`` or to
:class:`batchfeed.TensorLoader` (which reads each batch's rows sorted and coalesced, so a batch
drawn from few blocks is read in few runs). The whole epoch's order is drawn at ``iter()``
from ``generator`` (``randperm`` of the blocks, ``randint`` of the buffer slots, ``randperm``
of the buffer's remainder), vectorized: no per-index Python draw.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import Sampler

from ._checks import check_positive_int

__all__ = ["BlockShuffleSampler", "block_shuffle_order"]

STATE_FORMAT = "batchfeed.BlockShuffleSampler/1"


def _block_stream(n: int, block_size: int, g: torch.Generator | None) -> torch.Tensor:
    """``0 .. n-1`` cut into blocks of ``block_size`` (the last shorter), blocks in ``randperm`` order."""
    blocks = -(-n // block_size)
    starts = torch.randperm(blocks, generator=g) * block_size
    lengths = torch.clamp(n - starts, max=block_size)
    first = torch.repeat_interleave(starts, lengths)
    offsets = torch.cumsum(lengths, 0) - lengths  # where each block begins in the stream
    return first + torch.arange(n) - torch.repeat_interleave(offsets, lengths)


def _buffer_shuffle(stream: torch.Tensor, m: int, g: torch.Generator | None) -> torch.Tensor:
    """``stream`` through a shuffle buffer of ``m`` slots (see the module's docstring), vectorized.

    Step ``t`` (while the stream lasts) hands out slot ``r_t`` (uniform) and puts
    ``stream[m + t]`` there; the slot held, at that step, what entered it at its previous
    choice ``t'`` (``stream[m + t']``), or ``stream[r_t]`` if it was never chosen before.
    """
    n = stream.numel()
    if m >= n:
        return stream[torch.randperm(n, generator=g)]
    steps = n - m
    slots = torch.randint(m, (steps,), generator=g)
    times = torch.argsort(slots, stable=True)  # the steps grouped by slot, each group in time order
    grouped = slots[times]
    same = grouped[1:] == grouped[:-1]
    prev = torch.full((steps,), -1, dtype=torch.int64)
    prev[times[1:]] = torch.where(same, times[:-1], -1)
    head = torch.where(prev >= 0, stream[m + prev.clamp(min=0)], stream[slots])
    last = torch.ones(steps, dtype=torch.bool)
    last[:-1] = ~same  # each slot's last choice: what it holds when the stream is spent
    left = stream[:m].clone()
    left[grouped[last]] = stream[m + times[last]]
    return torch.cat([head, left[torch.randperm(m, generator=g)]])


def block_shuffle_order(n: int, block_size: int, buffer_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One epoch's order of :class:`BlockShuffleSampler` (int64 tensor of ``0 .. n-1``, each once)."""
    stream = _block_stream(n, block_size, generator)
    return stream if buffer_size == 1 else _buffer_shuffle(stream, buffer_size, generator)


def _length(data_source_or_n: Any) -> int:
    if isinstance(data_source_or_n, numbers.Integral) and not isinstance(data_source_or_n, bool):
        if data_source_or_n < 0:
            raise ValueError(f"data_source_or_n must be a dataset or a non-negative number of samples, "
                             f"got {data_source_or_n!r}")
        return int(data_source_or_n)
    if isinstance(data_source_or_n, Sized):
        return len(data_source_or_n)
    raise TypeError(f"data_source_or_n must be a dataset with len() or a number of samples, got "
                    f"{type(data_source_or_n).__name__} {data_source_or_n!r}")


class BlockShuffleSampler(Sampler[int]):
    """Indices ``0 .. n-1`` once per epoch: blocks of contiguous indices shuffled, then a shuffle buffer.

    Args:
        data_source_or_n: the dataset (its ``len``, read once here) or the number of samples ``n``.
        block_size: indices per block (contiguous rows of the file); 1 = a uniform shuffle.
        buffer_size: slots of the shuffle buffer, in indices; default ``block_size`` (one
            block's worth). 1 = the blocks whole, in shuffled order. Any size >= 1 is allowed:
            a buffer smaller than a block only shuffles within a window sliding along it.
        generator: the ``torch.Generator`` every epoch's order is drawn from; with ``None``,
            each epoch draws a seed from torch's global RNG, as ``RandomSampler`` does.

    ``state_dict()`` / ``load_state_dict()`` (torchdata's ``Stateful``, so ``StatefulDataLoader``
    restores it instead of skipping batches): mid-epoch (from ``iter()`` until the epoch's last
    index is handed out), the generator's state at the epoch's start (its seed with
    ``generator=None``) and the indices handed out, so the next ``iter()`` hands out the rest
    of that epoch; between epochs, the generator's state. One epoch at a time: a second
    ``iter()`` starts a new epoch and the state follows it.
    :class:`batchfeed.TensorLoader` resumes it through ``sampler.generator`` instead (it saves
    and restores a sampler's own generator and skips the batches already served).

    Raises:
        ValueError: ``block_size`` or ``buffer_size`` not a positive integer, a negative ``n``.
        TypeError: ``data_source_or_n`` without a length, ``generator`` not a ``torch.Generator``.
    """

    def __init__(self, data_source_or_n: Any, block_size: int, buffer_size: int | None = None,
                 generator: torch.Generator | None = None) -> None:
        self.n = _length(data_source_or_n)
        self.block_size = check_positive_int("block_size", block_size)
        self.buffer_size = self.block_size if buffer_size is None else check_positive_int("buffer_size", buffer_size)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self._start: dict[str, Any] | None = None  # the epoch in progress: how its order was drawn
        self._yielded = 0
        self._resume: dict[str, Any] | None = None

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"BlockShuffleSampler(n={self.n}, block_size={self.block_size}, buffer_size={self.buffer_size})"

    def _draw_generator(self, start: dict[str, Any]) -> torch.Generator | None:
        """The generator this epoch draws from, set to ``start`` (a saved epoch's beginning)."""
        if self.generator is not None:
            self.generator.set_state(torch.tensor(start["generator_state"], dtype=torch.uint8))
            return self.generator
        return torch.Generator().manual_seed(start["seed"])

    def __iter__(self) -> Iterator[int]:
        """The epoch's order is drawn now, at ``iter()``; a loaded mid-epoch state redraws its epoch and skips what was handed out."""
        resume, self._resume = self._resume, None
        if resume is not None and resume["in_epoch"]:
            start, skip = {k: resume[k] for k in ("generator_state", "seed")}, resume["yielded"]
        elif self.generator is not None:
            start, skip = {"generator_state": self.generator.get_state().tolist(), "seed": None}, 0
        else:
            start, skip = {"generator_state": None, "seed": int(torch.empty((), dtype=torch.int64).random_().item())}, 0
        order = block_shuffle_order(self.n, self.block_size, self.buffer_size, self._draw_generator(start))
        self._start, self._yielded = start, skip
        return self._hand_out(order.tolist()[skip:])

    def _hand_out(self, order: list[int]) -> Iterator[int]:
        for i in order:
            self._yielded += 1
            yield i
        self._start, self._yielded = None, 0

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler stands, as plain JSON-serialisable data (see the class docstring)."""
        state = {"format": STATE_FORMAT, "n": self.n, "block_size": self.block_size, "buffer_size": self.buffer_size}
        if self._start is not None:
            return {**state, **self._start, "in_epoch": True, "yielded": self._yielded}
        g = None if self.generator is None else self.generator.get_state().tolist()
        return {**state, "generator_state": g, "seed": None, "in_epoch": False, "yielded": 0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next ``iter()`` hands out what was left of the saved epoch.

        Raises:
            ValueError: not a BlockShuffleSampler state, or saved by a sampler with another
                ``n``, ``block_size``, ``buffer_size`` or generator setup.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a BlockShuffleSampler state_dict: expected format {STATE_FORMAT!r}, got {got!r}")
        mine = {"n": self.n, "block_size": self.block_size, "buffer_size": self.buffer_size}
        diff = [f"{k}={state.get(k)!r} in the state but {v!r} here" for k, v in mine.items() if state.get(k) != v]
        if (state["generator_state"] is None) != (self.generator is None) and not (
                self.generator is None and state["seed"] is not None):
            diff.append("the saved sampler " + ("had no generator" if self.generator is not None else "had a generator")
                        + ", this one " + ("has one" if self.generator is not None else "has none"))
        if diff:
            raise ValueError("state_dict was saved by a different sampler: " + ", ".join(diff))
        if not state["in_epoch"] and self.generator is not None:
            self.generator.set_state(torch.tensor(state["generator_state"], dtype=torch.uint8))
        self._resume = dict(state)
