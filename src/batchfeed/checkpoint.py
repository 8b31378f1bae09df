"""Training that stops at any step and continues in a new process, bit for bit.

A checkpoint holds what decides the rest of the run: the model's weights, the optimizer's
state (SGD momentum buffers here), the loader's state (where it is in which shuffled
epoch), the step count and the run's configuration. Continuing from it in a fresh process
ends with exactly the weights of the uninterrupted run, on CPU.

The loader must have ``state_dict()`` / ``load_state_dict()``: batchfeed's
:class:`~batchfeed.loader.TensorLoader` (``loader="batchfeed"``) or torchdata's
``StatefulDataLoader`` (``loader="torchdata"``, needs ``pip install torchdata``).

Command line (one process stops, another continues)::

    python -m batchfeed.checkpoint --steps 100 --stop-at 40 --checkpoint run.pt
    python -m batchfeed.checkpoint --resume run.pt --out weights.pt
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._checks import check_positive_float, check_positive_int
from .argtypes import OneLineParser, non_negative_int, positive_float, positive_int
from .datasets import PairDataset
from .setup import build
from .training import Budget, StepInfo, Stop
from .training import train as train_loop

__all__ = ["LOADERS", "RunConfig", "load_checkpoint", "main", "make_stateful_loader", "save_checkpoint", "train"]

LOADERS = ("batchfeed", "torchdata")
FORMAT = "batchfeed.checkpoint/1"


@dataclass(frozen=True)
class RunConfig:
    """One training run: the tutorial's data and model, SGD with momentum, a shuffled loader.

    Momentum gives the optimizer a state, so a checkpoint that forgot it would show.
    """

    n: int = 1000
    features: int = 3
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    seed: int = 0
    steps: int = 100
    loader: str = "batchfeed"

    def __post_init__(self) -> None:
        for name in ("n", "features", "batch_size", "steps"):
            check_positive_int(name, getattr(self, name))
        check_positive_float("lr", self.lr)
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.loader not in LOADERS:
            raise ValueError(f"loader must be one of {', '.join(LOADERS)}, got {self.loader!r}")


def make_stateful_loader(dataset: PairDataset, *, batch_size: int, seed: int, loader: str = "batchfeed") -> Any:
    """A shuffled, resumable loader over ``dataset``, its order fixed by ``seed``.

    ``"torchdata"`` gives the sampler a generator of its own: with the loader's
    ``generator`` shared by sampler and iterator (``shuffle=True, generator=g``), torchdata
    0.11 resumes the saved epoch right but the epochs after it differently (see
    spec/conformance/test_resume.py, ``SDL_SHARED_GENERATOR``).
    """
    if loader == "batchfeed":
        from .loader import TensorLoader

        return TensorLoader(dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    if loader == "torchdata":
        try:
            from torchdata.stateful_dataloader import StatefulDataLoader
            from torchdata.stateful_dataloader.sampler import RandomSampler
        except ImportError as exc:
            raise ImportError(f"loader='torchdata' needs torchdata (pip install torchdata): {exc}") from exc
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        return StatefulDataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                  generator=torch.Generator().manual_seed(seed + 1))
    raise ValueError(f"loader must be one of {', '.join(LOADERS)}, got {loader!r}")


def _build(config: RunConfig) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    def stateful(dataset: PairDataset, *, batch_size: int, shuffle: bool, generator: torch.Generator) -> Any:
        return make_stateful_loader(dataset, batch_size=batch_size, seed=generator.initial_seed(), loader=config.loader)

    _, _, model, loader = build(n=config.n, features=config.features, seed=config.seed, batch_size=config.batch_size,
                                loader_factory=stateful)
    return model, torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum), loader


def save_checkpoint(path: str | os.PathLike, *, config: RunConfig, step: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer, loader: Any) -> None:
    """Write everything the rest of the run depends on to ``path`` (``torch.save``).

    Written to a temporary file and renamed, so a crash mid-write leaves the old checkpoint.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "config": asdict(config), "step": step, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "loader": loader.state_dict()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs).

    Raises:
        ValueError: ``path`` is not a batchfeed checkpoint.
    """
    ckpt = torch.load(path, weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not a batchfeed checkpoint (expected format {FORMAT!r})")
    return ckpt


def train(
    config: RunConfig | None = None,
    *,
    stop_at: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    restore: Sequence[str] = ("model", "optimizer", "loader"),
) -> tuple[nn.Module, int]:
    """Train for ``config.steps`` optimizer steps; returns ``(model, steps taken so far)``.

    Args:
        config: the run (ignored with ``resume``: the checkpoint's own is used).
        stop_at: after this many steps, write ``checkpoint`` and return.
        checkpoint: where :func:`save_checkpoint` writes at ``stop_at``.
        resume: a checkpoint to continue from.
        restore: which parts of the checkpoint to restore (all, normally; the spec leaves one
            out to show that it matters).

    Raises:
        ValueError: ``stop_at`` without ``checkpoint``, or out of ``1..steps``; a loader that
            yields no batch.
    """
    if resume is not None:
        ckpt = load_checkpoint(resume)
        names = {f.name for f in fields(RunConfig)}
        config = RunConfig(**{k: v for k, v in ckpt["config"].items() if k in names})
    config = config or RunConfig()
    if stop_at is not None:
        if checkpoint is None:
            raise ValueError("stop_at needs a checkpoint path to write to")
        if isinstance(stop_at, bool) or not isinstance(stop_at, int) or not 1 <= stop_at <= config.steps:
            raise ValueError(f"stop_at must be an integer in 1..{config.steps}, got {stop_at!r}")
    model, opt, loader = _build(config)
    if len(loader) == 0:
        raise ValueError(f"the loader yields no batch (n={config.n}, batch_size={config.batch_size})")
    step = 0
    if resume is not None:
        step = int(ckpt["step"])
        if "model" in restore:
            model.load_state_dict(ckpt["model"])
        if "optimizer" in restore:
            opt.load_state_dict(ckpt["optimizer"])
        if "loader" in restore:
            loader.load_state_dict(ckpt["loader"])
    done = {"step": step}

    def count(info: StepInfo) -> None:
        done["step"] = step + info.global_step
        if done["step"] == stop_at:
            save_checkpoint(checkpoint, config=config, step=done["step"], model=model, optimizer=opt, loader=loader)
            raise Stop

    # after a resume, the first pass over the loader is the rest of the saved epoch
    train_loop(model, loader, optimizer=opt, budget=Budget(steps=config.steps - step), on_step=count)
    return model, done["step"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m batchfeed.checkpoint``: train, optionally stop at a step, or continue a checkpoint."""
    p = OneLineParser(prog="python -m batchfeed.checkpoint", description=__doc__.split("\n\n")[0])
    d = RunConfig()
    p.add_argument("--n", type=positive_int, default=d.n, help="samples (default %(default)s)")
    p.add_argument("--features", type=positive_int, default=d.features)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--seed", type=non_negative_int, default=d.seed)
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps in all (default %(default)s)")
    p.add_argument("--loader", choices=LOADERS, default=d.loader)
    p.add_argument("--stop-at", type=int, default=None, help="write --checkpoint after this many steps and exit")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file written at --stop-at")
    p.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint (its config is used)")
    p.add_argument("--out", type=Path, default=None, help="write the final model state_dict here (torch.save)")
    a = p.parse_args(argv)
    try:
        config = RunConfig(n=a.n, features=a.features, batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                           seed=a.seed, steps=a.steps, loader=a.loader)
        model, step = train(config, stop_at=a.stop_at, checkpoint=a.checkpoint, resume=a.resume)
    except (ValueError, ImportError, OSError) as exc:
        p.error(str(exc))
    if a.out is not None:
        torch.save(model.state_dict(), a.out)
    wrote = [f"checkpoint {a.checkpoint}" if a.stop_at is not None and step == a.stop_at else "",
             f"weights {a.out}" if a.out is not None else ""]
    print(f"{step} steps done" + "".join(f"; wrote {w}" for w in wrote if w))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
