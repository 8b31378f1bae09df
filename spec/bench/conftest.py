"""Shared pieces of the benchmarks: data built once per session, a ledger of the measured
rates, and the ratio table printed at the end of ``pytest spec/bench --benchmark-only``.

Sizes: ``BATCHFEED_BENCH_N`` (default 1e6) samples per epoch, ``BATCHFEED_BENCH_TRAIN_N``
(default: the same) for the training epoch. Compare ratios from one run, not absolute
times: these machines are shared and noisy.
"""

from __future__ import annotations

import os

import pytest

from batchfeed.bench import format_table
from batchfeed.targets import check_failures
from batchfeed.throughput import (
    RIVALS,
    TRAINING_RIVALS,
    BenchData,
    Measurement,
    device_name,
    make_data,
)


def _size(name: str, default: str) -> int:
    text = os.environ.get(name, default)
    try:
        value = int(float(text))
    except ValueError:
        raise pytest.UsageError(f"{name}={text!r}: expected a positive integer such as 1e6") from None
    if value < 1:
        raise pytest.UsageError(f"{name}={text!r}: expected a positive integer such as 1e6")
    return value


N = _size("BATCHFEED_BENCH_N", "1e6")
TRAIN_N = _size("BATCHFEED_BENCH_TRAIN_N", str(N))

_ledger_key = pytest.StashKey[list[Measurement]]()


@pytest.fixture(scope="session")
def bench_data():
    """``bench_data(n, features, device)``: the tutorial's data, built once per session and size."""
    cache: dict[tuple[int, int, str], BenchData] = {}

    def get(n: int, features: int, device: str) -> BenchData:
        key = (n, features, device)
        if key not in cache:
            cache[key] = make_data(n, features, device=device)
        return cache[key]
    return get


def _ratio(m: Measurement, ledger: list[Measurement], rival: str) -> float | None:
    for ref in ledger:
        if (ref.group, ref.device, ref.n, ref.features, ref.batch_size, ref.rival) == (
                m.group, m.device, m.n, m.features, m.batch_size, rival):
            return m.ratio_to(ref)
    return None


@pytest.fixture
def record_rate(request: pytest.FixtureRequest):
    """``record_rate(benchmark, rival, data, batch_size, samples, training=False)``: extra_info and the ledger.

    extra_info gets samples/s, GB/s and the ratios to the references (the two bounds, the
    DataLoader) measured earlier in this session; the tests run the references first.
    """
    ledger = request.config.stash.setdefault(_ledger_key, [])

    def record(benchmark, rival: str, data: BenchData, batch_size: int, samples: int, training: bool = False) -> None:
        if benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return
        labels = TRAINING_RIVALS if training else RIVALS
        m = Measurement("training" if training else "epoch", rival, labels[rival], data.n, data.features, batch_size,
                        str(data.device), data.epoch_bytes, samples, list(benchmark.stats.stats.data))
        ledger.append(m)
        info = benchmark.extra_info
        info.update(device_name=device_name(data.device), n=data.n, features=data.features, batch_size=batch_size,
                    samples_per_s=round(m.samples_per_s), GB_per_s=round(m.gb_per_s, 3))
        for ref, key in (("permute_slice", "ratio_to_permute_slice_bound"), ("memcpy", "ratio_to_memcpy_bound"),
                         ("dataloader", "ratio_to_dataloader")):
            r = _ratio(m, ledger, ref)
            if r is not None and ref != rival:
                info[key] = round(r, 4)
    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    ledger = config.stash.get(_ledger_key, [])
    if not ledger:
        return
    devices = sorted({m.device for m in ledger})
    terminalreporter.write_sep("=", "batchfeed: ratio table (best round of each benchmark, this run)")
    terminalreporter.write_line("devices: " + "; ".join(f"{d} = {device_name(d)}" for d in devices))
    for line in format_table(ledger).splitlines():
        terminalreporter.write_line(line)
    failures = check_failures(ledger)
    if failures:
        terminalreporter.write_sep("=", "batchfeed: targets missed beyond the noise margin, or a disturbed run", red=True)
        for line in failures:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus) -> None:
    """The benchmark run fails (exit 1) when a target is missed beyond the noise margin or a ratio is impossible."""
    ledger = session.config.stash.get(_ledger_key, [])
    if ledger and check_failures(ledger) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
