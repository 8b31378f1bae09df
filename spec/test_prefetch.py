"""Reading ahead (issue 15): TensorLoader(NpyDataset, prefetch=k, readers=r) reads chunks on
background threads at most k ahead of the loop, and changes nothing else: the batches, the
generator's draws and the resumable state are those without it. Its memory bound is specified
here by counting reads (every run) and by the peak RSS of a fresh subprocess (slow).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from torch.utils.data import DataLoader, Dataset

from batchfeed import TensorLoader
from batchfeed.loader.prefetch import THREAD_PREFIX, ReadAhead
from batchfeed.measure import peak_memory
from batchfeed.overlap import prefetch_epoch
from batchfeed.sources import NpyDataset, write_npy_dataset
from spec.conformance.test_resume_model import STEPS, resume_machine
from spec.npy_loader import as_npy
from spec.test_loader import _epochs, assert_same_epochs


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> tuple[Path, Path]:
    return write_npy_dataset(tmp_path_factory.mktemp("prefetch"), 1000, 5, seed=1)


class CountingSource(Dataset):
    """A dataset that reads whole batches (TensorLoader's batch-source protocol), counting reads
    started and the thread each ran on; ``fail_at``: the read that raises."""

    def __init__(self, n: int, fail_at: int | None = None) -> None:
        self.X = torch.arange(n * 2, dtype=torch.float32).reshape(n, 2)
        self.y = torch.arange(n)
        self.started, self.threads, self.fail_at = 0, set(), fail_at
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i]

    def read_batch(self, indices):
        with self.lock:
            k = self.started
            self.started += 1
            self.threads.add(threading.current_thread().name)
        if k == self.fail_at:
            raise OSError(f"read {k}: device error")
        idx = torch.as_tensor(indices)
        return [self.X[idx], self.y[idx]]


# --- nothing changes but when rows are read ---------------------------------------------------

@given(n=st.integers(1, 300), batch_size=st.integers(1, 40), drop_last=st.booleans(), shuffle=st.booleans(),
       seed=st.integers(0, 2**31), mmap=st.booleans(), prefetch=st.integers(1, 4), readers=st.integers(1, 3),
       chunk=st.sampled_from([1, 200, None]))
@settings(max_examples=30)
def test_reading_ahead_yields_dataloaders_batches_and_draws(files, n, batch_size, drop_last, shuffle, seed, mmap,
                                                            prefetch, readers, chunk):
    ds = torch.utils.data.Subset(NpyDataset(*files, mmap=mmap), range(n))
    g_dl, g_tl = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    dl = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g_dl)
    tl = TensorLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g_tl,
                      prefetch=prefetch, readers=readers, chunk_bytes=chunk)
    context = f"n={n}, B={batch_size}, prefetch={prefetch}, readers={readers}, chunk={chunk}"
    assert_same_epochs(_epochs(tl, 2), _epochs(dl, 2), context=context)
    assert torch.equal(g_tl.get_state(), g_dl.get_state()), context


@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
def test_resume_state_machine_while_reading_ahead(mmap):
    """The conformance resume state machine, every batch its own read, two readers four reads ahead:
    a state saved while reads run ahead resumes exactly (abandoned reads are never counted)."""

    def make(dataset, **kw):
        return TensorLoader(as_npy(dataset, mmap=mmap), chunk_bytes=1, prefetch=4, readers=2, **kw)

    run_state_machine_as_test(resume_machine(make),
                              settings=settings(stateful_step_count=STEPS, deadline=None, max_examples=20))


# --- bounded, on other threads, errors where they belong -----------------------------------------

@pytest.mark.parametrize(("prefetch", "readers"), [(1, 1), (3, 1), (3, 2), (8, 3)])
def test_reads_run_at_most_prefetch_ahead_of_the_loop(prefetch, readers):
    """However slow the loop, reads started never exceed the chunks taken by more than prefetch + 1
    (the chunk being handed out and prefetch more): the memory bound, counted."""
    src = CountingSource(400)
    loader = TensorLoader(src, batch_size=10, chunk_bytes=1, prefetch=prefetch, readers=readers,
                          generator=torch.Generator())
    ahead = []
    for k, _batch in enumerate(loader):
        threading.Event().wait(0.002)  # a slow training step: the readers run ahead to the bound
        ahead.append(src.started - (k + 1))
    assert len(ahead) == 40 and src.started == 40
    assert max(ahead) <= prefetch, f"reads ran {max(ahead)} ahead of the loop, prefetch={prefetch}"
    assert max(ahead) == prefetch, f"never ran {prefetch} ahead: the reads did not overlap the loop ({ahead})"


def test_reads_run_on_reader_threads_only_when_reading_ahead():
    src = CountingSource(100)
    list(TensorLoader(src, batch_size=10, chunk_bytes=1, generator=torch.Generator()))
    assert src.threads == {threading.current_thread().name}
    src = CountingSource(100)
    list(TensorLoader(src, batch_size=10, chunk_bytes=1, prefetch=2, readers=2, generator=torch.Generator()))
    assert src.threads and all(t.startswith("batchfeed-reader") for t in src.threads), src.threads


@pytest.mark.parametrize("prefetch", [0, 1, 4])
def test_a_failed_read_raises_where_the_synchronous_loader_raises(prefetch):
    """Read 3 fails: every batch before it is delivered, then its error, whether or not reads ran ahead."""
    src = CountingSource(100, fail_at=3)
    loader = TensorLoader(src, batch_size=10, chunk_bytes=1, prefetch=prefetch, generator=torch.Generator())
    got = []
    with pytest.raises(OSError, match="read 3: device error"):
        for batch in loader:
            got.append(batch[1].tolist())
    assert got == [list(range(k * 10, k * 10 + 10)) for k in range(3)]


def test_closing_cancels_the_reads_not_yet_started_and_stops_the_threads():
    """ReadAhead.close (an abandoned epoch) cancels queued reads; the running one finishes and is dropped,
    and its reader thread ends then: nothing waits for it."""
    gate, running = threading.Event(), threading.Event()
    read = []

    def slow(job):
        if job:
            running.set()
            gate.wait(5)  # read 1 blocks the one reader; reads 2 and 3 wait in the queue
        read.append(job)
        return job

    ahead = ReadAhead(slow, iter(range(10)), 3, readers=1)
    assert next(ahead) == 0 and ahead.in_flight == 3
    queued = [f for _job, f in ahead._pending]
    assert running.wait(5)
    ahead.close()
    assert not ahead.threads_running
    gate.set()
    _assert_no_reader_threads()
    assert ahead.in_flight == 0 and read == [0, 1], f"reads after close: {read}"
    assert [f.cancelled() for f in queued] == [False, True, True]
    with pytest.raises(StopIteration):
        next(ahead)


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def _assert_no_reader_threads(timeout: float = 10.0) -> None:
    """Every reader thread ends within ``timeout`` (they are told to stop; this waits for them to go)."""
    __tracebackhide__ = True
    for t in _reader_threads():
        t.join(timeout)
    assert not _reader_threads(), f"reader threads still running: {_reader_threads()}"


@pytest.mark.parametrize("how", ["epoch ends", "read fails", "break, loader dropped", "next epoch started"])
def test_reader_threads_stop_when_the_epoch_is_over(how):
    src = CountingSource(100, fail_at=3 if how == "read fails" else None)
    loader = TensorLoader(src, batch_size=10, chunk_bytes=1, prefetch=2, readers=2, generator=torch.Generator())
    if how == "epoch ends":
        assert len(list(loader)) == 10
    elif how == "read fails":
        with pytest.raises(OSError):
            list(loader)
    elif how == "break, loader dropped":
        for _batch in loader:
            break
        assert loader._iterator._ahead.threads_running, "the epoch did not read ahead"
        del loader, _batch
        gc.collect()  # the loader and its iterator form a cycle: collected, the epoch stops its readers
    else:
        next(iter(loader))
        it = iter(loader)  # the first epoch's reads ahead are dropped; the new one has not read yet
        assert loader._iterator is it
    _assert_no_reader_threads()


def test_breaking_out_while_a_read_is_stuck_does_not_wait_for_it():
    """A read that blocks (a stalled device) does not block the loop that no longer wants it: breaking
    out, dropping the loader and collecting return at once; the thread ends when its read does."""
    gate = threading.Event()

    class Stuck(CountingSource):
        def read_batch(self, indices):
            if int(torch.as_tensor(indices)[0]) >= 20:
                gate.wait(30)
            return super().read_batch(indices)

    loader = TensorLoader(Stuck(100), batch_size=10, chunk_bytes=1, prefetch=3, generator=torch.Generator())
    done = threading.Event()

    def consume(batches):
        for _batch in batches:
            break
        gc.collect()
        done.set()

    worker = threading.Thread(target=consume, args=(loader,))
    worker.start()
    assert done.wait(10), "breaking out of the loop waited for a stuck read"
    worker.join()
    del loader
    gc.collect()
    gate.set()
    _assert_no_reader_threads()


def test_at_exit_every_idle_reader_thread_is_stopped_and_joined():
    """What runs before the interpreter finalizes: the readers of an abandoned epoch (idle, not yet
    lingered out) are told to stop and have ended when it returns; a stuck read is not waited for
    beyond EXIT_WAIT."""
    from batchfeed.loader import prefetch

    gate = threading.Event()

    class Stuck(CountingSource):
        def read_batch(self, indices):
            if int(torch.as_tensor(indices)[0]) == 30:
                gate.wait(30)
            return super().read_batch(indices)

    idle = TensorLoader(CountingSource(100), batch_size=10, chunk_bytes=1, prefetch=3, readers=2,
                        generator=torch.Generator())
    stuck = TensorLoader(Stuck(100), batch_size=10, chunk_bytes=1, prefetch=3, generator=torch.Generator())
    for loader in (idle, stuck):
        for _batch in loader:
            break
    threads = [t for pool in list(prefetch._POOLS) for t in pool.threads]
    assert threads
    prefetch._stop_all_at_exit()
    alive = [t for t in threads if t.is_alive()]
    gate.set()
    assert len(alive) <= 1, f"reader threads still running after the exit hook: {alive}"
    _assert_no_reader_threads()


_EXIT_SCRIPT = """
import sys, threading, torch
from batchfeed import TensorLoader
from spec.test_prefetch import CountingSource

class Source(CountingSource):
    def read_batch(self, indices):
        if sys.argv[1] == "stuck" and int(torch.as_tensor(indices)[0]) >= 20:
            threading.Event().wait()  # never returns
        return super().read_batch(indices)

loader = TensorLoader(Source(100), batch_size=10, chunk_bytes=1, prefetch=3, readers=2, generator=torch.Generator())
for batch in loader:
    break
if sys.argv[1] == "dropped":
    del loader, batch
print("left the loop", flush=True)
"""


_EXIT_MID_OPERATOR_SCRIPT = """
import torch
from batchfeed import TensorLoader
from spec.test_prefetch import CountingSource

class Busy(CountingSource):
    def read_batch(self, indices):
        a = torch.ones(600, 600)
        for _ in range(20):  # ~0.1-0.5 s inside torch operators that release the GIL
            a = (a @ a).clamp_(max=1.0)
        return super().read_batch(indices)

loader = TensorLoader(Busy(100), batch_size=10, chunk_bytes=1, prefetch=3, readers=2, generator=torch.Generator())
for batch in loader:
    break
print("left the loop", flush=True)
"""


def _run_script(script: str, cwd) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env,
                          check=False, cwd=cwd)


def test_the_interpreter_exits_cleanly_while_a_read_runs_in_a_torch_operator(tmp_path):
    """Leaving the program while reader threads are inside GIL-releasing torch operators: without
    the exit handler CPython ends those daemon threads with pthread_exit and the process aborts
    ('terminate called without an active exception', SIGABRT). Three runs, each must exit 0."""
    for _ in range(3):
        done = _run_script(_EXIT_MID_OPERATOR_SCRIPT, tmp_path)
        assert done.returncode == 0 and "left the loop" in done.stdout, (done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("how", ["stuck", "idle", "dropped"])
def test_the_program_exits_cleanly_right_after_reading_ahead(tmp_path, how):
    """The loop breaks out and the program ends at once, with a read that never returns (stuck), with
    readers idle but not yet lingered out (idle), or with the loader dropped unclosed: exit status 0.
    (CPython 3.11 ends a daemon thread that wakes during finalization with pthread_exit, which
    aborts a process whose thread ran torch code; the readers are stopped before that.) A hang
    would run into the timeout."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    done = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT, how], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp_path, check=False)
    assert done.returncode == 0 and "left the loop" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_a_read_error_is_the_original_exception_with_the_reader_traceback():
    """What the reader thread raised, the same class, message, attributes and chained cause, with the
    frames of read_batch in its traceback."""

    class Failing(CountingSource):
        def read_batch(self, indices):
            if int(torch.as_tensor(indices)[0]) == 20:
                try:
                    raise KeyError("inner")
                except KeyError as cause:
                    raise OSError(5, "read 2: device error", "X.npy") from cause
            return super().read_batch(indices)

    loader = TensorLoader(Failing(100), batch_size=10, chunk_bytes=1, prefetch=3, generator=torch.Generator())
    with pytest.raises(OSError) as info:
        list(loader)
    exc = info.value
    assert type(exc) is OSError and exc.errno == 5 and exc.filename == "X.npy" and isinstance(exc.__cause__, KeyError)
    frames = [f.name for f in traceback.extract_tb(exc.__traceback__)]
    assert "read_batch" in frames, frames


def test_a_bad_batch_from_a_batch_sampler_raises_in_order_while_reading_ahead():
    """The sampler is drawn ahead of the loop; a bad index among its batches is raised when the loop
    reaches that batch, after the batches before it, as without reading ahead."""
    batches = [[0, 1], [2, 3], [4, 500], [6, 7]]
    for prefetch in (0, 3):
        loader = TensorLoader(CountingSource(10), batch_sampler=batches, prefetch=prefetch, generator=torch.Generator())
        got = []
        with pytest.raises(IndexError, match="index 500 out of range"):
            for batch in loader:
                got.append(batch[1].tolist())
        assert got == [[0, 1], [2, 3]], f"prefetch={prefetch}"


@given(n=st.integers(1, 200), batch_size=st.integers(1, 30), seed=st.integers(0, 2**31), prefetch=st.integers(1, 4),
       readers=st.integers(1, 3), mmap=st.booleans())
@settings(max_examples=20)
def test_a_batch_sampler_read_ahead_yields_dataloaders_batches(files, n, batch_size, seed, prefetch, readers, mmap):
    """A user's batch sampler (shuffled, uneven batches): every batch read ahead, one read each, DataLoader's batches."""
    ds = torch.utils.data.Subset(NpyDataset(*files, mmap=mmap), range(n))
    sampler = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(ds, generator=torch.Generator().manual_seed(seed)),
                                            batch_size, False)
    tl = TensorLoader(ds, batch_sampler=sampler, prefetch=prefetch, readers=readers, generator=torch.Generator())
    dl = DataLoader(ds, batch_sampler=sampler, generator=torch.Generator())
    state = sampler.sampler.generator.get_state()
    got = _epochs(tl, 2)
    sampler.sampler.generator.set_state(state)
    assert_same_epochs(got, _epochs(dl, 2), context=f"n={n}, B={batch_size}, prefetch={prefetch}")


def test_an_epoch_taken_up_after_the_next_one_started_is_unchanged(files):
    """Starting another epoch drops the first one's reads ahead; going back to the first, it reads them
    again and yields the batches DataLoader's first iterator yields."""
    tl = TensorLoader(NpyDataset(*files), batch_size=32, shuffle=True, chunk_bytes=1, prefetch=4,
                      generator=torch.Generator().manual_seed(3))
    dl = DataLoader(NpyDataset(*files), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(3))
    first, first_dl = iter(tl), iter(dl)
    got = [next(first)[1].clone()]
    expected = [next(first_dl)[1]]
    second, second_dl = iter(tl), iter(dl)
    got.append(next(second)[1].clone())
    expected.append(next(second_dl)[1])
    assert first._ahead is not None and not first._ahead.threads_running and first._ahead.in_flight == 0
    got += [b[1].clone() for b in first] + [b[1].clone() for b in second]
    expected += [b[1] for b in first_dl] + [b[1] for b in second_dl]
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected))


def test_abandoning_an_epoch_stops_its_reads():
    """Take one batch, then start the next epoch: the abandoned epoch read at most prefetch + 1 chunks,
    never the rest of its ten, and the new epoch is DataLoader's second."""
    src = CountingSource(100)
    tl = TensorLoader(src, batch_size=10, shuffle=True, chunk_bytes=1, prefetch=3,
                      generator=torch.Generator().manual_seed(5))
    dl = DataLoader(src, batch_size=10, shuffle=True, generator=torch.Generator().manual_seed(5))
    abandoned, abandoned_dl = iter(tl), iter(dl)
    next(abandoned), next(abandoned_dl)
    second = _epochs(tl, 1)
    assert src.started <= 1 + 3 + 10, f"{src.started} reads: the abandoned epoch read on"
    assert_same_epochs(second, _epochs(dl, 1), context="after an abandoned epoch")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prefetch": -1}, r"prefetch must be a non-negative integer .* got -1"),
    ({"prefetch": 1.5}, r"prefetch must be a non-negative integer .* got 1.5"),
    ({"prefetch": 2, "readers": 0}, r"readers must be a positive integer .* got 0"),
    ({"readers": 2}, r"readers=2 needs prefetch >= 1"),
])
def test_bad_prefetch_arguments_are_refused_naming_them(files, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TensorLoader(NpyDataset(*files), batch_size=4, **kwargs)


def test_reading_ahead_from_memory_is_refused():
    with pytest.raises(ValueError, match=r"prefetch=2: TensorLoader reads ahead only from datasets on files"):
        TensorLoader((torch.zeros(4, 2), torch.zeros(4)), batch_size=2, prefetch=2)


# --- the memory bound, as peak RSS -----------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("prefetch", "readers"), [(8, 1), (4, 3)])
def test_reading_ahead_holds_at_most_prefetch_plus_readers_minus_one_reads_more(tmp_path, prefetch, readers):
    """Peak RSS of a fresh subprocess per run, preadv (private memory only), 1 MiB reads, a loop
    slower than the reads: reading ahead holds more than prefetch=0 (it read ahead) but at most
    ``prefetch + readers - 1`` reads' rows more (the stated bound on live rows), plus what each
    reader thread's own malloc arena keeps (up to about one read per extra reader, measured:
    1.5 MiB at readers=2, 2.3 at readers=3), plus 2 MiB of noise."""
    px, py = write_npy_dataset(tmp_path, 100_000, 64)
    chunk = 1 << 20
    kw = {"batch_size": 1024, "chunk_bytes": chunk, "step_seconds": 0.01}
    # one fresh process each: in one process the allocator keeps what the first call freed
    base = peak_memory(prefetch_epoch, str(px), str(py), prefetch=0, **kw)
    ahead = peak_memory(prefetch_epoch, str(px), str(py), prefetch=prefetch, readers=readers, **kw)
    assert base.value == ahead.value == 100_000
    extra = ahead.rss_increase - base.rss_increase
    bound = (prefetch + readers - 1) * chunk + (readers - 1) * chunk
    assert 2 * chunk <= extra <= bound + (2 << 20), f"prefetch={prefetch} readers={readers} held {extra / chunk:.1f} MiB more"


# --- the reader threads themselves (mutation survivors: thread count, daemon, lingering) ---------

class GatedSource(CountingSource):
    """Reads wait for ``gate``; ``waiting`` counts the reads blocked on it."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.gate, self.waiting = threading.Event(), threading.Semaphore(0)

    def read_batch(self, indices):
        self.waiting.release()
        assert self.gate.wait(30), "the gate was never opened"
        return super().read_batch(indices)


@pytest.mark.parametrize("readers", [1, 2, 3])
def test_exactly_readers_daemon_threads_read_at_once(readers):
    """With more reads wanted than readers, exactly ``readers`` threads run them (never more, never
    fewer), and they are daemon threads: a stuck read never keeps the program alive."""
    src = GatedSource(200)
    loader = TensorLoader(src, batch_size=10, chunk_bytes=1, prefetch=8, readers=readers, generator=torch.Generator())
    it = iter(loader)
    taker = threading.Thread(target=next, args=(it,), daemon=True)
    taker.start()
    for _ in range(readers):  # every reader is blocked in a read
        assert src.waiting.acquire(timeout=10), "fewer reads started than readers"
    assert not src.waiting.acquire(timeout=0.3), "more reads ran at once than readers"
    threads = _reader_threads()
    assert len(threads) == readers and all(t.daemon for t in threads), [(t.name, t.daemon) for t in threads]
    src.gate.set()
    taker.join(10)
    it._ahead.close()
    _assert_no_reader_threads()


def test_idle_reader_threads_stop_by_themselves_and_start_again_when_needed():
    """An epoch paused longer than LINGER (its iterator kept, nothing closed) holds no thread; taken
    up again it starts readers and yields the rest, the same batches as without reading ahead."""
    from batchfeed.loader.prefetch import LINGER

    src = CountingSource(200)
    loader = TensorLoader(src, batch_size=10, chunk_bytes=1, prefetch=2, readers=2, generator=torch.Generator())
    it = iter(loader)
    got = [next(it)[1]]
    deadline = threading.Event()
    for _ in range(50):  # the reads ahead finish, then the threads linger out
        if not _reader_threads():
            break
        deadline.wait(LINGER)
    assert not _reader_threads(), "idle reader threads did not stop by themselves"
    rest = []
    taker = threading.Thread(target=lambda: rest.extend(b[1] for b in it), daemon=True)
    taker.start()
    taker.join(20)
    assert not taker.is_alive(), "the epoch hung after its threads had lingered out"
    assert torch.equal(torch.cat(got + rest), torch.arange(200))


def test_a_failing_batch_sampler_raises_its_error_after_the_epoch_is_taken_up_again():
    """The batch sampler raises while being drawn ahead; another epoch starts (the first's reads are
    dropped), then the first goes on: its batches, then the sampler's own exception, not another."""

    class Broken:
        def __iter__(self):
            yield from ([0, 1], [2, 3])
            raise LookupError("sampler broke at batch 2")

        def __len__(self):
            return 3

    src = CountingSource(10)
    loader = TensorLoader(src, batch_sampler=Broken(), prefetch=3, generator=torch.Generator())
    first = iter(loader)
    assert next(first)[1].tolist() == [0, 1]
    second = iter(loader)
    assert next(second)[1].tolist() == [0, 1]
    assert next(first)[1].tolist() == [2, 3]
    with pytest.raises(LookupError, match="sampler broke at batch 2"):
        next(first)
