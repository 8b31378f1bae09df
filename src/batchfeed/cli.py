"""``batchfeed`` command line: argument parsing and printing only; experiments live in
:mod:`batchfeed.experiments`, rendering in :mod:`batchfeed.report`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .argtypes import (
    OneLineParser,
    device,
    list_of,
    loader,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
)
from .experiments import run_compare, total_work
from .loaders import DEFAULT_LOADER
from .machine import progress_bar

__all__ = ["main"]

#: ``--batch-sizes`` given without a value: these below N, and N (the tutorial's 1000).
DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 1000)
#: torch threads for ``compare`` unless --threads says otherwise (see its help).
DEFAULT_THREADS = 1


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="batchfeed", description="Full-batch vs mini-batch gradient descent, measured.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    c = sub.add_parser("compare", help="the tutorial's experiment: full-batch vs mini-batch GD, per epoch",
                       description="Run the tutorial's two training cases from the same data and initial weights "
                                   "and report, per epoch, each one's full-data loss, accuracy, updates, samples "
                                   "and training time, and its peak memory; full-batch GD at equal updates and at "
                                   "equal wall time; and the verdicts on claims C2, C3 and C15 computed from this "
                                   "run. How to read it: docs/compare.md.")
    c.add_argument("--n", type=positive_int, default=1000, help="number of samples (default 1000)")
    c.add_argument("--features", type=positive_int, default=3, help="features per sample (default 3)")
    c.add_argument("--batch-size", type=positive_int, default=32, help="mini-batch size (default 32)")
    c.add_argument("--epochs", type=positive_int, default=5, help="epochs (default 5)")
    c.add_argument("--lr", type=positive_float, default=0.1, help="SGD learning rate (default 0.1)")
    c.add_argument("--seed", type=non_negative_int, default=0, help="seed for data, weights and shuffling (default 0)")
    c.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
    c.add_argument("--no-shuffle", action="store_true", help="feed mini-batches in dataset order")
    c.add_argument("--loader", type=loader, default=DEFAULT_LOADER, metavar="MODULE:CALLABLE",
                   help=f"the loader that feeds mini-batch GD, called with DataLoader's keywords (default "
                        f"{DEFAULT_LOADER}; e.g. batchfeed:TensorLoader)")
    c.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                   help=f"torch intra-op CPU threads for the run (default {DEFAULT_THREADS}: these models are a few "
                        "hundred floats, and more threads only wait for each other: on 2 busy cores (load 5.6) the "
                        "tutorial's mini-batch training took 0.26 s with 1 thread and 7.6 s with torch's own 2)")
    c.add_argument("--repeats", type=positive_int, default=1, metavar="K",
                   help="run seeds seed..seed+K-1; report mean±std and how many seeds agree with each verdict")
    c.add_argument("--no-memory", action="store_true",
                   help="skip the peak-memory measurement (two fresh processes, a few seconds)")
    _add_sweep_and_output(c)
    c.set_defaults(parser=c)
    sub.add_parser("conform", add_help=False, help="the conformance specification against a loader "
                                                   "(batchfeed conform --help)")
    sub.add_parser("bench", add_help=False, help="throughput: DataLoader vs TensorLoader vs the bounds, as ratios "
                                                 "measured in one run (batchfeed bench --help)")
    sub.add_parser("convert", add_help=False, help="a CSV file to .npy features and labels for NpyDataset, streaming "
                                                   "(batchfeed convert --help)")
    return parser


def _add_sweep_and_output(c: argparse.ArgumentParser) -> None:
    """``compare``'s batch-size sweep and output options."""
    s = c.add_argument_group("batch-size sweep (McCandlish et al. 2018)")
    s.add_argument("--batch-sizes", type=list_of(positive_int, "positive integers"), nargs="?",
                   const=(), metavar="B1,B2,...",
                   help="steps and samples to reach a target loss for each batch size, the fitted B_noise and "
                        "B_simple from per-sample gradients (alone: " + ",".join(map(str, DEFAULT_BATCH_SIZES[:-1]))
                        + " and N, those below N)")
    s.add_argument("--sweep-lrs", type=list_of(positive_float, "positive numbers"), metavar="LR1,LR2,...",
                   help="learning rates tried for each batch size, the best kept (default: --lr only, as the tutorial)")
    s.add_argument("--target-loss", type=positive_float,
                   help="the sweep's target full-data loss (default: 1.1 x full-batch GD's loss after as many "
                        "updates as the mini-batch run took, at --lr)")
    s.add_argument("--max-steps", type=positive_int, default=10_000,
                   help="the sweep's cap on steps per batch size (default 10000); beyond it: not reached")
    o = c.add_argument_group("output")
    o.add_argument("--plot", type=output_file, metavar="OUT.png",
                   help="write loss vs epoch, vs updates and vs wall time (and the sweep) as a PNG (needs matplotlib)")
    o.add_argument("--json", type=output_file, metavar="OUT.json",
                   help="write everything, machine-readable, with the versions and the device")
    o.add_argument("--quiet", action="store_true", help="no progress bar and no notes on stderr")


def _progress_bar(total: int, quiet: bool):
    """A tqdm bar on stderr, shown only after 2 s, only on a terminal, never with --quiet."""
    return progress_bar(total, "batchfeed compare", "step", enabled=not quiet)


def _check_compare(sub: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What one argument alone cannot tell: sizes against --n, and a plot format matplotlib writes."""
    if args.batch_size > args.n:
        sub.error(f"argument --batch-size: batch size {args.batch_size} exceeds --n {args.n} "
                  "(one batch would hold the whole data: both methods would be full-batch GD)")
    if args.batch_sizes == ():
        args.batch_sizes = sorted({b for b in DEFAULT_BATCH_SIZES if b < args.n} | {args.n})
    if args.batch_sizes:
        too_big = [b for b in args.batch_sizes if b > args.n]
        if too_big:
            sub.error(f"argument --batch-sizes: batch size {too_big[0]} exceeds --n {args.n}")
    if args.plot is not None:
        try:
            from matplotlib.backend_bases import FigureCanvasBase
        except ImportError:
            sub.error("argument --plot: needs matplotlib (pip install 'batchfeed[plot]')")
        formats = FigureCanvasBase.get_supported_filetypes()
        if args.plot.suffix.lower().lstrip(".") not in formats:
            sub.error(f"argument --plot: cannot tell the image format of {str(args.plot)!r} from its suffix; "
                      f"use one of .{', .'.join(sorted(formats))}")


def _run(args: argparse.Namespace) -> Any:
    """run_compare on --threads torch threads (restored after), with the progress bar."""
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    bar = _progress_bar(total_work(args.repeats, not args.no_memory, args.batch_sizes), args.quiet)
    try:
        return run_compare(n=args.n, features=args.features, batch_size=args.batch_size, epochs=args.epochs,
                           lr=args.lr, seed=args.seed, repeats=args.repeats, shuffle=not args.no_shuffle,
                           device=args.device, memory=not args.no_memory, batch_sizes=args.batch_sizes,
                           sweep_lrs=args.sweep_lrs, target_loss=args.target_loss, max_steps=args.max_steps,
                           loader=args.loader, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
        torch.set_num_threads(threads)


def _write_outputs(sub: argparse.ArgumentParser, args: argparse.Namespace, run: Any, argv: list[str]) -> None:
    from . import report

    for option, path, write in (("--plot", args.plot, lambda p: report.plot(run, p)),
                                ("--json", args.json, lambda p: report.write_json(run, p, argv))):
        if path is None:
            continue
        try:
            write(path)
        except OSError as exc:  # checked before the run, but a disk can still fill up
            sub.error(f"argument {option}: cannot write {str(path)!r}: {exc.strerror or exc}")
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from . import bench

        return bench.main(argv[1:], prog="batchfeed bench")
    if argv[:1] == ["conform"]:
        from . import conform

        return conform.main(argv[1:], prog="batchfeed conform")
    if argv[:1] == ["convert"]:
        from . import convert

        return convert.main(argv[1:], prog="batchfeed convert")
    args = parser.parse_args(argv)
    if args.command != "compare":  # pragma: no cover - argparse requires a known command
        raise AssertionError(f"unhandled command {args.command!r}")
    sub = args.parser  # errors found after parsing are reported by the subcommand's parser, like the rest
    _check_compare(sub, args)
    run = _run(args)
    from . import report

    try:
        print(report.format_report(run), flush=True)
    except BrokenPipeError:  # `batchfeed compare | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    _write_outputs(sub, args, run, argv)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
