"""Where the bandwidth goes: a memcpy, chunked copies, and sequential and random gathers of
the same rows, to explain what bounds a shuffling loader on this machine."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from .throughput import BenchData, seeded_generator, synchronize


def gather_profile(data: BenchData, *, chunk_bytes: int = 8 << 20, repeats: int = 3) -> dict[str, float]:
    """GB/s of the steps between a memcpy and TensorLoader's gather, to say where the bandwidth goes.

    Every variant moves the features of one epoch (``X``, all rows once), in chunks of about
    ``chunk_bytes`` unless it says "whole":

    * ``memcpy whole``: ``dst.copy_(X)``, dst allocated once (the copy-bandwidth bound);
    * ``copy chunks, reused buffer``: contiguous rows into one chunk-sized buffer (writes stay in cache);
    * ``gather sequential indices, reused buffer``: ``index_select`` with indices in order;
    * ``gather random indices, reused buffer``: the same with a permutation (random rows);
    * ``gather random indices, fresh chunks``: what TensorLoader does (new memory per chunk).

    Best of ``repeats``; bytes counted once per row (read + write is twice that).
    """
    X = data.Xd
    n, row = X.shape[0], X[0].numel() * X.element_size()
    rows = max(1, chunk_bytes // row)
    stop = n - n % rows if n >= rows else n
    rows = min(rows, n)
    perm = torch.randperm(n, generator=seeded_generator(data.device, 0), device=data.device)
    seq = torch.arange(n, device=data.device)
    dst, buf = torch.empty_like(X), torch.empty((rows, *X.shape[1:]), dtype=X.dtype, device=X.device)

    def whole() -> None:
        dst.copy_(X)

    def copy_chunks() -> None:
        for c in range(0, stop, rows):
            buf.copy_(X[c:c + rows])

    def gather(idx: torch.Tensor, out: torch.Tensor | None) -> Callable[[], None]:
        def run() -> None:
            for c in range(0, stop, rows):
                if out is None:
                    X.index_select(0, idx[c:c + rows])
                else:
                    torch.index_select(X, 0, idx[c:c + rows], out=out)
        return run

    variants = {
        "memcpy whole": (whole, n),
        "copy chunks, reused buffer": (copy_chunks, stop),
        "gather sequential indices, reused buffer": (gather(seq, buf), stop),
        "gather random indices, reused buffer": (gather(perm, buf), stop),
        "gather random indices, fresh chunks": (gather(perm, None), stop),
    }
    best = {k: math.inf for k in variants}
    for r in range(repeats + 1):  # round 0 warms the allocator up and is not kept
        for name, (fn, _rows) in variants.items():
            t0 = time.perf_counter()
            fn()
            synchronize(data.device)
            if r:
                best[name] = min(best[name], time.perf_counter() - t0)
    return {name: rows_moved * row / best[name] / 1e9 for name, (_fn, rows_moved) in variants.items()}
