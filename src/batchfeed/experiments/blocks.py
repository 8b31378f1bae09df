"""What block shuffle costs in convergence (issue 15): the C11 experiment (label-sorted data)
and the tutorial's experiment, fed by :class:`~batchfeed.BlockShuffleSampler` for a range of
block sizes, beside no shuffling and a full shuffle, over seeds.

Each run is an existing experiment with its loader swapped: :func:`order_pattern_experiment`
(C11) and :func:`compare` (its mini-batch run), both training with ``training.train``; the
seed fixes the data, the initial weights and the sampler's generator. What its speed buys
is measured by :mod:`batchfeed.blockread`; ``python -m batchfeed.blockread`` prints both.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from torch.utils.data import DataLoader

from .._checks import check_positive_int
from ..samplers import BlockShuffleSampler
from ..training import History
from .compare import compare
from .order import order_pattern_experiment

__all__ = ["BLOCK_SIZES", "EXPERIMENTS", "BlockRow", "BlockTable", "block_convergence", "block_loader_factory"]

#: The block sizes the docs report: 1 (a full shuffle through the sampler) to 4096 rows.
BLOCK_SIZES = (1, 4, 16, 64, 256, 1024, 4096)
#: Experiment key -> what it is.
EXPERIMENTS = {
    "sorted": "label-sorted data (the C11 experiment)",
    "tutorial": "the tutorial's data, in its own (random) order",
}


def block_loader_factory(block_size: int, buffer_size: int | None = None, loader: Callable[..., Any] = DataLoader
                         ) -> Callable[..., Any]:
    """A ``loader_factory`` (DataLoader's keywords) that orders the samples with a BlockShuffleSampler.

    ``shuffle`` is ignored: the sampler is the order. The loader and the sampler share the
    experiment's seeded generator (the loader draws its base seed from it first, as DataLoader does).
    """
    check_positive_int("block_size", block_size)

    def factory(dataset: Any, *, batch_size: int, shuffle: bool = True, generator: Any = None, **kw: Any) -> Any:
        sampler = BlockShuffleSampler(dataset, block_size, buffer_size, generator=generator)
        return loader(dataset, batch_size=batch_size, sampler=sampler, generator=generator, **kw)
    return factory


@dataclass
class BlockRow:
    """One order in one experiment: the final full-data loss and accuracy of each seed.

    ``order``: ``"none"`` (no shuffling), ``"full"`` (``shuffle=True``) or ``"block"``.
    """

    experiment: str
    order: str
    block_size: int | None
    buffer_size: int | None
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        if self.order == "none":
            return "no shuffle"
        if self.order == "full":
            return "full shuffle (shuffle=True)"
        return f"block {self.block_size}, buffer {self.buffer_size}"

    def mean_std(self, values: Sequence[float]) -> tuple[float, float]:
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


@dataclass
class BlockTable:
    """:func:`block_convergence`'s result: a row per (experiment, order), seeds in the same order in every row."""

    config: dict
    rows: list[BlockRow]

    def row(self, experiment: str, order: str, block_size: int | None = None) -> BlockRow:
        return next(r for r in self.rows if r.experiment == experiment and r.order == order
                    and (order != "block" or r.block_size == block_size))

    def wins(self, row: BlockRow, against: str) -> int:
        """Seeds in which ``row`` ended with a lower full-data loss than the ``against`` order (``"none"``/``"full"``)."""
        other = self.row(row.experiment, against)
        return sum(a < b for a, b in zip(row.losses, other.losses))

    def to_dict(self) -> dict:
        return {"config": dict(self.config), "rows": [r.to_dict() for r in self.rows]}

    def format(self) -> str:
        """Markdown: per experiment, mean ± std over seeds, and the seeds each order beat no shuffle / full shuffle in."""
        seeds = len(self.config["seeds"])
        lines = []
        for exp, what in EXPERIMENTS.items():
            rows = [r for r in self.rows if r.experiment == exp]
            if not rows:
                continue
            lines += [(f"{what}, N={self.config['n'][exp]}, B={self.config['batch_size']}, {self.config['epochs']} epochs, "
                      f"lr={self.config['lr']}, {seeds} seeds (mean ± std over seeds):"), "",
                      ("| order | final full-data loss | loss - full shuffle's (same seed) | final accuracy | "
                      "lower loss than no shuffle | lower loss than full shuffle |"), "|---|---:|---:|---:|---:|---:|"]
            full = self.row(exp, "full")
            for r in rows:
                (lm, ls), (am, as_) = r.mean_std(r.losses), r.mean_std(r.accuracies)
                dm, ds = r.mean_std([a - b for a, b in zip(r.losses, full.losses)])
                beats = [f"{self.wins(r, o)}/{seeds}" if r.order != o else "-" for o in ("none", "full")]
                lines.append(f"| {r.label} | {lm:.4f} ± {ls:.4f} | {dm:+.4f} ± {ds:.4f} | {am:.4f} ± {as_:.4f} | "
                             f"{beats[0]} | {beats[1]} |")
            lines.append("")
        return "\n".join(lines)


def _run(experiment: str, n: int, seed: int, factory: Callable[..., Any], shuffle: bool,
         common: dict) -> History:
    kw = dict(common, n=n, seed=seed, shuffle=shuffle, loader_factory=factory)
    if experiment == "sorted":
        return order_pattern_experiment(**kw)
    return compare(**kw, equal_updates=False).mini


def block_convergence(
    block_sizes: Sequence[int] = BLOCK_SIZES,
    *,
    seeds: Sequence[int] = range(10),
    n: int | dict[str, int] = 1000,
    buffer_size: int | None = None,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    experiments: Sequence[str] = tuple(EXPERIMENTS),
    loader: Callable[..., Any] = DataLoader,
    progress: Callable[[int], None] | None = None,
) -> BlockTable:
    """The final full-data loss and accuracy of mini-batch training fed in each order, per seed.

    For each experiment (``"sorted"``: :func:`order_pattern_experiment`; ``"tutorial"``: the
    mini-batch run of :func:`compare`) and seed: no shuffling, ``shuffle=True``, and a
    :class:`BlockShuffleSampler` of each block size (``buffer_size``: default one block), all
    fed through ``loader`` (DataLoader, or TensorLoader: the same batches, faster). ``n`` may differ per experiment (``{"sorted": ..., "tutorial": ...}``).
    """
    unknown = [e for e in experiments if e not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; known: {', '.join(EXPERIMENTS)}")
    sizes = {e: (n[e] if isinstance(n, dict) else n) for e in experiments}
    common = dict(batch_size=batch_size, epochs=epochs, lr=lr)
    tick = progress or (lambda _k: None)
    rows = []
    for exp in experiments:
        orders = [("none", None, False), ("full", None, True)] + [("block", b, True) for b in block_sizes]
        for order, b, shuffle in orders:
            row = BlockRow(exp, order, b, None if b is None else (buffer_size or b))
            factory = loader if b is None else block_loader_factory(b, buffer_size, loader)
            for s in seeds:
                h = _run(exp, sizes[exp], s, factory, shuffle, common)
                row.losses.append(h.final_loss)
                row.accuracies.append(h.epoch_accuracy[-1])
                tick(1)
            rows.append(row)
    config = dict(block_sizes=list(block_sizes), seeds=list(seeds), n=sizes, buffer_size=buffer_size,
                  batch_size=batch_size, epochs=epochs, lr=lr, loader=getattr(loader, "__qualname__", str(loader)))
    return BlockTable(config, rows)
