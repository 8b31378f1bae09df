"""Worker processes as DataLoader documents them: ``worker_init_fn`` and its worker id,
``get_worker_info()``'s fields and per-worker seeds, ``persistent_workers`` across epochs,
``timeout``, ``in_order``, ``prefetch_factor`` and ``multiprocessing_context``.

Every test here runs against the loader under test (``--loader``); a loader that declares
``num_workers`` unsupported skips them. Workers start with the platform's default start
method (fork on Linux), on datasets of a few dozen samples, so the module stays fast.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings

import pytest
import torch

from ..helpers import IndexedDataset, assert_permutation, epoch
from ..worker_datasets import SlowAt, WorkerInfoProbe, record_worker_id
from .test_parallel import LoaderHangs, load_until_error

COL = {name: k for k, name in enumerate(WorkerInfoProbe.COLUMNS)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def probe_epochs(loader, epochs: int = 1) -> list[torch.Tensor]:
    """Each epoch's probe rows (one per sample, WorkerInfoProbe's columns), in the order they came."""
    return [torch.cat([b.reshape(-1, len(COL)) for b in loader]) for _ in range(epochs)]


def by_worker(rows: torch.Tensor, column: str) -> dict[int, set[int]]:
    """For each worker id, the set of values ``column`` took in the samples it loaded."""
    out: dict[int, set[int]] = {}
    for row in rows.tolist():
        out.setdefault(row[COL["id"]], set()).add(row[COL[column]])
    return out


def test_worker_info_names_each_worker_and_its_seed(make_loader):
    """In a worker, get_worker_info() gives its id in [0, num_workers), num_workers, the seed torch was seeded with there, and the worker's own copy of the dataset."""
    (rows,) = probe_epochs(make_loader(WorkerInfoProbe(12), batch_size=2, num_workers=3, generator=_gen(1)))
    assert sorted(by_worker(rows, "id")) == [0, 1, 2], f"samples came from worker ids {sorted(by_worker(rows, 'id'))}, expected 0, 1, 2"
    assert set(rows[:, COL["num_workers"]].tolist()) == {3}, f"num_workers seen in workers: {set(rows[:, COL['num_workers']].tolist())}"
    assert torch.equal(rows[:, COL["seed"]], rows[:, COL["initial_seed"]]), (
        f"get_worker_info().seed {rows[:, COL['seed']].tolist()} is not torch.initial_seed() in the worker {rows[:, COL['initial_seed']].tolist()}")
    seeds = by_worker(rows, "seed")
    assert all(len(s) == 1 for s in seeds.values()) and len({min(s) for s in seeds.values()}) == 3, f"per-worker seeds {seeds}: one each, all distinct"
    assert set(rows[:, COL["is_copy"]].tolist()) == {1}, "get_worker_info().dataset is not the worker's copy of the dataset"
    assert os.getpid() not in set(rows[:, COL["pid"]].tolist()), "a sample was loaded in the main process"


def test_worker_info_is_none_in_the_main_process(make_loader):
    """With num_workers=0 the dataset is read in the main process, where get_worker_info() is None."""
    (rows,) = probe_epochs(make_loader(WorkerInfoProbe(6), batch_size=2))
    assert set(rows[:, COL["pid"]].tolist()) == {os.getpid()}, "num_workers=0 loaded samples in another process"
    assert set(rows[:, COL["id"]].tolist()) == {-1}, f"get_worker_info() was not None in the main process: ids {rows[:, COL['id']].tolist()}"


def test_worker_seeds_follow_the_generator_and_change_each_epoch(make_loader):
    """The workers' seeds are reproducible from the generator's seed, differ for another seed, and are new at every epoch."""
    def seeds(seed: int, epochs: int = 1) -> list[set[int]]:
        loader = make_loader(WorkerInfoProbe(8), batch_size=2, num_workers=2, generator=_gen(seed))
        return [set(rows[:, COL["seed"]].tolist()) for rows in probe_epochs(loader, epochs)]

    first, again, other = seeds(4, epochs=2), seeds(4, epochs=2), seeds(5)
    assert first == again, f"generator seed 4 twice gave worker seeds {first} and {again}"
    assert first[0] != other[0], f"generator seeds 4 and 5 gave the same worker seeds {first[0]}"
    assert not first[0] & first[1], f"epochs 0 and 1 share worker seeds {first[0] & first[1]}: fresh workers must be seeded anew"


def test_worker_init_fn_gets_each_worker_id_before_loading(make_loader):
    """worker_init_fn is called once in each worker, with its id (an int in [0, num_workers - 1]), before that worker loads a sample."""
    (rows,) = probe_epochs(make_loader(WorkerInfoProbe(12), batch_size=2, num_workers=3, generator=_gen(2),
                                       worker_init_fn=record_worker_id))
    for row in rows.tolist():
        assert row[COL["init_calls"]] == 1, f"sample {row[0]}: worker_init_fn ran {row[COL['init_calls']]} times in its worker before it, expected once"
        assert row[COL["init_id"]] == row[COL["id"]], f"sample {row[0]}: worker_init_fn got id {row[COL['init_id']]} in worker {row[COL['id']]}"
    assert sorted(by_worker(rows, "init_id")) == [0, 1, 2]


@pytest.mark.parametrize("persistent_workers", [False, True], ids=["fresh-workers", "persistent-workers"])
def test_persistent_workers_keep_their_processes_and_dataset_copies(make_loader, persistent_workers):
    """persistent_workers=True serves every epoch from the same worker processes, whose dataset copies live on; False starts new ones each epoch."""
    loader = make_loader(WorkerInfoProbe(8), batch_size=2, num_workers=2, generator=_gen(3),
                         persistent_workers=persistent_workers, worker_init_fn=record_worker_id)
    e0, e1 = probe_epochs(loader, epochs=2)
    pids0, pids1 = set(e0[:, COL["pid"]].tolist()), set(e1[:, COL["pid"]].tolist())
    if persistent_workers:
        assert pids0 == pids1, f"persistent workers: epoch 0 from processes {pids0}, epoch 1 from {pids1}"
        assert int(e1[:, COL["served"]].min()) > 1, "persistent workers: epoch 1 read from fresh dataset copies"
        assert set(e1[:, COL["init_calls"]].tolist()) == {1}, "persistent workers: worker_init_fn ran again in epoch 1"
    else:
        assert not pids0 & pids1, f"fresh workers: processes {pids0 & pids1} served both epochs"
        assert sorted(e1[:, COL["served"]].tolist())[:2] == [1, 1], "fresh workers: epoch 1 did not start from fresh dataset copies"
    assert_permutation(e1[:, COL["i"]].tolist(), 8, context=f"epoch 1, persistent_workers={persistent_workers}")


def test_timeout_raises_when_a_batch_takes_longer(make_loader):
    """With timeout=0.5, a batch that takes a worker longer raises RuntimeError in the caller, after about the timeout, not when the batch comes."""
    # The slow batch takes 3 s: an error before 2.5 s can only be the timeout's.
    loader = make_loader(SlowAt(8, slow=2, seconds=3), batch_size=2, num_workers=1, timeout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the watchdog (2.5 s) covers the iteration only, not the shutdown of the stalled worker
        kind, text, delivered = load_until_error(loader, "a loader with timeout=0.5 and a batch that takes 3 s", seconds=2.5)
    assert kind is not LoaderHangs, f"timeout=0.5 was not applied: no error within 2.5 s ({text})"
    assert kind is RuntimeError and "timed out" in text, f"expected RuntimeError saying the loader timed out, got {kind}: {text}"
    assert [b.tolist() for b in delivered] == [[0, 1]], f"batches before the slow one: {[b.tolist() for b in delivered]}"


@pytest.mark.parametrize("context", ["fork", "fork-context-object"])
def test_multiprocessing_context_gives_the_same_batches(make_loader, context):
    """multiprocessing_context, as a start method name or a context object, starts workers that yield the batches of num_workers=0."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork start method on this platform")
    ctx = "fork" if context == "fork" else multiprocessing.get_context("fork")
    ds = IndexedDataset(21)
    expected = [y.tolist() for _, y in make_loader(ds, batch_size=4, generator=_gen(6))]
    got = [y.tolist() for _, y in make_loader(ds, batch_size=4, generator=_gen(6), num_workers=2,
                                              multiprocessing_context=ctx)]
    assert got == expected, f"multiprocessing_context={context}: {got}, but num_workers=0 gave {expected}"


@pytest.mark.parametrize("prefetch_factor", [1, 4])
def test_prefetch_factor_keeps_the_batches(make_loader, prefetch_factor):
    """Any prefetch_factor yields the batches of num_workers=0, in order (it sets how far ahead workers load, not what).

    In dataset order: whether workers keep a shuffled order is test_workers.py's question."""
    ds = IndexedDataset(30)
    expected = [y.tolist() for _, y in make_loader(ds, batch_size=4, generator=_gen(8))]
    got = [y.tolist() for _, y in make_loader(ds, batch_size=4, generator=_gen(8), num_workers=2,
                                              prefetch_factor=prefetch_factor)]
    assert got == expected, f"prefetch_factor={prefetch_factor}: {got}, but num_workers=0 gave {expected}"


def test_in_order_false_still_yields_every_batch_once(make_loader):
    """in_order=False may reorder batches, but every batch arrives exactly once, whole, even when one worker stalls."""
    loader = make_loader(SlowAt(24, slow=0, seconds=0.3), batch_size=3, num_workers=2, in_order=False)
    batches = sorted(b.tolist() for b in epoch(loader))
    assert batches == [list(range(k, k + 3)) for k in range(0, 24, 3)], f"in_order=False gave batches {batches}"


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
def test_pin_memory_keeps_the_batches(make_loader, num_workers):
    """pin_memory=True yields the batches of pin_memory=False; with an accelerator they are in pinned memory (without one, DataLoader warns and leaves them unpinned)."""
    ds = IndexedDataset(10)
    expected = epoch(make_loader(ds, batch_size=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no accelerator: "pin_memory ... no accelerator is found"
        got = epoch(make_loader(ds, batch_size=4, pin_memory=True, num_workers=num_workers))
    assert len(got) == len(expected)
    for k, ((x, y), (xe, ye)) in enumerate(zip(got, expected)):
        assert torch.equal(x, xe) and torch.equal(y, ye), f"batch {k}: pin_memory=True changed it: {y.tolist()} vs {ye.tolist()}"
        if torch.accelerator.is_available():
            assert x.is_pinned() and y.is_pinned(), f"batch {k} is not in pinned memory with pin_memory=True"
