"""The whole report of ``batchfeed compare``: the runs over seeds, their summary and verdicts,
peak memory and the sweep, as one typed result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .._checks import check_positive_int
from ..loaders import DEFAULT_LOADER, resolve
from .compare import Comparison, compare
from .figures import ClaimResult, Summary, claim_results, summarize
from .memory import measure_memory
from .sweep import Sweep, batch_size_sweep

# --- the whole report -----------------------------------------------------------------------

@dataclass
class CompareRun:
    """Everything ``batchfeed compare`` reports: one :class:`Comparison` per seed (each with
    equal-updates and equal-wall-time runs), their summary, the claims decided from them,
    each method's peak memory (None when skipped), and the batch-size sweep (None unless asked).
    """

    config: dict
    seeds: list[int]
    runs: list[Comparison]
    summary: Summary
    claims: dict[str, ClaimResult]
    memory: dict | None = None
    sweep: Sweep | None = None

    def to_dict(self) -> dict:
        mem = None
        if self.memory is not None:
            mem = {m: {"peak_rss": p.peak_rss, "start_rss": p.start_rss, "rss_increase": p.rss_increase,
                       "cuda_max_allocated": p.cuda_max_allocated, "final_loss": p.value}
                   for m, p in self.memory.items()}
        return {
            "config": dict(self.config),
            "seeds": list(self.seeds),
            "runs": [{"seed": s, **r.to_dict()} for s, r in zip(self.seeds, self.runs)],
            "summary": self.summary.to_dict(),
            "claims": {k: v.to_dict() for k, v in self.claims.items()},
            "memory": mem,
            "sweep": None if self.sweep is None else self.sweep.to_dict(),
        }


def total_work(repeats: int, memory: bool, batch_sizes: Sequence[int] | None) -> int:
    """Units of work :func:`run_compare` reports through ``progress``."""
    return 1 + repeats + (2 if memory else 0) + (len(set(batch_sizes)) + 1 if batch_sizes else 0)


def run_compare(
    *,
    n: int = 1000,
    features: int = 3,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    seed: int = 0,
    repeats: int = 1,
    shuffle: bool = True,
    device: str = "cpu",
    memory: bool = True,
    batch_sizes: Sequence[int] | None = None,
    sweep_lrs: Sequence[float] | None = None,
    target_loss: float | None = None,
    max_steps: int = 10_000,
    progress: Callable[[int], None] | None = None,
    loader: str = DEFAULT_LOADER,
) -> CompareRun:
    """The report of ``batchfeed compare``; ``loader`` (``module:callable``) feeds mini-batch GD.

    1. A warm-up (one short untimed comparison) pays one-time start-up costs, so that the
       first timed method is not charged for them.
    2. :func:`compare` with equal updates and equal wall time for seeds ``seed`` ..
       ``seed + repeats - 1``, then :func:`summarize` and :func:`claim_results`.
    3. Unless ``memory`` is False, :func:`measure_memory` for the first seed (after the
       timed runs, so that the measuring processes do not disturb the timings).
    4. With ``batch_sizes``, :func:`batch_size_sweep` for the first seed, at ``sweep_lrs``
       (default: ``[lr]``), with the target computed from ``lr`` and the mini-batch run's
       updates unless ``target_loss`` is given.
    """
    check_positive_int("repeats", repeats)
    tick = progress or (lambda _k: None)
    factory = resolve(loader)
    compare(n=min(n, 2 * batch_size), features=features, batch_size=batch_size, epochs=1, lr=lr, seed=seed,
            shuffle=shuffle, device=device, equal_time=True, loader_factory=factory)
    tick(1)
    seeds = list(range(seed, seed + repeats))
    runs = []
    for s in seeds:
        runs.append(compare(n=n, features=features, batch_size=batch_size, epochs=epochs, lr=lr, seed=s,
                            shuffle=shuffle, device=device, equal_time=True, loader_factory=factory))
        tick(1)
    config = dict(runs[0].config, repeats=repeats, threads=torch.get_num_threads(), loader=loader)
    mem = None
    if memory:
        mem = measure_memory(runs[0].config)
        tick(2)
    sweep = None
    if batch_sizes:
        sweep = batch_size_sweep(batch_sizes, n=n, features=features, lrs=sweep_lrs or [lr], seed=seed,
                                 target_loss=target_loss, reference_lr=lr, reference_updates=runs[0].mini.total_steps,
                                 max_steps=max_steps, device=device, progress=tick)
    return CompareRun(config=config, seeds=seeds, runs=runs, summary=summarize(runs), claims=claim_results(runs),
                      memory=mem, sweep=sweep)
