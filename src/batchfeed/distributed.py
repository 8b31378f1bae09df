"""The tutorial's training with DistributedDataParallel, one process per rank.

Run it with torchrun (gloo on CPU; ``--standalone`` picks a free port)::

    torchrun --standalone --nproc-per-node 2 -m batchfeed.distributed --steps 50 --out ddp.pt

``--batch-size`` is the *global* batch: each of the R ranks takes ``batch_size / R``
samples per step from its :class:`~torch.utils.data.distributed.DistributedSampler` shard,
and DDP averages the gradients. Because the sampler deals out the epoch's permutation
round-robin, the R local batches of step t are exactly samples ``[t*B, (t+1)*B)`` of that
permutation: the same global batch a single process takes with
``DistributedSampler(num_replicas=1)``. So after the same number of steps the weights
equal single-process training's up to float rounding (averaging R local means instead of
one mean reorders the additions).

Without torchrun (no ``RANK`` in the environment) the same command trains in one process,
the reference: ``python -m batchfeed.distributed --steps 50 --out single.pt``.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ._checks import check_positive_float, check_positive_int
from .argtypes import OneLineParser, non_negative_int, positive_float, positive_int
from .datasets import PairDataset
from .setup import build
from .training import Budget, train

__all__ = ["DDPConfig", "main", "train_ddp", "train_single"]


@dataclass(frozen=True)
class DDPConfig:
    """A run: the tutorial's data (``make_seed_data(n, features, seed)``), model and SGD(lr).

    ``batch_size`` is global; ``steps`` counts optimizer steps over all epochs. Each epoch
    drops its last partial global batch (``drop_last``), so every step averages exactly
    ``batch_size`` samples in both the distributed and the single-process run.
    """

    n: int = 1000
    features: int = 3
    batch_size: int = 32
    steps: int = 50
    lr: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n", "features", "batch_size", "steps"):
            check_positive_int(name, getattr(self, name))
        check_positive_float("lr", self.lr)
        if self.batch_size > self.n:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed n ({self.n}): no full batch per epoch")


def _run(config: DDPConfig, model: nn.Module, sampler: DistributedSampler, local_batch: int) -> int:
    def sharded(dataset: PairDataset, *, batch_size: int, shuffle: bool, generator: torch.Generator) -> DataLoader:
        # the generator keeps the global RNG untouched; the sampler shards and shuffles
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, generator=generator)

    loader = build(n=config.n, features=config.features, seed=config.seed, batch_size=local_batch, shuffle=False,
                   loader_factory=sharded).loader
    h = train(model, loader, optimizer=torch.optim.SGD(model.parameters(), lr=config.lr),
              budget=Budget(steps=config.steps),
              before_epoch=lambda e: sampler.set_epoch(e - 1))  # without set_epoch every epoch repeats epoch 0
    return h.epochs


def train_single(config: DDPConfig) -> dict[str, torch.Tensor]:
    """The single-process reference: the same global batches in the same order; returns the weights."""
    sampler = DistributedSampler(range(config.n), num_replicas=1, rank=0, shuffle=True, seed=config.seed, drop_last=True)
    model = build(n=config.n, features=config.features, seed=config.seed).model
    _run(config, model, sampler, config.batch_size)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train_ddp(config: DDPConfig) -> dict[str, torch.Tensor]:
    """Train in this process as one rank of an initialised process group; returns the weights.

    Raises:
        ValueError: the global batch is not a multiple of the world size.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    if config.batch_size % world:
        raise ValueError(f"--batch-size {config.batch_size} (global) must be a multiple of the world size {world}")
    sampler = DistributedSampler(range(config.n), num_replicas=world, rank=rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    model = nn.parallel.DistributedDataParallel(build(n=config.n, features=config.features, seed=config.seed).model)
    _run(config, model, sampler, config.batch_size // world)
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``torchrun --nproc-per-node R -m batchfeed.distributed``; without torchrun, single-process."""
    p = OneLineParser(prog="torchrun --standalone --nproc-per-node R -m batchfeed.distributed",
                                description="The tutorial's model trained with DDP (gloo, CPU), or in one process "
                                            "without torchrun; both take the same global batches.")
    d = DDPConfig()
    # Not "--n": torchrun's own parser sees every option after the module name and stops
    # with "ambiguous option: --n could match --nnodes, --nproc-per-node, ...".
    p.add_argument("--samples", type=positive_int, default=d.n, help="samples, N (default %(default)s)")
    p.add_argument("--features", type=positive_int, default=d.features, help="features per sample (default %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="global batch size, split evenly over the ranks (default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps (default %(default)s)")
    p.add_argument("--lr", type=positive_float, default=d.lr, help="SGD learning rate (default %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="data, weights and shuffling seed (default %(default)s)")
    p.add_argument("--backend", default="gloo", help="torch.distributed backend (default %(default)s)")
    p.add_argument("--out", type=Path, default=None, help="rank 0 writes the final state_dict here (torch.save)")
    a = p.parse_args(argv)
    try:
        config = DDPConfig(n=a.samples, features=a.features, batch_size=a.batch_size, steps=a.steps, lr=a.lr, seed=a.seed)
    except ValueError as exc:
        p.error(str(exc))
    start = time.perf_counter()
    if "RANK" not in os.environ:
        weights, world, rank = train_single(config), 1, 0
    else:
        dist.init_process_group(a.backend)
        try:
            world, rank = dist.get_world_size(), dist.get_rank()
            try:
                weights = train_ddp(config)
            except ValueError as exc:
                if rank == 0:
                    p.error(str(exc))
                return 2
            # Free DDP's reducer (and the gloo work it holds) and let every rank arrive
            # before the group goes: without this, 1 run in 6 of 3 ranks ended with a rank
            # aborting in teardown ("terminate called without an active exception", -6).
            gc.collect()
            dist.barrier()
        finally:
            dist.destroy_process_group()
    if rank == 0:
        if a.out is not None:
            torch.save(weights, a.out)
        print(f"{'DDP' if world > 1 else 'single process'}: world size {world}, {config.steps} steps of global batch "
              f"{config.batch_size}, {time.perf_counter() - start:.2f} s" + (f"; weights written to {a.out}" if a.out else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
