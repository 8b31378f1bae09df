"""Parallel loading: what ``num_workers`` buys (claim C12), how workers are seeded, and
how a failing or dying worker reaches the caller, with nothing lost.

The loader-conformance basics (the same seed gives the same batches with ``num_workers``
0 and 2, every sample exactly once) are in spec/conformance/test_workers.py. Tests that use ``make_loader`` run against the
loader under test and skip when it does not take ``num_workers``; the C12 measurement uses
torch's ``DataLoader``, the tutorial's loader.
"""

from __future__ import annotations

import contextlib
import gc
import random
import re
import signal
import sys
import time
import traceback
import warnings

import numpy as np
import pytest
import torch

from batchfeed import PairDataset, make_seed_data
from batchfeed.workers import (
    NamedSampleErrors,
    SlowDataset,
    cpu_count,
    seed_worker,
    worker_speedups,
)

from ..worker_datasets import (
    AugmentedDataset,
    DyingDataset,
    FailingDataset,
    NpyFilesDataset,
    WorkerSeedProbe,
    corrupt,
    write_npy_samples,
    write_png_samples,
)


class LoaderHangs(TimeoutError):
    """The loader did not finish (or fail) within the test's watchdog time."""


#: Seconds the dead-worker tests wait for the loader's error before failing it as hung:
#: torch's DataLoader reports a dead worker within its 1 s timeout (a clean exit within the
#: liveness check's interval); 12 s leaves room on a loaded machine and still bounds the suite.
DEAD_WORKER_WATCHDOG = 12


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """Fail the test (instead of hanging the suite) if the block runs longer than ``seconds``."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows
        yield
        return

    def _expired(signum, frame):
        raise LoaderHangs(f"{what} did not finish within {seconds} s: the loader hangs")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- C12: do workers speed training up? -----------------------------------------------

# The "expensive" dataset waits LATENCY seconds per sample (time.sleep, standing in for a
# file read + decode): waiting releases the CPU, so the figure is not capped by the 2 cores
# of the CI machine. N and the latency are chosen so that 2 workers' start-up (~0.1 s) is
# small against the epoch (~1 s without workers): the verdict is stable run to run.
LATENCY, LATENCY_N, LATENCY_BATCH = 0.010, 96, 16
MEMORY_N, MEMORY_BATCH = 1000, 32  # the tutorial's data and batch size


@pytest.mark.claim("C12")
def test_claim_workers_speed_up_training_when_samples_cost_work(claim_figures):
    """Two workers shorten a training epoch whose samples each cost 10 ms of waiting; on the tutorial's in-memory tensors they are measured too."""
    X, y = make_seed_data(LATENCY_N, 3, seed=0)
    # One torch thread in the main process (see batchfeed.workers.training_epoch): with 2
    # threads on 2 shared cores the tiny model's steps measure thread scheduling, not loading.
    slow = worker_speedups(SlowDataset(X, y, LATENCY), (2,), batch_size=LATENCY_BATCH, threads=1)
    # The in-memory epoch is short (~10 ms), so take the faster of 3 rounds against noise.
    memory = worker_speedups(PairDataset(*make_seed_data(MEMORY_N, 3, seed=0)), (2,), batch_size=MEMORY_BATCH,
                             rounds=3, threads=1)
    claim_figures.record("latency_ms", LATENCY * 1e3)
    claim_figures.record("latency_n", LATENCY_N)
    claim_figures.record("latency_speedup_w2", slow[2])
    claim_figures.record("memory_n", MEMORY_N)
    claim_figures.record("memory_speedup_w2", memory[2])
    claim_figures.record("cores", cpu_count())
    # What the spec asserts: loading that waits overlaps across workers. Whether workers
    # help on in-memory tensors is the verdict's business, not a pass/fail condition.
    assert slow[2] > 1.2, f"2 workers gave x{slow[2]:.2f} on {LATENCY * 1e3:g} ms per sample; overlapped waiting should give ~x2"


# --- seeding: every worker its own random stream, reproducible from the seed ------------

def _draws_by_worker(loader) -> dict[int, list[list[float]]]:
    """Per worker id, the [torch, numpy, random] draws of the samples it loaded, in order."""
    out: dict[int, list[list[float]]] = {}
    for draws, _, worker in loader:
        for d, w in zip(draws.tolist(), worker.tolist()):
            out.setdefault(w, []).append(d)
    return out


@pytest.mark.parametrize("worker_init_fn", [None, seed_worker], ids=["torch-default", "seed_worker"])
@pytest.mark.parametrize("rng", range(3), ids=AugmentedDataset.RNGS)
def test_each_worker_draws_its_own_random_augmentations(make_loader, rng, worker_init_fn):
    """torch, numpy and random each give every worker a different stream (pytorch issue #5059: numpy used to repeat across workers)."""
    loader = make_loader(AugmentedDataset(16), batch_size=2, num_workers=2, generator=_gen(0),
                         worker_init_fn=worker_init_fn)
    by_worker = _draws_by_worker(loader)
    assert sorted(by_worker) == [0, 1], f"samples came from workers {sorted(by_worker)}, expected both 0 and 1"
    w0 = [d[rng] for d in by_worker[0]]
    w1 = [d[rng] for d in by_worker[1]]
    shared = sorted(set(w0) & set(w1))
    assert not shared, (
        f"{AugmentedDataset.RNGS[rng]} draws repeat across workers: {len(shared)} of {len(w0)} values shared, "
        f"worker 0 {w0[:3]}..., worker 1 {w1[:3]}... [worker_init_fn={getattr(worker_init_fn, '__name__', None)}]"
    )


@pytest.mark.parametrize("worker_init_fn", [None, seed_worker], ids=["torch-default", "seed_worker"])
def test_augmentations_are_reproducible_from_the_generator_seed(make_loader, worker_init_fn):
    """With num_workers=2, the same generator seed gives the same augmentations in torch, numpy and random; another seed gives others."""
    def draws(seed: int) -> torch.Tensor:
        loader = make_loader(AugmentedDataset(12), batch_size=3, num_workers=2, generator=_gen(seed),
                             worker_init_fn=worker_init_fn)
        return torch.cat([d for d, _, _ in loader])

    a, b, c = draws(7), draws(7), draws(8)
    assert torch.equal(a, b), f"seed 7 twice gave different augmentations:\n{a}\n{b}"
    for k, name in enumerate(AugmentedDataset.RNGS):
        assert not torch.equal(a[:, k], c[:, k]), f"{name}: seeds 7 and 8 gave the same draws {a[:, k].tolist()}"


@pytest.mark.parametrize("persistent_workers", [False, True], ids=["fresh-workers", "persistent-workers"])
def test_augmentations_change_from_epoch_to_epoch(make_loader, persistent_workers):
    """Each epoch draws new augmentations in every RNG, with fresh or persistent workers."""
    loader = make_loader(AugmentedDataset(8), batch_size=2, num_workers=2, generator=_gen(0),
                         persistent_workers=persistent_workers)
    e1 = torch.cat([d for d, _, _ in loader])
    e2 = torch.cat([d for d, _, _ in loader])
    for k, name in enumerate(AugmentedDataset.RNGS):
        same = int((e1[:, k] == e2[:, k]).sum())
        assert same == 0, f"{name}: {same} of {len(e1)} draws repeated in the second epoch"


def test_seed_worker_seeds_numpy_and_random_from_torch_initial_seed(make_loader):
    """seed_worker seeds numpy and random with torch.initial_seed() % 2**32 in each worker (the PyTorch recipe)."""
    loader = make_loader(WorkerSeedProbe(4), batch_size=1, num_workers=2, generator=_gen(3), worker_init_fn=seed_worker)
    seen = {}
    for seed, np_draw, py_draw in loader:
        seed = int(seed)
        if seed in seen:  # a worker's second sample: its streams have moved on
            continue
        seen[seed] = True
        expected_np = np.random.RandomState(seed % 2**32).random_sample()
        expected_py = random.Random(seed % 2**32).random()
        assert float(np_draw) == expected_np, f"numpy's first draw in the worker with seed {seed}: {float(np_draw)}, expected {expected_np}"
        assert float(py_draw) == expected_py, f"random's first draw in the worker with seed {seed}: {float(py_draw)}, expected {expected_py}"
    assert len(seen) == 2, f"expected 2 workers with distinct torch seeds, saw seeds {sorted(seen)}"


# DataLoader's quirk that augmentations drawn from the workers' global RNGs depend on
# num_workers is a finding about torch's DataLoader, not a promise: it lives in
# spec/test_worker_findings.py, run against DataLoader only (a conformance test must be
# deterministic for every loader, and for a loader with unseeded workers it was not).


# --- failures lose nothing --------------------------------------------------------------

def load_until_error(loader, what: str, seconds: float = 30) -> tuple[type[BaseException] | None, str, list]:
    """Iterate ``loader`` until it raises: ``(exception type, message with notes, batches delivered before)``.

    Only the type and the text leave, and the traceback's frames are cleared: a worker's
    exception re-raised by torch sits in a reference cycle (the frame of
    ``ExceptionWrapper.reraise`` holds it) with the iterator, which the cyclic GC then frees
    later and slowly (see test_iterator_left_in_a_cycle_by_a_worker_error_shuts_down_slowly).
    """
    delivered = []
    it = iter(loader)
    try:
        with deadline(seconds, what):
            for batch in it:
                delivered.append(batch)
    except Exception as exc:  # noqa: BLE001 - the type is the caller's assertion
        traceback.clear_frames(exc.__traceback__)
        return type(exc), str(exc) + "".join("\n" + n for n in getattr(exc, "__notes__", [])), delivered
    finally:
        del it
    return None, "", delivered


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
def test_worker_exception_reaches_caller_with_its_type_and_failing_index(make_loader, num_workers):
    """A sample that raises reaches the caller as the same exception type naming the sample, after every earlier batch was delivered."""
    ds = FailingDataset(20, bad=13, error=KeyError, message="sample {i}: no such key in the archive")
    kind, text, delivered = load_until_error(make_loader(ds, batch_size=4, num_workers=num_workers), "a loader whose sample 13 raises")
    assert kind is KeyError, f"expected KeyError, got {kind}: {text}"
    assert "sample 13" in text, f"the error does not name sample 13: {text}"
    if num_workers:
        assert "worker process" in text, f"the error does not say a worker raised it: {text}"
    labels = [i for b in delivered for i in b.tolist()]
    assert labels == list(range(12)), f"batches before the failing one (samples 0..11) should all arrive, got {labels}"


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
def test_named_sample_errors_names_the_index_the_dataset_did_not(make_loader, num_workers):
    """NamedSampleErrors adds "while loading sample i" to an error whose message names no sample; type and message are kept."""
    ds = FailingDataset(20, bad=13, error=OSError, message="truncated stream")
    bare_kind, bare, _ = load_until_error(make_loader(ds, batch_size=4, num_workers=num_workers), "a loader whose sample 13 raises")
    kind, text, _ = load_until_error(make_loader(NamedSampleErrors(ds), batch_size=4, num_workers=num_workers),
                                     "a loader whose sample 13 raises")
    assert bare_kind is OSError and kind is OSError, f"expected OSError both times, got {bare_kind} and {kind}"
    assert "truncated stream" in text and "while loading sample 13 of FailingDataset" in text, (
        f"expected the original message and 'while loading sample 13', got: {text!r}"
    )
    assert "sample 13" not in bare, f"torch now names the sample itself: {bare!r}; NamedSampleErrors may be redundant"


@pytest.mark.skipif(sys.platform == "win32", reason="os._exit/SIGKILL of a worker: POSIX only")
@pytest.mark.parametrize("how", [1, 0, "SIGKILL"], ids=["exit-1", "exit-0", "SIGKILL"])
def test_dead_worker_raises_runtime_error_without_hanging(make_loader, how):
    """A worker that dies (os._exit or SIGKILL) raises RuntimeError naming the dead worker, within the loader's timeout."""
    # exit(1) and SIGKILL are seen at once (SIGCHLD); a clean exit(0) only when the loader
    # next checks its workers: after `timeout` seconds (else MP_STATUS_CHECK_INTERVAL, 5 s).
    # The test's own watchdog (SIGALRM in load_until_error): a loader that waits forever once
    # a worker died fails here, bounded, saying so; the suite never hangs on it.
    loader = make_loader(DyingDataset(20, bad=5, how=how), batch_size=2, num_workers=2, timeout=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kind, text, delivered = load_until_error(loader, f"a loader whose worker died ({how})", seconds=DEAD_WORKER_WATCHDOG)
    elapsed = time.perf_counter() - start
    assert kind is not LoaderHangs, (
        f"the loader hung after a worker died ({how}): no error within {DEAD_WORKER_WATCHDOG} s "
        f"({len(delivered)} batches delivered before)")
    assert kind is RuntimeError, f"expected RuntimeError, got {kind}: {text}"
    # Two messages, depending on who notices first: the SIGCHLD handler ("DataLoader worker
    # (pid 123) exited unexpectedly with exit code 1" / "is killed by signal: Killed") or the
    # iterator's liveness check ("DataLoader worker (pid(s) 123) exited unexpectedly").
    assert re.search(r"DataLoader worker \(pid(\(s\))? [\d, ]+\) (exited unexpectedly|is killed by signal)", text), (
        f"the error does not say a DataLoader worker died: {text!r}"
    )
    assert elapsed < 10, f"the dead worker was reported after {elapsed:.1f} s, expected within the 1 s timeout"
    labels = [i for b in delivered for i in b.tolist()]
    assert labels == list(range(len(labels))) and len(labels) <= 4, f"only batches before sample 5 may arrive, in order: {labels}"


@pytest.mark.slow
def test_iterator_left_in_a_cycle_by_a_worker_error_shuts_down_slowly(make_loader):
    """Finding: after a worker's exception is caught and kept, the cyclic GC frees the iterator, and its shutdown waits ~5 s per worker.

    torch re-raises a worker's exception from ``ExceptionWrapper.reraise``, whose frame
    holds the exception: exception, traceback and iterator form a cycle. When the GC frees
    it, the workers' index queues may be finalised before the iterator, so the workers
    never get the stop message and each ``join`` runs to its 5 s timeout. Clearing the
    traceback's frames (``traceback.clear_frames``) avoids it.
    """
    def fail_and_keep():
        it = iter(make_loader(FailingDataset(20, bad=13), batch_size=4, num_workers=2))
        try:
            for _ in it:
                pass
        except ValueError as exc:
            return type(exc)
        finally:
            del it

    gc.collect()
    with deadline(60, "collecting a failed loader's iterator"):
        assert fail_and_keep() is ValueError
        start = time.perf_counter()
        gc.collect()
        elapsed = time.perf_counter() - start
    assert elapsed > 4, f"gc.collect() took {elapsed:.1f} s: torch no longer leaves the iterator in a slow cycle"


def _npy_files(root):
    paths = write_npy_samples(root, 24)
    return paths, lambda: NpyFilesDataset(root), lambda batch: batch[1].tolist(), "sample {i} ({name})"


def _image_folder(root):
    sources = pytest.importorskip("batchfeed.sources", reason="batchfeed.sources (lazy datasets) is not available")
    paths = write_png_samples(root, 24)
    return (paths, lambda: sources.ImageFolderDataset(root),
            lambda batch: (batch[0].mean(dim=(1, 2, 3)) * 255).round().long().tolist(), "{name}")


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
@pytest.mark.parametrize("lazy", [_npy_files, _image_folder], ids=["npy-files", "batchfeed-ImageFolderDataset"])
def test_corrupt_lazy_sample_is_named_and_the_saved_state_resumes_past_it(make_loader, tmp_path, lazy, num_workers):
    """A corrupt file is named in the error; from the state saved after the last good batch, a fresh loader over the repaired data yields exactly the remaining batches."""
    make_loader.require("resume")
    paths, dataset, sample_ids, names_it = lazy(tmp_path / "samples")

    def make(ds):
        return make_loader(ds, batch_size=4, shuffle=True, num_workers=num_workers, generator=_gen(2))

    expected = [sample_ids(b) for b in make(dataset())]
    bad = 13
    good_bytes = corrupt(paths[bad])
    loader = make(dataset())
    states = [loader.state_dict()]

    def checkpointing():  # what a training loop does: save the loader's state after each step
        # (a generator, not a local class: a class sits in a reference cycle, and the loader
        # it held, workers and all, would wait for the cyclic GC)
        for batch in loader:
            states.append(loader.state_dict())
            yield batch

    kind, text, batches = load_until_error(checkpointing(), "a loader over a corrupt file")
    delivered, saved = [sample_ids(b) for b in batches], states[-1]
    assert kind is not None and issubclass(kind, ValueError), f"expected a ValueError, got {kind}: {text}"
    fragment = names_it.format(i=bad, name=paths[bad].name)
    assert fragment in text, f"the error does not name the corrupt sample ({fragment!r}): {text}"
    failing = next(k for k, b in enumerate(expected) if bad in b)
    assert delivered == expected[:failing], f"batches before the corrupt one: got {delivered}, expected {expected[:failing]}"

    paths[bad].write_bytes(good_bytes)  # repaired (re-downloaded, re-extracted)
    resumed = make(dataset())
    resumed.load_state_dict(saved)
    rest = [sample_ids(b) for b in resumed]
    assert delivered + rest == expected, f"resumed run lost or repeated batches: {delivered} + {rest} != {expected}"


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
def test_state_taken_after_a_failed_batch_retries_that_batch(make_loader, num_workers):
    """state_dict() taken right after a batch failed resumes at that batch: its good samples are not lost."""
    make_loader.require("resume")

    def make(ds):
        return make_loader(ds, batch_size=4, num_workers=num_workers, generator=_gen(0))

    loader = make(FailingDataset(20, bad=9, message="sample {i}: corrupt"))
    kind, text, batches = load_until_error(loader, "a loader whose sample 9 raises")
    assert kind is ValueError and "sample 9" in text, f"expected ValueError naming sample 9, got {kind}: {text}"
    delivered = [i for b in batches for i in b.tolist()]
    state = loader.state_dict()
    resumed = make(FailingDataset(20, bad=-1))
    resumed.load_state_dict(state)
    rest = [i for b in resumed for i in b.tolist()]
    assert delivered + rest == list(range(20)), f"delivered {delivered}, then after resuming {rest}: samples {sorted(set(range(20)) - set(delivered + rest))} lost"
