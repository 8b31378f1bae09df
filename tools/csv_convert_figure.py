#!/usr/bin/env python3
"""The figure in docs/datasets.md, "CSV files": conversion rate and peak RSS of convert_csv on a
~200 MB CSV, in a fresh process, with the machine's load average.

    PYTHONPATH=src:. python tools/csv_convert_figure.py [--blocks 160] [--dir /tmp] [--chunk-rows N]

The CSV is spec/test_convert.py's ``write_big_csv``: 2000-row blocks (an id, a quoted text field
with a comma, 32 float32 values written as Python floats, an integer label), 1.3 MB each; 160
blocks are 208 MB. The child converts the 32 float columns and the label (the id and the text are
skipped), is started through a small launcher (see the spec: a child's ru_maxrss otherwise
includes its parent's), and reports ru_maxrss and its RSS before converting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spec.test_convert import FEATURES, convert_in_fresh_process, write_big_csv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=160, help="2000-row blocks (default 160: 208 MB)")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where to write the CSV and the .npy files")
    p.add_argument("--chunk-rows", type=int, default=None, help="convert_csv's chunk_rows (default its own)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        src = Path(d) / "big.csv"
        size = write_big_csv(src, args.blocks)
        load_before = os.getloadavg()
        got = convert_in_fresh_process([src], args.chunk_rows)
        load_after = os.getloadavg()
        out = Path(f"{src}.X.npy").stat().st_size + Path(f"{src}.y.npy").stat().st_size
    rows, seconds, mib = got["rows"][0], got["seconds"][0], 2**20
    print(f"CSV {size / 1e6:.1f} MB, {rows} rows x {FEATURES + 3} columns ({FEATURES} features + label converted), "
          f"chunk_rows={args.chunk_rows or 'default'}; .npy written: {out / 1e6:.1f} MB")
    print(f"conversion: {seconds:.2f} s = {size / 1e6 / seconds:.1f} MB/s, {rows / seconds:,.0f} rows/s, "
          f"{rows * (FEATURES + 1) / seconds / 1e6:.2f} M fields parsed/s")
    print(f"peak RSS (ru_maxrss): {got['peaks'][0] / mib:.1f} MiB; RSS before converting (Python, numpy, torch): "
          f"{got['before'] / mib:.1f} MiB; rise {(got['peaks'][0] - got['before']) / mib:.1f} MiB")
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}; "
          f"after: {', '.join(f'{x:.2f}' for x in load_after)}; CPUs: {os.cpu_count()}")


if __name__ == "__main__":
    main()
