"""``batchfeed convert``: a CSV file to ``.npy`` features and labels (:func:`batchfeed.convert_csv`),
with a progress bar; bad input ends with status 2 and one line naming the file and the line."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .argtypes import OneLineParser, output_file, positive_int
from .machine import progress_bar
from .sources.csv_convert import CsvConversion, convert_csv, numpy_dtype

__all__ = ["build_parser", "main"]


def column(text: str) -> int | str:
    """A column: an integer is a 0-based index (negative from the end), anything else a header name."""
    return int(text) if re.fullmatch(r"\s*[-+]?\d+\s*", text) else text.strip()


def columns(text: str) -> list[int | str]:
    parts = text.split(",")
    if not text.strip() or any(not p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of column names or indices, got {text!r}")
    return [column(p) for p in parts]


def dtype(text: str) -> np.dtype:
    try:
        return numpy_dtype("dtype", text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"must be a float or integer dtype (float32, int64, uint8, ...), got {text!r}") from None


def delimiter(text: str) -> str:
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " ", "pipe": "|"}
    value = named.get(text, text)
    if len(value) != 1 or value in "\r\n\"":
        raise argparse.ArgumentTypeError(f"must be one character other than a quote or line end (or tab), got {text!r}")
    return value


def build_parser(prog: str = "batchfeed convert") -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, description="Convert a CSV file (quoted fields, a header, text columns) to .npy "
                                             "features and labels in one streaming pass, memory independent of the "
                                             "file's size, for TensorLoader(NpyDataset(FEATURES, LABELS)). Columns "
                                             "in errors are counted from 1. See docs/datasets.md, 'CSV files'.")
    p.add_argument("csv", type=Path, metavar="CSV", help="the CSV file")
    p.add_argument("features", type=output_file, metavar="FEATURES.npy", help="the (n, f) features to write")
    p.add_argument("labels", type=output_file, nargs="?", metavar="LABELS.npy",
                   help="the (n,) labels to write; without it every selected column is a feature")
    p.add_argument("--label-column", type=column, metavar="COL",
                   help="the label's column: a header name, or a 0-based index (negative from the end); default the last")
    p.add_argument("--feature-columns", type=columns, metavar="COL,COL,...",
                   help="the features' columns in the order to write them (default every column but the label); "
                        "columns not named are not parsed and may hold text (a list starting with a negative index: "
                        "--feature-columns=-1,2)")
    p.add_argument("--no-header", action="store_true", help="the first row is data, not column names")
    p.add_argument("--delimiter", type=delimiter, default=",", help="field delimiter (default ','; 'tab' for TSV)")
    p.add_argument("--dtype", type=dtype, default=np.dtype(np.float32), help="features' dtype (default float32)")
    p.add_argument("--label-dtype", type=dtype, default=np.dtype(np.int64), help="labels' dtype (default int64)")
    p.add_argument("--missing", type=float, metavar="VALUE",
                   help="the value of an empty feature field, e.g. nan (default: an empty field is an error)")
    p.add_argument("--encoding", default="utf-8-sig", help="text encoding (default utf-8-sig: UTF-8, a BOM skipped)")
    p.add_argument("--chunk-rows", type=positive_int, metavar="N",
                   help="rows parsed at once (default 65,536 fields' worth); memory grows with it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _summary(run: CsvConversion, seconds: float) -> str:
    def described(path: Path) -> str:
        arr = np.load(path, mmap_mode="r")
        return f"{path} {arr.shape} {arr.dtype}"

    wrote = described(run.features) + (f" and {described(run.labels)}" if run.labels is not None else "")
    mb = run.bytes_read / 1e6
    return (f"wrote {wrote}: {run.rows} rows from {run.source} ({mb:.1f} MB) in {seconds:.1f} s "
            f"({mb / max(seconds, 1e-9):.1f} MB/s)")


def main(argv: Sequence[str] | None = None, prog: str = "batchfeed convert") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.label_column is not None and args.labels is None:
        parser.error("argument --label-column: no LABELS.npy to write the label to")
    size = args.csv.stat().st_size if args.csv.is_file() else 0
    bar = progress_bar(size, prog, "B", enabled=not args.quiet, unit_scale=True)
    start = time.perf_counter()
    try:
        run = convert_csv(args.csv, args.features, args.labels, label_column=args.label_column,
                          feature_columns=args.feature_columns, header=not args.no_header, delimiter=args.delimiter,
                          dtype=args.dtype, label_dtype=args.label_dtype, missing=args.missing, encoding=args.encoding,
                          chunk_rows=args.chunk_rows, progress=bar.update if bar is not None else None)
    except (ValueError, TypeError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    print(_summary(run, time.perf_counter() - start), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog="python -m batchfeed.convert"))
