"""Reading ahead: a TensorLoader's reads from files, run on background threads at most ``depth``
reads ahead of the loop that takes the batches, handed out in order.

The reads release the GIL (``index_select`` from a memory map, page faults included;
``preadv``), so they overlap with the training step and with each other. Everything that
decides *which* rows an epoch reads (the permutation, DataLoader's random draws, a user's
batch sampler, the count of batches handed out that ``state_dict`` saves) runs on the loader's
thread: reading ahead changes when rows are read, never which, nor the batches, nor the
resumable state. An exception a read raised (or the job list raised) is raised, the same
object, where the loop takes that read's result: where a synchronous read would have raised.

Memory bound: while the loop holds the batches of one read, ``depth`` more reads are running
or done and waiting, and the next one is taken before the loop lets go of the last: at most
``depth + 2`` reads' rows are alive, against 2 without reading ahead (plus, with
``mmap=False``, each busy reader's transient copy while it puts rows back in order). So reading
ahead costs at most ``depth + readers - 1`` reads' rows more than ``prefetch=0``;
spec/test_prefetch.py counts it and measures it as peak RSS (where each extra reader thread's
own malloc arena adds up to about one read more), docs/benchmarks.md reports it.

Threads: each epoch that reads ahead has up to ``readers`` daemon threads of its own. They are
told to stop when the epoch ends, fails, or is closed (TensorLoader drops an epoch's reads ahead
when the next one starts), and a thread with nothing to read stops by itself after
:data:`LINGER` seconds, so an epoch abandoned mid-way (a ``break``) holds no thread for long
even before it is garbage collected; it holds at most its ``depth`` reads until then. A read
running when its epoch is dropped finishes and is thrown away: nothing waits on a read that is
not wanted, so breaking out of a loop never blocks, and the interpreter exits without joining.
"""

from __future__ import annotations

import atexit
import itertools
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

__all__ = ["EXIT_WAIT", "LINGER", "THREAD_PREFIX", "ReadAhead", "check_prefetch"]

THREAD_PREFIX = "batchfeed-reader"
#: Seconds a reader thread with nothing to read waits for more before it stops (a loop's step
#: is shorter, so a running epoch does not start threads again and again).
LINGER = 0.2
#: Seconds the interpreter's exit waits, in all, for reader threads told to stop (a stuck read is not waited for longer).
EXIT_WAIT = 1.0
_names = itertools.count()
_END, _FAILED = object(), object()  # the jobs are exhausted; a job that could not be made (its future raises)


def check_prefetch(prefetch: Any, readers: Any, reads_files: bool) -> tuple[int, int]:
    """``(prefetch, readers)`` as ints; ValueError naming the argument otherwise, or when reading
    ahead is asked of in-memory tensors (there is nothing to read)."""
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        raise ValueError(f"prefetch must be a non-negative integer (reads ahead of the loop), got {prefetch!r}")
    if isinstance(readers, bool) or not isinstance(readers, int) or readers < 1:
        raise ValueError(f"readers must be a positive integer (threads reading ahead), got {readers!r}")
    if prefetch and not reads_files:
        raise ValueError(f"prefetch={prefetch}: TensorLoader reads ahead only from datasets on files (NpyDataset); "
                         "in-memory tensors are gathered as they are needed")
    if readers > 1 and not prefetch:
        raise ValueError(f"readers={readers} needs prefetch >= 1: without reading ahead, the loader's thread reads")
    return prefetch, readers


#: Every reader pool with threads, stopped at interpreter exit (below).
_POOLS: weakref.WeakSet[_Readers] = weakref.WeakSet()


def _stop_all_at_exit() -> None:
    """Before the interpreter finalizes: tell every reader thread to stop and give each a moment to.

    A daemon thread that wakes up after finalization began is ended by CPython (3.11: with
    ``pthread_exit``), which aborts the process once that thread has run torch code ("terminate
    called without an active exception"). So no idle reader may outlive the program's end: each
    is told to stop here, and all are joined within :data:`EXIT_WAIT` seconds in all. A thread
    stuck in a read that never returns is left alone (it never wakes, so it never takes the GIL
    again); one whose read returns later, during finalization, can still abort the exit.
    """
    pools = list(_POOLS)
    for pool in pools:  # reads not started are not started now: one could run into finalization
        pool.abandon()
    deadline = time.monotonic() + EXIT_WAIT
    for pool in pools:
        for thread in list(pool.threads):
            thread.join(max(0.0, deadline - time.monotonic()))


try:  # run with concurrent.futures' own exit hooks: before threading's shutdown, so before finalization
    threading._register_atexit(_stop_all_at_exit)  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover - Python without the hook
    atexit.register(_stop_all_at_exit)


class _Readers:
    """Up to ``readers`` daemon threads running the reads put in a queue, in order; started as reads
    come, each stops when told to or after :data:`LINGER` seconds without a read."""

    def __init__(self, readers: int) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._max, self._alive, self._lock = readers, 0, threading.Lock()
        self.threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def submit(self, read: Callable[[Any], Any], job: Any) -> Future:
        future: Future = Future()
        self._queue.put((future, read, job))
        with self._lock:
            if self._alive < self._max:
                self._alive += 1
                thread = threading.Thread(target=self._work, name=f"{THREAD_PREFIX}-{next(_names)}", daemon=True)
                self.threads.add(thread)
                _POOLS.add(self)
                thread.start()
        return future

    def stop(self) -> None:
        """Every thread stops once the read it is running (if any) is done; queued reads must be cancelled first."""
        for _ in range(self._max):
            self._queue.put(None)

    def abandon(self) -> None:
        """Cancel the reads still queued (a thread skips a cancelled read), then :meth:`stop`."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        self.stop()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=LINGER)
            except queue.Empty:
                with self._lock:  # a read put after this check finds fewer threads and starts one
                    if self._queue.empty():
                        self._alive -= 1
                        return
                continue
            if item is None:
                with self._lock:
                    self._alive -= 1
                return
            future, read, job = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(read(job))
                except BaseException as exc:  # noqa: BLE001 - raised where the loop takes this read
                    future.set_exception(exc)
            del future, read, job  # an idle thread holds no read's rows


def _failed(exc: BaseException) -> Future:
    future: Future = Future()
    future.set_exception(exc)
    return future


class ReadAhead:
    """``read(job)`` for each of ``jobs``, in order, with up to ``depth`` reads submitted ahead
    to ``readers`` threads of its own.

    Taking a result submits the next reads before waiting for it, so the reader threads stay
    busy while the loop works. :meth:`close` cancels what was not started and stops the threads;
    :meth:`suspend` does the same but keeps the jobs, which a later ``next`` reads again.
    """

    def __init__(self, read: Callable[[Any], Any], jobs: Iterator[Any], depth: int, readers: int = 1) -> None:
        self._read, self._jobs, self._depth, self._readers = read, jobs, depth, readers
        self._pending: deque[tuple[Any, Future | None]] = deque()  # (job, its read; None: suspended)
        self._pool: _Readers | None = None
        self._lock = threading.Lock()

    def _submit(self, job: Any) -> Future:
        if self._pool is None:
            self._pool = _Readers(self._readers)
        return self._pool.submit(self._read, job)

    def _fill(self) -> None:
        for k, (job, future) in enumerate(self._pending):  # reads a suspend cancelled, in their order
            if future is None:
                self._pending[k] = (job, self._submit(job))
        while len(self._pending) < self._depth:
            try:
                job = next(self._jobs, _END)
            except Exception as exc:  # noqa: BLE001 - raised in order, when the loop reaches it
                self._pending.append((_FAILED, _failed(exc)))
                self._jobs = iter(())
                return
            if job is _END:
                return
            self._pending.append((job, self._submit(job)))

    def __iter__(self) -> ReadAhead:
        return self

    def __next__(self) -> Any:
        with self._lock:
            self._fill()
            if not self._pending:
                self._shutdown()
                raise StopIteration
            _job, future = self._pending.popleft()
            self._fill()
            last = not self._pending
        result = future.result()
        if last:  # the epoch's last read is taken: its threads are no longer needed
            with self._lock:
                self._shutdown()
        return result

    @property
    def in_flight(self) -> int:
        """Reads submitted and not yet taken (at most ``depth``)."""
        return sum(future is not None and job is not _FAILED for job, future in self._pending)

    @property
    def threads_running(self) -> bool:
        """Whether this read-ahead has reader threads it has not told to stop."""
        return self._pool is not None

    def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            for _job, future in self._pending:
                if future is not None:
                    future.cancel()
            pool.stop()

    def suspend(self) -> None:
        """Drop the reads ahead and stop the threads, keeping the jobs: a later ``next`` reads them again."""
        with self._lock:
            self._shutdown()
            self._pending = deque((job, future if job is _FAILED else None) for job, future in self._pending)

    def close(self) -> None:
        """Cancel the reads not yet started and stop the threads; those running finish and are dropped."""
        with self._lock:
            self._shutdown()
            self._pending.clear()
            self._jobs = iter(())
