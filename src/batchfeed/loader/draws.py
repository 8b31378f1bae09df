"""DataLoader's random draws, replayed: generator states as plain data, and advancing a CPU
generator exactly as ``torch.randperm(n)`` would without building the permutation."""

from __future__ import annotations

import functools

import torch

#: torch's CPU randperm uses one 32-bit draw per element below this size (random64 above).
_RANDPERM_32BIT_LIMIT = (2**32 - 1) // 20


__all__ = ["advance_like_randperm", "distinct_sampler_generator", "is_cpu", "restore", "state_of"]


def state_of(g: torch.Generator | None) -> list[int] | None:
    """``g``'s state as a list of ints (plain JSON), or None without a generator."""
    return None if g is None else g.get_state().tolist()


def restore(g: torch.Generator | None, state: list[int] | None, name: str) -> None:
    """Set ``g`` to a :func:`state_of` ``state``; ValueError naming ``name`` when one of them is missing."""
    if (g is None) != (state is None):
        have = "no generator" if g is None else "a generator"
        raise ValueError(f"state_dict {name}: the saved loader {'had' if state is not None else 'had no'} "
                         f"{name}, this loader has {have}")
    if g is not None:
        g.set_state(torch.tensor(state, dtype=torch.uint8))


def is_cpu(g: torch.Generator | None) -> bool:
    """Whether ``g`` draws on the CPU (None: torch's global CPU generator)."""
    return g is None or g.device.type == "cpu"


def distinct_sampler_generator(sampler: object, generator: torch.Generator | None) -> torch.Generator | None:
    """The sampler's own generator, when it has one that is not the loader's ``generator``."""
    g = getattr(sampler, "generator", None)
    return None if g is generator or not isinstance(g, torch.Generator) else g


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


def advance_like_randperm(g: torch.Generator, n: int) -> None:
    """Advance ``g`` as ``torch.randperm(n, generator=g)`` would, without building the permutation."""
    if n < _RANDPERM_32BIT_LIMIT and _skip_matches_randperm():
        _skip_draws(g, n - 1)
    else:
        torch.randperm(n, generator=g)
