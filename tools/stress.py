#!/usr/bin/env python3
"""The stress check of issue 25: the timed claims (C12, C13) under a load that flipped C13's verdict.

The load is the one that reproduced the flip on this project's 2-core machine: six processes,
each alternating a busy spell (a Python spin loop) and an idle spell (a sleep), every spell of
random length between 5 and 300 ms, seeded. (Steady CPU burners on both cores did not flip it:
the two timed loops slowed alike.) Each burner stops by itself at its deadline, and the tool
kills any still running when it ends, on an exception or Ctrl-C too.

Under that load it runs, in fresh processes, the C12 and C13 claim tests ``--repeat`` times and
``pytest spec/`` once (``--no-spec`` skips it), each with ``--claims-report`` to a JSON file, and
reports each run's exit status and C12/C13 verdicts and figures. It exits 0 when every run
exited 0 and, for every run where C13 was decided, its step-rate ratio stayed within
``--tolerance`` (15%) of the same ratio measured with no load, first, by the same command.

    python tools/stress.py                      # 6 claim-test runs and pytest spec/ under load
    python tools/stress.py --repeat 3 --no-spec # quicker
    python tools/stress.py --burn 60            # only the load, 60 s (to try a command by hand)
    tox -e stress

It loads the machine for everyone on it: run it when a result is needed, not in a loop.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIM_TESTS = ["spec/conformance/test_parallel.py::test_claim_workers_speed_up_training_when_samples_cost_work",
               "spec/test_loader.py::test_claim_feeds_sequentially_and_efficiently"]
BURNERS, SPELL_MS = 6, (5, 300)


def burn(seed: int, seconds: float) -> None:
    """Alternate busy and idle spells of random length in ``SPELL_MS`` until ``seconds`` have passed."""
    rng, end = random.Random(seed), time.monotonic() + seconds
    while time.monotonic() < end:
        busy_until = time.monotonic() + rng.uniform(*SPELL_MS) / 1e3
        while time.monotonic() < busy_until:
            pass
        time.sleep(rng.uniform(*SPELL_MS) / 1e3)


@contextlib.contextmanager
def load(seed: int, seconds: float, burners: int = BURNERS) -> Iterator[list[subprocess.Popen]]:
    """``burners`` burner processes (seeds ``seed``, ``seed + 1``, ...) for at most ``seconds``; all
    of them are killed on leaving the block."""
    procs = []
    try:
        for k in range(burners):
            procs.append(subprocess.Popen([sys.executable, __file__, "--burner", str(seed + k), str(seconds)]))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def run_pytest(args: list[str], report: Path) -> tuple[int, float, dict]:
    """``pytest ARGS --claims-report=REPORT`` in a fresh process: exit status, seconds, C12/C13 rows."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider",
                           f"--claims-report={report}"], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    rows = {}
    if report.exists():
        rows = {r["id"]: r for r in json.loads(report.read_text())["claims"] if r["id"] in ("C12", "C13")}
    if proc.returncode:
        print(proc.stdout[-3000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    return proc.returncode, seconds, rows


def c13_ratio(rows: dict) -> float | None:
    f = rows.get("C13", {}).get("figures", {})
    if "dataloader_loop_samples_per_s" not in f:
        return None
    return f["dataloader_loop_samples_per_s"] / f["permute_slice_loop_samples_per_s"]


def c12_speedup(rows: dict) -> float | None:
    return rows.get("C12", {}).get("figures", {}).get("latency_speedup_w2")


def show(label: str, rc: int, seconds: float, rows: dict) -> None:
    ratio, speedup = c13_ratio(rows), c12_speedup(rows)
    print(f"{label}: exit {rc}, {seconds:.0f} s, load average {os.getloadavg()[0]:.1f}; "
          f"C13 step ratio {'-' if ratio is None else f'{ratio:.1%}'}, "
          f"C12 latency speed-up {'-' if speedup is None else f'x{speedup:.2f}'}", flush=True)
    for cid in ("C12", "C13"):
        if cid in rows:
            print(f"    {cid}: {rows[cid]['verdict'][:110]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=6, help="runs of the C12 and C13 claim tests under load (6)")
    p.add_argument("--no-spec", action="store_true", help="skip the one pytest spec/ run under load")
    p.add_argument("--seed", type=int, default=0, help="seed of the first burner's spells (0)")
    p.add_argument("--max-seconds", type=float, default=900, help="the load stops after this long (900)")
    p.add_argument("--tolerance", type=float, default=0.15, help="C13's ratio may move this far from unloaded (0.15)")
    p.add_argument("--burn", type=float, default=None, metavar="S", help="only run the load for S seconds")
    p.add_argument("--burner", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.burner:
        burn(int(a.burner[0]), float(a.burner[1]))
        return 0
    if a.burn is not None:
        with load(a.seed, a.burn) as procs:
            for proc in procs:
                proc.wait()
        return 0
    return _check(a)


def _check(a: argparse.Namespace) -> int:
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        rc, s, rows = run_pytest(CLAIM_TESTS, Path(tmp) / "quiet.json")
        show("no load", rc, s, rows)
        quiet = c13_ratio(rows)
        if rc:
            failures.append(f"the unloaded run of the claim tests exited {rc}")
        runs = [(f"under load, claim tests, run {k + 1}/{a.repeat}", CLAIM_TESTS) for k in range(a.repeat)]
        runs += [] if a.no_spec else [("under load, pytest spec/", ["spec/"])]
        with load(a.seed, a.max_seconds):
            for k, (label, args) in enumerate(runs):
                rc, s, rows = run_pytest(args, Path(tmp) / f"run{k}.json")
                show(label, rc, s, rows)
                ratio = c13_ratio(rows)
                if rc:
                    failures.append(f"{label}: exit {rc}")
                if ratio is not None and quiet is not None and abs(ratio / quiet - 1) > a.tolerance:
                    failures.append(f"{label}: C13's ratio {ratio:.1%} is more than {a.tolerance:.0%} from "
                                    f"{quiet:.1%} unloaded")
    print("stress check: " + ("passed" if not failures else "FAILED\n  " + "\n  ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
