"""pytest plugin for tools/mutation_torch.py: mutmut's coverage of torch's data code run in
DataLoader's worker processes.

mutmut 3 picks the tests of a mutant from the functions each test called, recorded by its
trampolines during the stats run ("stats" mutant) in the pytest process. Functions that run only
in a worker process (``_worker_loop``, the fetchers there, ``collate`` called from a worker)
record their hits in the worker, a forked child whose memory is lost when it exits: mutmut
would report their mutants "no tests". Here a worker appends each function it calls (once per
process) to a file, and before each test's teardown the pytest process adds the file's names
to the test's hits, where mutmut's StatsCollector reads them.

Loaded with ``-p torchcopy_hits`` (copied into the scratch folder under that name); does
nothing outside mutmut's stats run.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_MAIN_PID = os.getpid()
_FILE = Path(tempfile.gettempdir()) / f"torchcopy-hits-{_MAIN_PID}.txt"
_seen_here: set[str] = set()
_seen_pid = [0]


def _stats_run() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def _install() -> None:
    from mutmut.mutation import trampoline

    original = trampoline.record_trampoline_hit

    def record(name: str, caller: str | None = None) -> None:
        pid = os.getpid()
        if pid == _MAIN_PID:
            return original(name, caller)
        if _seen_pid[0] != pid:  # a new worker: forked with its parent's set
            _seen_pid[0] = pid
            _seen_here.clear()
        if name not in _seen_here:
            _seen_here.add(name)
            with open(_FILE, "a") as f:
                f.write(name + "\n")
        return None

    trampoline.record_trampoline_hit = record


def pytest_configure(config: pytest.Config) -> None:
    if _stats_run():
        _FILE.unlink(missing_ok=True)
        _install()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem):
    if _stats_run() and _FILE.exists():
        from mutmut.state import state

        names = set(_FILE.read_text().split())
        _FILE.unlink(missing_ok=True)
        state()._stats.update(names)
    return (yield)
