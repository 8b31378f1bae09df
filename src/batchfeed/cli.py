"""``batchfeed`` command line: argument parsing and printing only; experiments live in
:mod:`batchfeed.experiments`."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence

import torch

from .experiments import Comparison, compare

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """Bad arguments end with status 2 and ONE line naming the argument (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _device(text: str) -> str:
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r} requested, but torch sees no CUDA device")
    return str(dev)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batchfeed", description="Full-batch vs mini-batch gradient descent, measured.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    c = sub.add_parser("compare", help="the tutorial's experiment: full-batch vs mini-batch GD, per epoch",
                       description="Run the tutorial's two training cases from the same data and initial weights "
                                   "and print the full-data loss per epoch for each.")
    c.add_argument("--n", type=_positive_int, default=1000, help="number of samples (default 1000)")
    c.add_argument("--features", type=_positive_int, default=3, help="features per sample (default 3)")
    c.add_argument("--batch-size", type=_positive_int, default=32, help="mini-batch size (default 32)")
    c.add_argument("--epochs", type=_positive_int, default=5, help="epochs (default 5)")
    c.add_argument("--lr", type=_positive_float, default=0.1, help="SGD learning rate (default 0.1)")
    c.add_argument("--seed", type=_non_negative_int, default=0, help="seed for data, weights and shuffling (default 0)")
    c.add_argument("--device", type=_device, default="cpu", help="cpu or cuda (default cpu)")
    c.add_argument("--no-shuffle", action="store_true", help="feed mini-batches in dataset order")
    return parser


def format_comparison(c: Comparison) -> str:
    """The per-epoch table: full-data loss and updates so far for each method."""
    cfg = c.config
    lines = [
        f"batchfeed compare: N={cfg['n']}, features={cfg['features']}, batch size {cfg['batch_size']}, "
        f"lr {cfg['lr']}, {cfg['epochs']} epochs, seed {cfg['seed']}, "
        f"{'shuffled' if cfg['shuffle'] else 'unshuffled'}, device {cfg['device']}",
        "",
        f"{'epoch':>5}  {'full-batch loss':>15}  {'updates':>7}  {'mini-batch loss':>15}  {'updates':>7}",
    ]
    fu, mu = c.full.updates_so_far, c.mini.updates_so_far
    for e in range(len(c.full.epoch_loss)):
        lines.append(f"{e:>5}  {c.full.epoch_loss[e]:>15.4f}  {fu[e]:>7}  {c.mini.epoch_loss[e]:>15.4f}  {mu[e]:>7}")
    if c.full_equal_updates.epoch_loss:
        lines += [
            "",
            f"equal updates: full-batch after {c.full_equal_updates.total_steps} updates: "
            f"loss {c.full_equal_updates.final_loss:.4f} (mini-batch after {c.mini.total_steps}: {c.mini.final_loss:.4f})",
        ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "compare":
        result = compare(n=args.n, features=args.features, batch_size=args.batch_size, epochs=args.epochs,
                         lr=args.lr, seed=args.seed, shuffle=not args.no_shuffle, device=args.device)
        print(format_comparison(result))
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover - argparse requires one


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
