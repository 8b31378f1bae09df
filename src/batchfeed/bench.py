"""``batchfeed bench``: parse the arguments, run the measurements, print the ratio table and the
targets; with ``--check`` the exit status says whether the targets held."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .argtypes import (OneLineParser, device, directory, non_negative_int, output_file, positive_float,
                       positive_int)
from .gather import gather_profile
from .machine import load_average as _loadavg
from .machine import progress_bar, storage_name
from .targets import NOISE_MARGIN, check_failures, check_targets, disturbed
from .outofcore import OOC_RIVALS, make_files, measure_files, read_profile
from .overlap import OVERLAP_RIVALS, measure_overlap, prefetch_memory
from .throughput import RIVALS, TRAINING_RIVALS, Measurement, device_name, make_data, measure_epochs


#: torch threads while measuring unless --threads says otherwise.
DEFAULT_THREADS = 1
class _Progress:
    """:func:`batchfeed.machine.progress_bar` with the rival being timed as its postfix."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.desc = desc
        self._bar = progress_bar(total, desc, "epoch", enabled)

    def step(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(self.desc, refresh=False)
            self._bar.set_postfix_str(text, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.1f}"


#: The reference columns of a group's table: (header, the rival each row is divided by; a function of the row's rival).
_COLUMNS = {
    "memory": [("x DataLoader", lambda r: "dataloader"), ("/ slice bound", lambda r: "permute_slice"),
               ("/ copy bound", lambda r: "memcpy")],
    "ooc": [("x DataLoader", lambda r: "dataloader_mmap"), ("/ gather bound", lambda r: "batches_memmap"),
            ("/ own batch reads", lambda r: "batches_pread" if r.endswith("pread") else "batches_take"),
            ("/ sequential", lambda r: "sequential_memmap")],
    "overlap": [("/ training alone", lambda r: "in_memory"),
                ("/ not ahead", lambda r: "" if not r.startswith(("prefetch", "serial", "workers")) else
                 "serial_pread" if "pread" in r else "serial_mmap")],
}
_TITLES = {"epoch": "one epoch of batches", "training": "one training epoch (tutorial's model, SGD)",
           "ooc-warm": "one epoch from .npy files, page cache warm",
           "ooc-cold": "one epoch from .npy files, page cache dropped before each timed epoch",
           "overlap-warm": "one training epoch (Linear(F, 2), SGD) fed from .npy files, page cache warm",
           "overlap-cold": "one training epoch (Linear(F, 2), SGD) fed from .npy files, page cache dropped"}


def _group_lines(group: str, dev: str, n: int, f: int, b: int, ms: list[Measurement]) -> list[str]:
    by = {m.rival: m for m in ms}
    columns = _COLUMNS[group.partition("-")[0] if group.startswith(("ooc", "overlap")) else "memory"]
    width = max(40, *(len(m.label) for m in ms))
    if group == "ooc-cold":  # a cold file's sequential bound is reading it, not slicing cached maps
        columns = columns[:-1] + [("/ sequential", lambda r: "sequential_read")]
    lines = [f"{_TITLES[group]}: N={n:,}, F={f} float32, B={b}, device {dev}, best of {len(ms[0].seconds)}",
             f"  {'rival':<{width}} {'samples/s':>11} {'GB/s':>7}" + "".join(f" {h:>{max(13, len(h))}}" for h, _ in columns)]
    for m in ms:
        cells = []
        for header, ref in columns:
            other = by.get(ref(m.rival))
            cells.append(f" {(f'{m.ratio_to(other):.3g}' if other is not None else '-'):>{max(13, len(header))}}")
        lines.append(f"  {m.label:<{width}} {_si(m.samples_per_s):>11} {m.gb_per_s:>7.2f}" + "".join(cells))
    return lines + [""]


def format_table(rows: Iterable[Measurement]) -> str:
    """The ratio table: per configuration, each rival's samples/s and its ratios to the references."""
    rows = list(rows)
    lines = []
    groups: dict[tuple, list[Measurement]] = {}
    for m in rows:
        groups.setdefault((m.group, m.device, m.n, m.features, m.batch_size), []).append(m)
    for key, ms in groups.items():
        lines += _group_lines(*key, ms)
    targets = check_targets(rows)
    broken = disturbed(rows)
    if targets:
        lines.append("targets (ratios measured side by side in this run)")
        for t in targets:
            verdict = ("met" if t.met else f"MISSED by {t.shortfall:.0%}"
                       + (" (within the noise margin)" if t.shortfall <= NOISE_MARGIN else ""))
            lines.append(f"  {t.name}: {t.value:.3g} (target >= {t.target:g}): {verdict}")
    if broken:
        lines.append("")
        lines.append("DISTURBED RUN: these ratios cannot be right, so no ratio of this run should be trusted; rerun "
                     "on a quieter machine (and with --threads 1):")
        lines += [f"  {d}" for d in broken]
    return "\n".join(lines).rstrip() + "\n"


# --- command line --------------------------------------------------------------------------------

def build_parser(prog: str = "batchfeed bench") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Samples/s of one epoch fed by torch's DataLoader, DataLoader + __getitems__, TensorLoader and "
                    "the two bounds (permute + slice, memcpy), on the tutorial's data; prints ratios measured side "
                    "by side in one run (compare ratios, not absolute times, on a shared machine).")
    p.add_argument("--n", type=positive_int, default=None, help="samples (default 1e6; --out-of-core 4e5)")
    p.add_argument("--features", type=positive_int, nargs="+", default=None,
                   help="features F (default 3 256; --out-of-core 64)")
    p.add_argument("--batch-size", type=positive_int, nargs="+", default=None,
                   help="batch sizes (default 32 1024; --out-of-core 256)")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed epochs per rival (default 3); best is reported")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--rivals", nargs="+", choices=list(RIVALS) + list(OOC_RIVALS), default=None,
                   help="rivals to run (default all of the mode's)")
    o = p.add_argument_group("out of core (issue 15): batches read from .npy files")
    o.add_argument("--out-of-core", action="store_true",
                   help="measure feeding from .npy files instead: DataLoader(NpyDataset) and TensorLoader(NpyDataset), "
                        "memmap and preadv, against the batched-gather, random-batch and sequential read bounds")
    o.add_argument("--cache", nargs="+", choices=["warm", "cold"], default=["warm", "cold"],
                   help="page cache before each timed epoch (default: warm and cold; cold drops the files' pages)")
    o.add_argument("--dir", type=directory, default=None,
                   help="where to write the files (default: a temporary folder, removed after); the storage "
                        "under it is what a cold epoch reads, and the report names it")
    o.add_argument("--scale", type=positive_float, metavar="GIB", default=None,
                   help="instead: one training epoch (mini-batch, and full-batch accumulated over the batches) on GIB "
                        "GiB of data written to --dir, under --budget of private memory, page cache dropped: "
                        "samples/s, peak RSS and peak private memory (issue 15, '10 GB for real'); the data is deleted after")
    o.add_argument("--budget", type=positive_int, metavar="MIB", default=256,
                   help="with --scale: the private-memory budget in MiB each epoch runs under (RLIMIT_DATA; default 256)")
    _peer_arguments(o)
    p.add_argument("--training", dest="training", action="store_true", default=True,
                   help="also time one training epoch of the tutorial's model at F=3, B=32 (default); with "
                        "--out-of-core, the tutorial's model trained from the files, with and without reading ahead")
    p.add_argument("--no-training", dest="training", action="store_false", help="skip the training epoch")
    p.add_argument("--train-n", type=positive_int, default=None, help="samples for the training epoch (default --n)")
    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                   help=f"torch intra-op threads while measuring, restored afterwards (default {DEFAULT_THREADS}: "
                        "on a shared 2-core machine torch's own 2 threads made the training loop wait on busy "
                        "cores and printed impossible ratios; pass the core count to measure threading)")
    p.add_argument("--check", action="store_true",  # "%%": argparse %-formats help (a bare % broke --help)
                   help=f"exit 1 if a target ratio is missed by more than the noise margin ({NOISE_MARGIN * 100:.0f}%%) "
                        "or the run was disturbed")
    p.add_argument("--profile", action="store_true",
                   help="also print where the bandwidth goes for each F: memcpy vs chunked copy vs sequential and "
                        "random gathers (gather_profile); with --out-of-core, the cost per batch of the ways to "
                        "read a memory map (read_profile)")
    p.add_argument("--json", type=output_file, metavar="PATH", default=None, help="also write every measurement to PATH as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _peer_arguments(o: Any) -> None:
    o.add_argument("--no-peers", dest="peers", action="store_false", default=True,
                   help="with --out-of-core, skip the peers (litdata, mosaicml-streaming: each converted with its own "
                        "writer, then fed with the page cache warm; a peer not installed is skipped with a line "
                        "naming its extra)")
    o.add_argument("--peer-workers", type=non_negative_int, nargs="+", default=[0, 2], metavar="W",
                   help="the peers' DataLoader worker counts (default 0 2)")


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    """The mode's defaults for what was not given; an in-memory rival asked of --out-of-core (or the
    reverse) is an error naming it."""
    ooc = args.out_of_core
    args.n = args.n or (400_000 if ooc else 1_000_000)
    args.features = args.features or ([64] if ooc else [3, 256])
    args.batch_size = args.batch_size or ([256] if ooc else [32, 1024])
    args.rivals = args.rivals or list(OOC_RIVALS if ooc else RIVALS)
    return args


def _wrong_rivals(args: argparse.Namespace) -> str | None:
    """Why ``--rivals`` does not fit the mode (an in-memory rival with --out-of-core, or the reverse), or None."""
    table = OOC_RIVALS if args.out_of_core else RIVALS
    wrong = [r for r in args.rivals or () if r not in table]
    if not wrong:
        return None
    mode = "--out-of-core" if args.out_of_core else "in memory (without --out-of-core)"
    return f"argument --rivals: {', '.join(wrong)}: not measured {mode}; choose from {', '.join(table)}"


def run(args: argparse.Namespace, out: Any = None) -> list[Measurement]:
    """Run the measurements ``args`` asks for, printing the table to ``out``; returns the rows."""
    out = out or sys.stdout
    args = _defaults(args)
    rows: list[Measurement] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        if args.scale is not None:
            return _run_scale(args, out, rows)
        return _run_ooc(args, out, rows) if args.out_of_core else _run(args, out, rows)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, out: Any, rows: list[Measurement]) -> list[Measurement]:
    print(f"batchfeed bench: torch {torch.__version__}, device {args.device} ({device_name(args.device)}), "
          f"load average at start {_loadavg()}", file=out, flush=True)
    warmup = 1
    total = (len(args.features) * len(args.batch_size) * len(args.rivals)
             + (len(TRAINING_RIVALS) if args.training else 0)) * (args.repeats + warmup)
    bar = _Progress(total, "bench", args.progress)
    profiles: dict[int, dict[str, float]] = {}
    try:
        for f in args.features:
            data = make_data(args.n, f, device=args.device)
            for b in args.batch_size:
                bar.desc = f"F={f} B={b}"
                rows.extend(measure_epochs(data, b, rivals=args.rivals, repeats=args.repeats, warmup=warmup,
                                           on_epoch=bar.step).values())
            if args.profile:
                profiles[f] = gather_profile(data, repeats=args.repeats)
            del data
        if args.training:
            data = make_data(args.train_n or args.n, 3, device=args.device)
            bar.desc = "training F=3 B=32"
            rows.extend(measure_epochs(data, 32, repeats=args.repeats, warmup=warmup, training=True,
                                       on_epoch=bar.step).values())
    finally:
        bar.close()
    print(format_table(rows), file=out, end="")
    for f, prof in profiles.items():
        print(f"\nwhere the bandwidth goes: N={args.n:,}, F={f} float32 features, 8 MiB chunks, {args.device}", file=out)
        ref = prof["memcpy whole"]
        for name, gbs in prof.items():
            print(f"  {name:<45} {gbs:7.2f} GB/s  {gbs / ref:5.2f} x memcpy", file=out)
    print(f"load average at end {_loadavg()} (other processes share these cores: compare ratios, not times)", file=out)
    _write_json(args, rows, {"profiles": profiles})
    return rows


def _write_json(args: argparse.Namespace, rows: list[Measurement], extra: dict[str, Any]) -> None:
    if args.json:
        meta = {"torch": torch.__version__, "device": args.device, "device_name": device_name(args.device),
                "python": platform.python_version(), "argv": sys.argv[1:], **extra.pop("meta", {})}
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": [m.to_dict() for m in rows], **extra,
                       "targets": [asdict(t) | {"met": t.met} for t in check_targets(rows)]}, fh, indent=2)


def _run_ooc(args: argparse.Namespace, out: Any, rows: list[Measurement]) -> list[Measurement]:
    """--out-of-core: the files written once per F (in --dir or a temporary folder), then each
    batch size and cache state measured, rivals interleaved."""
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="batchfeed-ooc-"))
    storage = storage_name(folder)
    print(f"batchfeed bench --out-of-core: torch {torch.__version__}, {device_name('cpu')}, files in {folder} "
          f"on {storage}, load average at start {_loadavg()}", file=out, flush=True)
    warmup = 1
    per_config = len(args.rivals) + (len(OVERLAP_RIVALS) if args.training else 0)
    total = len(args.features) * len(args.batch_size) * len(args.cache) * per_config * (args.repeats + warmup)
    bar = _Progress(total, "bench", args.progress)
    profiles: dict[str, dict[str, float]] = {}
    peer_lines: list[str] = []
    try:
        for f in args.features:
            files = make_files(folder / f"F{f}", args.n, f)
            for b in args.batch_size:
                extra, also, report = _peers(args, files, folder / f"F{f}" / f"peers-B{b}", b, out)
                for cache in args.cache:
                    bar.desc = f"F={f} B={b} {cache}"
                    warm = cache == "warm"  # peers warm only: litdata keeps its chunk mapped (see _peers)
                    rows.extend(measure_files(files, b, cold=not warm, rivals=args.rivals, extra=extra if warm else None,
                                              also_drop=also if warm else (), repeats=args.repeats, warmup=warmup,
                                              on_epoch=bar.step).values())
                    if args.training:
                        bar.desc = f"training F={f} B={b} {cache}"
                        rows.extend(measure_overlap(files, b, cold=cache == "cold", repeats=args.repeats,
                                                    on_epoch=bar.step).values())
                peer_lines += _peer_report(args, f, b, report)
                if args.profile:
                    profiles[f"F={f} B={b}"] = read_profile(files, b, repeats=args.repeats)
                    profiles[f"F={f} B={b} prefetch memory"] = prefetch_memory(files, b)
    finally:
        bar.close()
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)
    print(format_table(rows), file=out, end="")
    for line in peer_lines:
        print(line, file=out)
    for config, prof in profiles.items():
        if config.endswith("prefetch memory"):
            print(f"\nreading ahead, {config.removesuffix(' prefetch memory')}, N={args.n:,}, preadv, 1 MiB reads, a "
                  "loop slower than the reads: peak RSS above prefetch=0 (fresh process each)", file=out)
            for name, mib in prof.items():
                print(f"  {name:<40} {mib:8.2f} MiB", file=out)
            continue
        print(f"\nreading a memory map, {config}, N={args.n:,}: microseconds per batch (best of {args.repeats})", file=out)
        for name, us in prof.items():
            print(f"  {name:<40} {us:8.2f} us", file=out)
    print(f"load average at end {_loadavg()} (other processes share these cores: compare ratios, not times)", file=out)
    _write_json(args, rows, {"meta": {"storage": storage, "folder": str(folder)}, "profiles": profiles})
    return rows


def _peers(args: argparse.Namespace, files: Any, folder: Path, b: int, out: Any) -> tuple[dict, list, dict]:
    """The peers' rivals (batchfeed.peers), converted into ``folder``; none with --no-peers.

    Measured with the page cache warm only: litdata 0.2.76 keeps its chunk file memory-mapped after
    its loader and dataset are gone (``/proc/self/maps`` after ``gc.collect()``), so its pages
    cannot be dropped in this process (``mincore``: 100% resident after the drop)."""
    if not args.peers:
        return {}, [], {}
    if "cold" in args.cache:
        print("peers: page cache warm only (litdata keeps its chunk mapped after its loader is gone, so a drop "
              "leaves it 100% resident: no cold epoch of it can be measured in this process)", file=out)
    from .peers import peer_rivals
    return peer_rivals(files, folder, b, workers=tuple(args.peer_workers), train=args.training,
                       say=lambda line: print(line, file=out, flush=True))


def _peer_report(args: argparse.Namespace, f: int, b: int, report: dict) -> list[str]:
    """The peers' order lines; an epoch that did not yield each sample exactly once goes to ``args.peer_failures``."""
    from .peers import describe
    if not report:
        return []
    for key, r in report.items():
        if not all(q["exactly_once"] for q in r["qualities"]):
            args.peer_failures.append(f"F={f} B={b} {key}: an epoch did not yield each sample exactly once")
    return [f"peers' epochs, F={f} B={b} (order checked in every epoch, page cache warm):", *describe(report), ""]


def _run_scale(args: argparse.Namespace, out: Any, rows: list[Measurement]) -> list[Measurement]:
    """--scale: :func:`batchfeed.outofcore_scale.scale_experiment`, its table and (--json) its runs."""
    from .outofcore_scale import format_scale, scale_experiment

    folder = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    f, b = args.features[0], args.batch_size[0]
    print(f"batchfeed bench --out-of-core --scale {args.scale:g}: torch {torch.__version__}, {device_name('cpu')}, "
          f"files in {folder} on {storage_name(folder)}, F={f}, B={b}, prefetch=4, load average at start {_loadavg()}",
          file=out, flush=True)
    runs = scale_experiment(folder, gib=args.scale, budget=args.budget << 20, features=f, batch_size=b)
    print(format_scale(runs), file=out, end="")
    print(f"load average at end {_loadavg()} (other processes share these cores)", file=out)
    _write_json(args, rows, {"meta": {"storage": storage_name(folder), "folder": str(folder)},
                             "scale": [r.to_dict() for r in runs]})
    return rows


def main(argv: Sequence[str] | None = None, prog: str = "batchfeed bench") -> int:
    """``batchfeed bench``: print the ratio table of one run. Returns the exit status: 0, or
    with ``--check`` 1 when a target is missed beyond the noise margin or the run was disturbed."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    wrong = _wrong_rivals(args)
    if wrong:
        parser.error(wrong)
    if args.scale is not None and not args.out_of_core:
        parser.error("argument --scale: only with --out-of-core (an epoch read from .npy files)")
    if args.scale is not None and args.check:
        parser.error("argument --check: not with --scale (the scale run has no target ratio to check; "
                     "--check applies to the ratio tables of bench and bench --out-of-core)")
    args.peer_failures = []
    rows = run(args)
    if not args.check:
        return 0
    failed = check_failures(rows) + args.peer_failures
    for line in failed:
        print(f"{prog} --check: {line}", file=sys.stderr)
    return 1 if failed else 0
