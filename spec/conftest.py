"""The spec's set-up, wherever it runs (this repository, or the installed package that
``batchfeed conform`` runs): hypothesis profiles, one torch thread, the markers, the global-RNG
guard, and the end-of-run check of the verdicts against the docs."""

import faulthandler
import os
import random
import zlib

import numpy as np
import pytest
import torch

from batchfeed.pytest_plugin import ledger_rows, loader_under_test

from . import profiles, promises

profiles.register()

MARKERS = [
    "claim(id): ties a test to a tutorial claim in the claims ledger (batchfeed.claims)",
    "cuda: needs a CUDA device (skipped with the reason when none is present)",
    "slow: long-running; deselect with -m 'not slow'",
    "distributed: starts several processes with torch.distributed",
    "uses_global_rng: the test itself uses a global RNG on purpose (exempt from the RNG-leak guard)",
]

_rng_key = pytest.StashKey[tuple]()
_randomly_key = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    """Markers; one intra-op torch thread unless BATCHFEED_TEST_THREADS says otherwise (the
    spec's models are tiny: on a loaded 2-core machine a Linear(3, 2) backward pass took 20 ms
    with torch's default 2 threads and 0.3 ms with one; benchmark runs, --benchmark-only, keep
    torch's default so throughput is measured as users get it).

    With pytest-randomly: keep its shuffled order, turn off its reseeding of the global RNGs
    before every test phase. The spec takes no randomness from global RNGs (the guard below
    checks it), and a reseed between phases would erase what a library drew in setup."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    # torchdata 0.11.0's StatefulDataLoader calls a deprecated torch API on every construction.
    config.addinivalue_line("filterwarnings", "ignore:'set_vital' is deprecated:UserWarning")
    if not config.getoption("benchmark_only", default=False):
        torch.set_num_threads(int(os.environ.get("BATCHFEED_TEST_THREADS", "1")))
    if getattr(config.option, "randomly_reset_seed", False):  # the option exists only with pytest-randomly loaded
        config.option.randomly_reset_seed = False
        config.stash[_randomly_key] = True


def pytest_report_header(config: pytest.Config) -> list[str]:
    if config.stash.get(_randomly_key, False):
        return ["batchfeed: pytest-randomly: order shuffled; its per-test reseeding is off in this suite "
                "(the RNG guard requires that no test draws from a global RNG)"]
    return []
_RNGS = ("torch", "numpy", "random")


def _snapshot() -> tuple:
    return torch.random.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same(name: str, before, after) -> bool:
    if name == "torch":
        return torch.equal(before, after)
    if name == "numpy":
        return np.array_equal(before, after)
    return before == after


#: Seconds a test may run (setup, call, teardown) before the process ends with every thread's
#: traceback; unset or 0: no limit. The mutation tool sets it so that a mutant that deadlocks
#: reader threads is caught in seconds, not after mutmut's timeout of minutes.
HANG_SECONDS = float(os.environ.get("BATCHFEED_HANG_SECONDS") or 0)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    if HANG_SECONDS > 0:
        faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=2)  # fd 2: sys.stderr may be a capture stream
    try:
        return (yield)
    finally:
        if HANG_SECONDS > 0:
            faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):
    """Before any fixture of the test is set up (module- and session-scoped ones included), move
    torch's, numpy's and Python's global RNGs to a state of their own and remember it.

    The move makes a library that reseeds a global RNG (``torch.manual_seed(k)``) visible: the
    state after it would equal a fixed seed's, not this one. Seeded from the test id, so runs
    repeat.
    """
    if item.get_closest_marker("uses_global_rng") is None:
        seed = zlib.crc32(item.nodeid.encode())
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        item.stash[_rng_key] = _snapshot()
        loader_under_test(item.config).built_without_generator = 0
    return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    """After the test and every fixture torn down with it: fail if a global RNG moved.

    batchfeed, and the loader under test when it was given a ``generator``, must take every
    random choice from the generator or seed it was given. A loader built without one may
    draw from torch's global RNG, as DataLoader does (its base seed and shuffle order), but
    never from numpy's or Python's. Tests that use a global RNG on purpose are marked
    ``uses_global_rng``.
    """
    result = yield
    before = item.stash.get(_rng_key, None)
    if before is not None:
        after = _snapshot()
        exempt = {"torch"} if loader_under_test(item.config).built_without_generator else set()
        leaked = [name for name, b, a in zip(_RNGS, before, after) if name not in exempt and not _same(name, b, a)]
        assert not leaked, (f"{item.nodeid} advanced or reseeded the global RNG of: {', '.join(leaked)} "
                            "(use a generator, or mark the test uses_global_rng if that is its point)")
    return result


# --- the run's verdicts against the ones the docs promise --------------------------------------

_promises_key = pytest.StashKey[tuple]()


def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    """In the process that received every report (pytest-xdist's controller too): fail the run
    when a verdict it decided differs from docs/claims.md and README.md (spec/promises.py)."""
    config = session.config
    if hasattr(config, "workerinput") or not (promises.DOCS.exists() and promises.README.exists()):
        return
    under_test = loader_under_test(config)
    device = config.getoption("--device") or __import__("os").environ.get("BATCHFEED_DEVICE") or "cpu"
    why, broken = promises.broken_promises(ledger_rows(config), under_test.spec, device,
                                           promises.DOCS.read_text(), promises.README.read_text())
    config.stash[_promises_key] = (why, broken)
    if broken and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    why, broken = config.stash.get(_promises_key, (None, []))
    if broken:
        terminalreporter.write_sep("=", "verdicts differ from docs/claims.md and README.md", red=True)
        for line in broken:
            terminalreporter.write_line(line)
        terminalreporter.write_line("if the change is meant, regenerate docs/claims.md "
                                    "(pytest spec/ --claims-report=docs/claims.md) and update README.md's list")
