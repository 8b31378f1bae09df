"""Peak memory of a piece of work, measured in a fresh subprocess, and the one reader of
``/proc/self/status`` (:func:`proc_status`).

:func:`peak_memory` runs ``fn(*args, **kwargs)`` in a new Python process and returns its
peak resident set size (``VmHWM`` from ``/proc/self/status``, which counts every page the
process touched, tensor storage included; ``tracemalloc`` sees only Python's allocator and
misses tensor storage) and, when the work used CUDA, ``torch.cuda.max_memory_allocated``.
:func:`peak_memory_series` runs several calls in one process, resetting the high-water
mark between them (``/proc/self/clear_refs``), to pay Python's and torch's start-up once.

A call can run under a memory budget: ``data_limit=B`` sets ``RLIMIT_DATA`` to the private
memory the process already has plus ``B`` bytes for the length of the call. That limit
charges what can really exhaust memory (heap, anonymous maps: tensors, arrays) and not
clean file-backed pages (a memory-mapped file's pages are page cache, dropped under
pressure), nor address space merely reserved. Running out of it raises ``MemoryError`` in
the call (torch's ``can't allocate memory`` RuntimeError counts as one), which is reported
in ``PeakMemory.error``, not raised. Linux only for the budget and per-call reset.

The memory workloads and experiments measured with it (full-batch step, mini-batch epoch,
accumulated gradient; slopes over N, the budget) are in :mod:`batchfeed.experiments.scaling`;
the out-of-core epoch under a budget in :mod:`batchfeed.outofcore_scale`.
"""

from __future__ import annotations

import gc
import os
import pickle
import re
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Job",
    "MeasurementError",
    "PeakMemory",
    "peak_memory",
    "peak_memory_series",
    "proc_status",
]


class MeasurementError(RuntimeError):
    """The measured work raised (other than running out of memory) or the subprocess died; the message carries its traceback."""


@dataclass(frozen=True)
class PeakMemory:
    """One measured call.

    Attributes:
        peak_rss: bytes, the process's peak resident set size during the call (it includes
            Python's and torch's own few hundred MB: compare calls, or fit slopes).
        start_rss: bytes resident just before the call.
        cuda_max_allocated: bytes, ``torch.cuda.max_memory_allocated()`` over the call, or
            None when the call did not use CUDA.
        value: what the call returned (None if it ran out of memory).
        error: ``"MemoryError: ..."`` if the call ran out of memory, else None.
        data_limit: the budget in bytes the call ran under, or None.
    """

    peak_rss: int
    start_rss: int
    cuda_max_allocated: int | None
    value: Any
    error: str | None
    data_limit: int | None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rss_increase(self) -> int:
        """Bytes the peak rose above the resident set at the start of the call."""
        return self.peak_rss - self.start_rss


@dataclass(frozen=True)
class Job:
    """One call for :func:`peak_memory_series`: ``fn(*args, **kwargs)``, optionally under ``data_limit`` bytes."""

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    data_limit: int | None = None


# --- the subprocess ---------------------------------------------------------------------

_STATUS_FIELD = re.compile(r"^(\w+):\s+(\d+) kB$", re.M)


def proc_status(*keys: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` in bytes (``VmHWM``, ``VmRSS``, ``VmData``, ``RssAnon``, ...):
    those of ``keys`` the kernel reports; none where there is no such file (not Linux)."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return {}
    found = dict(_STATUS_FIELD.findall(text))
    return {k: int(found[k]) * 1024 for k in keys if k in found}


def _status(key: str) -> int | None:
    return proc_status(key).get(key)


def _peak_rss() -> int:
    v = _status("VmHWM")
    if v is not None:
        return v
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in msg or "Cannot allocate memory" in msg
                                              or "out of memory" in msg.lower())


def _run_job(job: Job) -> dict:
    import resource

    import torch

    gc.collect()
    _malloc_trim()
    cuda_before = torch.cuda.is_initialized()
    if cuda_before:
        torch.cuda.reset_peak_memory_stats()
    _reset_peak()
    start = _status("VmRSS") or _peak_rss()
    old = None
    if job.data_limit is not None:
        used = _status("VmData")
        if used is None:
            raise MeasurementError("data_limit needs Linux (/proc/self/status VmData and RLIMIT_DATA)")
        old = resource.getrlimit(resource.RLIMIT_DATA)
        resource.setrlimit(resource.RLIMIT_DATA, (used + int(job.data_limit), old[1]))
    value, error = None, None
    try:
        value = job.fn(*job.args, **job.kwargs)
    except BaseException as exc:  # noqa: BLE001 - classified below, the rest re-raised
        if not _out_of_memory(exc):
            raise
        error = f"MemoryError: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    finally:
        if old is not None:
            resource.setrlimit(resource.RLIMIT_DATA, old)
    peak = _peak_rss()
    cuda = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_initialized() else None
    return {"peak_rss": peak, "start_rss": start, "cuda_max_allocated": cuda, "value": value, "error": error,
            "data_limit": job.data_limit}


def _child_main() -> None:
    """Entry point of the measuring subprocess: ``argv = [jobs.pkl, results.pkl]``."""
    import torch

    # One intra-op thread: a tiny model's steps are then not at the mercy of spinning
    # thread pools on a loaded machine, and no pool is created mid-measurement.
    torch.set_num_threads(1)
    jobs_path, out_path = sys.argv[1:3]
    with open(jobs_path, "rb") as f:
        jobs: list[Job] = pickle.load(f)
    results: list[dict] = []
    try:
        for job in jobs:
            results.append(_run_job(job))
        payload: dict = {"results": results}
    except BaseException:  # noqa: BLE001 - sent back to the parent, which raises it
        payload = {"results": results, "exception": traceback.format_exc()}
    with open(out_path, "wb") as f:
        pickle.dump(payload, f)


def _spawn(jobs: list[Job], timeout: float) -> list[PeakMemory]:
    for job in jobs:
        try:
            pickle.dumps(job.fn)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise TypeError(f"peak_memory needs an importable module-level function, got {job.fn!r}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="batchfeed-measure-") as d:
        jobs_path, out_path = os.path.join(d, "jobs.pkl"), os.path.join(d, "results.pkl")
        with open(jobs_path, "wb") as f:
            pickle.dump(jobs, f)
        cmd = [sys.executable, "-c", "from batchfeed.measure import _child_main; _child_main()", jobs_path, out_path]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise MeasurementError(f"measured work did not finish within {timeout} s") from exc
        if not os.path.exists(out_path):
            raise MeasurementError(f"measuring subprocess exited {proc.returncode} without a result:\n{proc.stderr[-4000:]}")
        with open(out_path, "rb") as f:
            payload = pickle.load(f)
    if "exception" in payload:
        raise MeasurementError(f"measured work raised in the subprocess:\n{payload['exception']}")
    return [PeakMemory(**r) for r in payload["results"]]


def peak_memory(fn: Callable[..., Any], *args: Any, data_limit: int | None = None, timeout: float = 600.0,
                **kwargs: Any) -> PeakMemory:
    """Run ``fn(*args, **kwargs)`` in a fresh Python subprocess and measure its peak memory.

    ``fn`` must be importable by the subprocess (a module-level function) and its arguments
    and result picklable. ``data_limit`` runs it under a budget of that many bytes of new
    private memory (see the module docstring). Raises MeasurementError if ``fn`` raises
    anything but an out-of-memory error, with the subprocess's traceback.
    """
    return _spawn([Job(fn, args, kwargs, data_limit)], timeout)[0]


def peak_memory_series(jobs: Sequence[Job], *, timeout: float = 600.0) -> list[PeakMemory]:
    """Measure several calls in one fresh subprocess, the peak reset before each.

    Where the peak cannot be reset (not Linux), each call gets its own subprocess. Memory
    freed by one call is handed back to the OS (``malloc_trim``) before the next; order
    calls by growing size so any memory the allocator still keeps is reused, not added.
    """
    jobs = list(jobs)
    if sys.platform == "linux" and os.access("/proc/self/clear_refs", os.W_OK):
        return _spawn(jobs, timeout)
    return [r for job in jobs for r in _spawn([job], timeout)]
