"""What block shuffle buys (issue 15): an epoch of batches read from ``.npy`` files in
block-shuffled order against the fully shuffled order, page cache dropped (and warm), same run.

Every rival is ``TensorLoader(NpyDataset(X, y, mmap=...), batch_size=B, sampler=BlockShuffleSampler(
n, block, buffer, generator=g))``, one per block size and back end; block 1 is the fully
shuffled order read through the same sampler path, so the ratio to it is the order's effect
alone. TensorLoader reads each batch's rows sorted, a memory-map ``take`` or ``preadv`` calls
coalescing neighbours (docs/datasets.md): rows from few blocks come in few runs of the file.
The timing, the cold cache (close, ``fsync`` + ``POSIX_FADV_DONTNEED``, ``mincore`` check) and
the references (``TensorLoader`` with ``shuffle=True``, the sequential read of the files) are
:func:`batchfeed.outofcore.measure_files`'; the convergence cost is
:func:`batchfeed.experiments.blocks.block_convergence`'s.

``python -m batchfeed.blockread`` runs both and prints the tables docs/benchmarks.md reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from .argtypes import OneLineParser, non_negative_int, output_file, positive_int
from .experiments.blocks import BLOCK_SIZES, EXPERIMENTS, block_convergence
from .loader import TensorLoader
from .machine import load_average, storage_name
from .outofcore import OocFiles, make_files, measure_files
from .samplers import BlockShuffleSampler
from .sources import NpyDataset
from .throughput import Measurement, device_name

__all__ = ["block_rivals", "format_reads", "main", "measure_block_reads", "speedups"]

BACKENDS = {"mmap": True, "pread": False}
#: outofcore's rivals measured beside the block rivals: the shuffle=True path and the read bound.
REFERENCES = {"mmap": ["tensorloader_mmap"], "pread": ["tensorloader_pread"], None: ["sequential_read"]}


#: How a rival feeds the order: ``sampler`` = ``TensorLoader(ds, sampler=...)`` (one read per
#: batch, what a user gets today); ``chunked`` = the epoch's order drawn first, then
#: ``TensorLoader(Subset(ds, order))``: one read per 1 MiB of whole batches, as ``shuffle=True`` reads.
MODES = ("sampler", "chunked")


def _key(mode: str, block: int, backend: str) -> str:
    return f"{mode}-{block}-{backend}"


def _epoch_function(mode: str, ds: NpyDataset, batch_size: int, sampler: BlockShuffleSampler,
                    seed: int) -> Callable[[], int]:
    if mode == "sampler":
        loader = TensorLoader(ds, batch_size=batch_size, sampler=sampler, generator=torch.Generator().manual_seed(seed))
        return lambda: sum(int(yb.shape[0]) for _xb, yb in loader)

    def chunked() -> int:
        order = list(sampler)
        loader = TensorLoader(Subset(ds, order), batch_size=batch_size, generator=torch.Generator())
        return sum(int(yb.shape[0]) for _xb, yb in loader)
    return chunked


def block_rivals(files: OocFiles, batch_size: int, block_sizes: Sequence[int], *, buffer_size: int | None = None,
                 backends: Sequence[str] = tuple(BACKENDS), modes: Sequence[str] = MODES, seed: int = 0
                 ) -> dict[str, tuple[str, Callable[[], None], Callable[[], int]]]:
    """``{key: (label, close, epoch)}``: one rival per mode, back end and block size, each over its own NpyDataset."""
    out = {}
    for mode in modes:
        for backend in backends:
            for b in block_sizes:
                ds = NpyDataset(*files.paths, mmap=BACKENDS[backend])
                sampler = BlockShuffleSampler(files.n, b, buffer_size, generator=torch.Generator().manual_seed(seed))
                what = "full shuffle" if b == 1 else f"block {b}, buffer {sampler.buffer_size}"
                out[_key(mode, b, backend)] = (f"{backend}, {mode}: {what}", ds.close,
                                               _epoch_function(mode, ds, batch_size, sampler, seed))
    return out


def measure_block_reads(files: OocFiles, batch_size: int, block_sizes: Sequence[int] = BLOCK_SIZES, *, cold: bool,
                        buffer_size: int | None = None, backends: Sequence[str] = tuple(BACKENDS),
                        modes: Sequence[str] = MODES, repeats: int = 3, warmup: int = 1, seed: int = 0, on_epoch: Callable[[str], None] | None = None) -> dict[str, Measurement]:
    """One epoch of every block rival and reference, ``repeats`` times interleaved (cold: pages dropped before each)."""
    sizes = sorted({1, *block_sizes})
    refs = [r for k in (*backends, None) for r in REFERENCES[k]]
    return measure_files(files, batch_size, cold=cold, rivals=refs, repeats=repeats, warmup=warmup, seed=seed,
                         on_epoch=on_epoch,
                         extra=block_rivals(files, batch_size, sizes, buffer_size=buffer_size, backends=backends,
                                            modes=modes, seed=seed))


def speedups(rows: dict[str, Measurement], backend: str, mode: str = "sampler") -> dict[int, float]:
    """Block size -> samples/s over the fully shuffled order's (block 1), for one back end and mode."""
    base = rows[_key(mode, 1, backend)]
    found = (k.split("-") for k in rows if k.count("-") == 2)
    return {int(b): rows[_key(m, int(b), be)].ratio_to(base) for m, b, be in found if m == mode and be == backend}


def format_reads(rows: dict[str, Measurement], backends: Sequence[str], modes: Sequence[str] = MODES) -> str:
    """Markdown: per back end and mode, each block size's samples/s, x the full shuffle, / the sequential read."""
    any_row = next(iter(rows.values()))
    seq = rows["sequential_read"]
    resident = max((max(m.resident) for m in rows.values() if m.resident), default=None)
    lines = [f"{any_row.group}: N={any_row.n:,}, F={any_row.features} float32 + int64 label, B={any_row.batch_size}, "
             f"best of {len(any_row.seconds)} epochs" + ("" if resident is None else
                                                          f"; pages resident before a timed epoch: at most {resident:.3f}"),
             "", "| back end | reads | order | samples/s | x full shuffle | / sequential read |",
             "|---|---|---|---:|---:|---:|"]
    for backend in backends:
        ref = rows[REFERENCES[backend][0]]
        for mode in modes:
            base = rows[_key(mode, 1, backend)]
            if mode == "chunked":
                lines.append(f"| {backend} | chunked | shuffle=True (TensorLoader's own) | "
                             f"{ref.samples_per_s / 1e3:,.0f} k | {ref.ratio_to(base):.2f} | {ref.ratio_to(seq):.3f} |")
            for b, ratio in sorted(speedups(rows, backend, mode).items()):
                m = rows[_key(mode, b, backend)]
                lines.append(f"| {backend} | {mode} | {m.label.split(': ', 1)[1]} | {m.samples_per_s / 1e3:,.0f} k | "
                             f"**{ratio:.2f}** | {m.ratio_to(seq):.3f} |")
    lines.append(f"| - | - | sequential read of the files (bound) | {seq.samples_per_s / 1e3:,.0f} k | - | 1 |")
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m batchfeed.blockread", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=positive_int, default=400_000, help="rows of the files (default 400,000)")
    p.add_argument("--features", type=positive_int, default=64, help="features per row (default 64)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="batch size (default 256)")
    p.add_argument("--blocks", type=positive_int, nargs="+", default=list(BLOCK_SIZES),
                   help=f"block sizes in rows (default {' '.join(map(str, BLOCK_SIZES))}; 1 is the full shuffle)")
    p.add_argument("--buffer", type=positive_int, default=None, help="shuffle buffer (default: one block)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed epochs per rival (default 3); best is reported")
    p.add_argument("--cache", nargs="+", choices=["cold", "warm"], default=["cold", "warm"],
                   help="page cache before each timed epoch (default: cold and warm)")
    p.add_argument("--dir", default=None, help="where to write the files, created if missing (default: a temporary "
                                                 "folder, removed after)")
    p.add_argument("--seeds", type=non_negative_int, default=10,
                   help="seeds of the convergence experiments (default 10; 0: skip them)")
    p.add_argument("--conv-n", type=positive_int, nargs="+", default=[1000, 16384],
                   help="N of the convergence experiments (default 1000 16384)")
    p.add_argument("--experiments", nargs="+", choices=list(EXPERIMENTS), default=list(EXPERIMENTS),
                   help="which convergence experiments (default all)")
    p.add_argument("--json", type=output_file, default=None, help="also write everything to this JSON file")
    return p


def _reads(args: argparse.Namespace, out: Any) -> list[Measurement]:
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="batchfeed-blocks-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"files in {folder} on {storage_name(folder)}", file=out, flush=True)
    rows: list[Measurement] = []
    try:
        files = make_files(folder, args.n, args.features)
        for cache in args.cache:
            got = measure_block_reads(files, args.batch_size, args.blocks, cold=cache == "cold",
                                      buffer_size=args.buffer, repeats=args.repeats)
            print(format_reads(got, list(BACKENDS)), file=out, flush=True)
            rows += got.values()
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    """Print the read speed-ups (cold, warm) and the convergence tables; ``--json`` keeps everything."""
    args = _parser().parse_args(argv)
    out = out or sys.stdout
    torch.set_num_threads(1)
    print(f"python -m batchfeed.blockread {' '.join(argv if argv is not None else sys.argv[1:])}: torch "
          f"{torch.__version__}, {device_name('cpu')}, Python {platform.python_version()}, "
          f"load average at start {load_average()}", file=out, flush=True)
    rows = _reads(args, out) if args.cache else []
    tables = []
    for n in args.conv_n if args.seeds else []:
        table = block_convergence(args.blocks, seeds=range(args.seeds), n=n, buffer_size=args.buffer, loader=TensorLoader,
                                  experiments=args.experiments)
        print(table.format(), file=out, flush=True)
        tables.append(table.to_dict())
    print(f"load average at end {load_average()}", file=out)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"argv": list(argv if argv is not None else sys.argv[1:]), "reads": [m.to_dict() for m in rows],
                       "convergence": tables}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
