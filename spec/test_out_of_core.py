"""Out-of-core batches (issue 15): TensorLoader over an NpyDataset reads each chunk of whole
batches with one gather from the files, and yields DataLoader's batches over the same dataset.

What is specified here: the batches (values, dtypes, shapes, order) and the generator's
state are DataLoader's, for both back ends (memory map, coalesced ``preadv``), shuffled or
not, any batch size, drop_last, Subsets, users' samplers, batch_size=None; ``preadv``
reads adjacent rows in one call; transforms give the per-sample path's seeded results;
resume is exact (the conformance resume state machine, with chunks smaller than an epoch);
bad input names the file, the index or the argument. The whole conformance suite runs
against this path too (spec/npy_loader.py says how).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Subset, random_split

from batchfeed import TensorLoader
from batchfeed.sources import NpyDataset, SourceError, write_npy_dataset
from batchfeed.sources import rows as rows_module
from batchfeed.sources import uring as uring_module
from batchfeed.transforms import Compose, GaussianNoise, Normalize, RandomFlip
from spec.conformance.test_resume_model import STEPS, resume_machine
from spec.npy_loader import as_npy
from spec.strategies import batch_sizes, drop_lasts, pair_data
from spec.test_loader import _epochs, assert_same_epochs

seeds = st.integers(min_value=0, max_value=2**63 - 1)
mmaps = st.booleans()
#: chunk_bytes=1: one batch per read; 300: a few batches per read; None: the default (1 MiB).
chunk_sizes = st.sampled_from([None, 1, 300])


def npy_files(root: Path, X: torch.Tensor, y: torch.Tensor) -> tuple[Path, Path]:
    px, py = root / "X.npy", root / "y.npy"
    np.save(px, X.numpy())
    np.save(py, y.numpy())
    return px, py


@pytest.fixture(scope="module")
def tutorial_files(tmp_path_factory) -> tuple[Path, Path]:
    """1000 samples of the tutorial's data, 5 float32 features."""
    return write_npy_dataset(tmp_path_factory.mktemp("npy"), 1000, 5, seed=3)


def both(ds_args, **kw) -> tuple[DataLoader, TensorLoader]:
    """DataLoader and TensorLoader over the same dataset, each with a generator seeded alike."""
    ds, seed = ds_args
    dl = DataLoader(ds, generator=torch.Generator().manual_seed(seed), **kw)
    tl = TensorLoader(ds, generator=torch.Generator().manual_seed(seed), **kw)
    return dl, tl


# --- DataLoader's batches ----------------------------------------------------------------------

@given(data=pair_data(max_n=300), batch_size=batch_sizes, drop_last=drop_lasts, shuffle=st.booleans(), seed=seeds,
       mmap=mmaps, chunk=chunk_sizes)
@example(data=(torch.arange(65.0).reshape(65, 1), torch.arange(65)), batch_size=32, drop_last=False, shuffle=True,
         seed=1, mmap=False, chunk=1)
@example(data=(torch.arange(64.0).reshape(64, 1), torch.arange(64)), batch_size=32, drop_last=True, shuffle=True,
         seed=1, mmap=True, chunk=None)
def test_same_batches_and_generator_state_as_dataloader_over_the_same_files(data, batch_size, drop_last, shuffle,
                                                                          seed, mmap, chunk):
    """Two epochs: every batch equal (values, dtype, shape) to DataLoader's over the same NpyDataset,
    and the generator left in DataLoader's state, for any size, dtype, feature shape and back end."""
    X, y = data
    with tempfile.TemporaryDirectory() as d:
        ds = NpyDataset(*npy_files(Path(d), X, y), mmap=mmap)
        g_dl, g_tl = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        dl = DataLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g_dl)
        tl = TensorLoader(ds, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, generator=g_tl,
                          chunk_bytes=chunk)
        context = f"n={len(X)}, B={batch_size}, shuffle={shuffle}, drop_last={drop_last}, mmap={mmap}, chunk={chunk}"
        assert_same_epochs(_epochs(tl, 2), _epochs(dl, 2), context=context)
        assert torch.equal(g_tl.get_state(), g_dl.get_state()), f"generator state differs from DataLoader's [{context}]"
        assert len(tl) == len(dl)


@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
@pytest.mark.parametrize("kind", ["random_split", "subset-with-repeats", "batch_size=None", "sampler", "batch_sampler"])
def test_subsets_samplers_and_unbatched_give_dataloaders_batches(tutorial_files, kind, mmap):
    """random_split's parts and a Subset repeating rows, a user's sampler or batch_sampler, and
    batch_size=None: DataLoader's batches (samples) over the same files."""
    ds = NpyDataset(*tutorial_files, mmap=mmap)

    def keywords() -> dict:  # a sampler per loader: each draws from its own generator, seeded alike
        if kind == "batch_size=None":
            return dict(batch_size=None, shuffle=True)
        if kind == "sampler":
            return dict(batch_size=7, sampler=RandomSampler(ds, replacement=True, num_samples=50,
                                                            generator=torch.Generator().manual_seed(4)))
        if kind == "batch_sampler":
            return dict(batch_sampler=BatchSampler(RandomSampler(ds, generator=torch.Generator().manual_seed(4)),
                                                   33, False))
        return dict(batch_size=32, shuffle=True)

    if kind == "random_split":
        ds = random_split(ds, [0.7, 0.3], generator=torch.Generator().manual_seed(0))[1]
    elif kind == "subset-with-repeats":
        ds = Subset(ds, [5, 5, 999, 0, -1, 17, 16, 15] * 9)
    dl = DataLoader(ds, generator=torch.Generator().manual_seed(7), **keywords())
    tl = TensorLoader(ds, generator=torch.Generator().manual_seed(7), **keywords())
    assert_same_epochs(_epochs(tl, 2), _epochs(dl, 2), context=kind)


def test_no_per_sample_read_transform_or_collate_without_transforms(tutorial_files, monkeypatch):
    """A shuffled epoch calls neither __getitem__, __getitems__, the per-sample finish, nor collate."""
    ds = NpyDataset(*tutorial_files)
    expected = _epochs(DataLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(2)), 1)

    def forbidden(*_a, **_k):
        raise AssertionError("per-sample path called")

    for name in ("__getitem__", "__getitems__", "_finish", "_read"):
        monkeypatch.setattr(NpyDataset, name, forbidden)
    monkeypatch.setattr("torch.utils.data._utils.collate.default_collate", forbidden)
    tl = TensorLoader(ds, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(2))
    assert_same_epochs(_epochs(tl, 1), expected, context="no per-sample path")


# --- pread: coalesced reads ----------------------------------------------------------------------

class CountingPreadv:
    """``os.preadv`` that records each call's file offset and byte count."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self._real = os.preadv

    def __call__(self, fd, buffers, offset):
        got = self._real(fd, buffers, offset)
        self.calls.append((offset, got))
        return got


@pytest.fixture
def preadv(monkeypatch) -> CountingPreadv:
    """``os.preadv`` counted, and the reads made with it (not ``io_uring``)."""
    counter = CountingPreadv()
    monkeypatch.setattr(os, "preadv", counter)
    monkeypatch.setattr(rows_module, "BACKEND", "preadv")
    return counter


def _uring_works() -> bool:
    try:
        uring_module.ring()
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _uring_works(), reason="io_uring refused by this kernel (pread_rows falls back to os.preadv)")
@given(indices=st.lists(st.integers(-1000, 999), max_size=300), max_gap=st.sampled_from([0, 20, 4096]),
       iov_max=st.sampled_from([3, 4, 1024]))
@settings(max_examples=40)
def test_io_uring_reads_are_the_preadv_reads(tutorial_files, indices, max_gap, iov_max):
    """Through io_uring: the same reads (count) as one os.preadv each, the same batch as the memory map."""
    ds = NpyDataset(*tutorial_files, mmap=False, max_gap_bytes=max_gap)
    h = ds.headers[0]
    plan = rows_module.plan_rows(rows_module.batch_indices(indices, len(ds), ds))
    got = {}
    old = rows_module.BACKEND, rows_module.IOV_MAX
    try:
        rows_module.IOV_MAX = iov_max
        for backend in ("uring", "preadv"):
            rows_module.BACKEND = backend
            got[backend] = rows_module.pread_rows(ds.open_files()[0], h.path, h.offset, h.shape[1:], h.dtype, plan,
                                                  max_gap_bytes=max_gap)
    finally:
        rows_module.BACKEND, rows_module.IOV_MAX = old
        ds.close()
    assert got["uring"][1] == got["preadv"][1]
    expected = NpyDataset(*tutorial_files).read_batch(indices)[0].numpy()
    assert np.array_equal(got["uring"][0], expected) and np.array_equal(got["preadv"][0], expected)


@pytest.mark.parametrize(("rows", "max_gap", "reads_per_file"), [
    ([10, 11, 12, 13], 0, 1),                 # adjacent: one read
    ([13, 11, 12, 10], 0, 1),                 # adjacent in any order
    ([10, 12], 0, 2),                         # a gap, none allowed
    ([10, 12], 4096, 1),                      # a gap within max_gap_bytes: one read, the gap thrown away
    ([10, 900], 4096, 2),                     # too far apart
    ([7, 7, 8, 7], 0, 1),                     # repeats read once
    (list(range(0, 1000, 2)), 4096, 1),      # every other row of the whole file
])
def test_preadv_reads_nearby_rows_in_one_call(tutorial_files, preadv, rows, max_gap, reads_per_file):
    """Rows adjacent in the file (or at most max_gap_bytes apart) share one preadv per file; the
    batch is still in the asked order and equal to the memory map's."""
    ds = NpyDataset(*tutorial_files, mmap=False, max_gap_bytes=max_gap)
    got = ds.read_batch(rows)
    assert len(preadv.calls) == 2 * reads_per_file, f"{preadv.calls} for rows {rows}"
    expected = NpyDataset(*tutorial_files).read_batch(rows)
    assert all(torch.equal(a, b) for a, b in zip(got, expected))


def test_a_sequential_pread_epoch_reads_each_chunk_with_one_call_per_file(tutorial_files, preadv):
    """shuffle=False: one preadv per file per chunk of batches (1000 rows of 28 B: one chunk)."""
    batches = list(TensorLoader(NpyDataset(*tutorial_files, mmap=False), batch_size=100, generator=torch.Generator()))
    assert len(batches) == 10 and len(preadv.calls) == 2, preadv.calls
    batches = list(TensorLoader(NpyDataset(*tutorial_files, mmap=False), batch_size=100, chunk_bytes=1,
                                generator=torch.Generator()))
    assert len(preadv.calls) == 2 + 2 * 10, "chunk_bytes=1: one read per file per batch"


@given(indices=st.lists(st.integers(-1000, 999), max_size=300), max_gap=st.sampled_from([0, 20, 4096]),
       iov_max=st.sampled_from([3, 4, 1024]))
@settings(max_examples=40)
def test_preadv_batches_equal_the_memory_maps_whatever_the_rows(tutorial_files, indices, max_gap, iov_max):
    """Any rows (repeats, negatives, any order), any gap allowance, even a tiny IOV_MAX (runs split
    across calls): the same batch as through the memory map."""
    old, real = rows_module.IOV_MAX, os.preadv
    widest = []

    def preadv(fd, buffers, offset):
        widest.append(len(buffers))
        return real(fd, buffers, offset)

    rows_module.IOV_MAX, os.preadv = iov_max, preadv
    backend, rows_module.BACKEND = rows_module.BACKEND, "preadv"
    try:
        got = NpyDataset(*tutorial_files, mmap=False, max_gap_bytes=max_gap).read_batch(indices)
    finally:
        rows_module.IOV_MAX, os.preadv, rows_module.BACKEND = old, real, backend
    assert max(widest, default=0) <= iov_max, f"a preadv with {max(widest)} buffers, IOV_MAX {iov_max}"
    expected = NpyDataset(*tutorial_files).read_batch(indices)
    assert all(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b) for a, b in zip(got, expected))
    assert got[0].shape == (len(indices), 5)


# --- transforms ----------------------------------------------------------------------------------

TRANSFORMS = {
    "normalize (batched)": dict(transform=Normalize([0.5] * 5, [2.0] * 5)),
    "compose of normalizes (batched)": dict(transform=Compose([Normalize(0.1, 3.0), Normalize([1.0] * 5, [0.5] * 5)])),
    "random flip + noise (per sample)": dict(transform=Compose([RandomFlip(-1), GaussianNoise(0.5)])),
    "normalize + label transform (per sample)": dict(transform=Normalize(0.0, 2.0),
                                                     target_transform=lambda t: t * 10),
}


@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_transforms_give_the_per_sample_paths_seeded_results(tutorial_files, name, mmap):
    """Transforms on whole batches where they have an exact batch form, per sample otherwise: either
    way DataLoader's batches bit for bit, in two epochs apart (set_epoch) and with another seed."""
    for seed in (0, 11):
        ds = NpyDataset(*tutorial_files, mmap=mmap, seed=seed, **TRANSFORMS[name])
        dl, tl = both((ds, 5), batch_size=50, shuffle=True)
        for epoch in (0, 3):
            ds.set_epoch(epoch)
            assert_same_epochs(_epochs(tl, 1), _epochs(dl, 1), context=f"{name}, seed {seed}, epoch {epoch}")


def test_a_batchable_transform_runs_once_per_read_not_per_sample(tutorial_files, monkeypatch):
    """Normalize runs on each read's batch: never called per sample."""
    calls = []
    norm = Normalize([0.5] * 5, [2.0] * 5)
    monkeypatch.setattr(Normalize, "__call__", lambda self, x: calls.append(x.shape))
    batches = list(TensorLoader(NpyDataset(*tutorial_files, transform=norm), batch_size=100, chunk_bytes=1,
                                generator=torch.Generator()))
    assert len(batches) == 10 and calls == []


def test_random_transforms_differ_between_epochs_and_samples(tutorial_files):
    """The per-sample generators are used: another epoch gives another augmentation (a check that
    the equality above is not between two untransformed epochs)."""
    ds = NpyDataset(*tutorial_files, transform=GaussianNoise(0.5))
    tl = TensorLoader(ds, batch_size=1000, generator=torch.Generator())
    a = next(iter(tl))[0]
    ds.set_epoch(1)
    b = next(iter(tl))[0]
    raw = next(iter(TensorLoader(NpyDataset(*tutorial_files), batch_size=1000, generator=torch.Generator())))[0]
    assert not torch.equal(a, b) and not torch.equal(a, raw)


# --- resume ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
def test_resume_state_machine_with_reads_smaller_than_an_epoch(mmap):
    """The conformance resume state machine (any interleaving of next/iter/state_dict/load_state_dict
    into fresh loaders follows the uninterrupted run), with every batch its own read
    (chunk_bytes=1) so resuming crosses read boundaries."""

    def make(dataset, **kw):
        return TensorLoader(as_npy(dataset, mmap=mmap), chunk_bytes=1, **kw)

    run_state_machine_as_test(resume_machine(make),
                              settings=settings(stateful_step_count=STEPS, deadline=None, max_examples=25))


@given(stop=st.integers(0, 40), chunk=chunk_sizes, mmap=mmaps, seed=st.integers(0, 2**31))
@settings(max_examples=25)
def test_state_dict_resumes_exactly_after_a_json_round_trip(tutorial_files, stop, chunk, mmap, seed):
    """Stop after ``stop`` batches, save as JSON, resume in a fresh loader: the rest of the epoch and
    the next epoch are the uninterrupted run's."""
    def make():
        return TensorLoader(NpyDataset(*tutorial_files, mmap=mmap), batch_size=30, shuffle=True, chunk_bytes=chunk,
                            generator=torch.Generator().manual_seed(seed))
    ref = _epochs(make(), 2)
    loader = make()
    it = iter(loader)
    for _ in range(min(stop, len(ref[0]))):
        next(it)
    fresh = make()
    fresh.load_state_dict(json.loads(json.dumps(loader.state_dict())))
    rest = _epochs(fresh, 2)
    assert_same_epochs(rest, [ref[0][min(stop, len(ref[0])):], ref[1]], context=f"stop {stop}, chunk {chunk}")


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("indices", "error", "match"), [
    ([0, 1000], IndexError, r"X\.npy.*index 1000 out of range for dataset of length 1000"),
    ([-1001], IndexError, r"index -1001 out of range"),
    ([0.5, 1.0], TypeError, r"X\.npy.*1-d sequence of integer indices, got float64"),
    ([[0, 1]], TypeError, r"integer indices, got int64 of shape \(1, 2\)"),
    (np.array([True, False]), TypeError, r"integer indices, got bool"),
])
@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
def test_read_batch_refuses_bad_indices_naming_file_and_index(tutorial_files, indices, error, match, mmap):
    with pytest.raises(error, match=match):
        NpyDataset(*tutorial_files, mmap=mmap).read_batch(indices)


def test_a_file_truncated_after_construction_is_an_error_naming_it_and_the_rows(tmp_path):
    px, py = write_npy_dataset(tmp_path, 100, 4)
    ds = NpyDataset(px, py, mmap=False)
    with open(px, "r+b") as f:
        f.truncate(os.path.getsize(px) - 136)  # rows 90-99 of 16 B: 24 B left
    with pytest.raises(SourceError, match=r"X\.npy.*rows 90 to 99: short read \(24 of 160 bytes\).*truncated"):
        list(TensorLoader(ds, batch_size=10, chunk_bytes=1, generator=torch.Generator()))


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(device="meta"), ValueError, r"^device='meta': TensorLoader reads NpyDataset batch by batch on the CPU and cannot "
                                      r"move its data once; move each batch \(batchfeed\.transforms\.OnDevice\)$"),
    (dict(num_workers=2), TypeError, r"num_workers=2"),
    (dict(chunk_bytes=0), ValueError, r"chunk_bytes must be a positive integer"),
])
def test_keywords_it_cannot_honour_for_files_are_refused_naming_them(tutorial_files, kwargs, error, match):
    with pytest.raises(error, match=match):
        TensorLoader(NpyDataset(*tutorial_files), batch_size=4, **kwargs)


def test_device_cpu_is_where_files_are_read(tutorial_files):
    """device='cpu' (or a torch.device of it) is accepted for files: the batches are the CPU loader's."""
    expected = _epochs(TensorLoader(NpyDataset(*tutorial_files), batch_size=64, generator=torch.Generator()), 1)
    for device in ("cpu", torch.device("cpu")):
        got = _epochs(TensorLoader(NpyDataset(*tutorial_files), batch_size=64, device=device, generator=torch.Generator()), 1)
        assert_same_epochs(got, expected, context=f"device={device!r}")


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_max_gap_bytes_must_be_a_non_negative_integer(tutorial_files, value):
    with pytest.raises(ValueError, match=rf"max_gap_bytes must be a non-negative integer, got {value!r}"):
        NpyDataset(*tutorial_files, max_gap_bytes=value)


@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
def test_close_releases_the_files_and_the_next_read_reopens_them(tutorial_files, mmap):
    ds = NpyDataset(*tutorial_files, mmap=mmap)
    first = ds.read_batch([3, 1])
    ds.close()
    assert ds._open is None
    again = ds.read_batch([3, 1])
    assert all(torch.equal(a, b) for a, b in zip(first, again))


class _CountedRows(torch.utils.data.Dataset):
    """A dataset that reads whole batches itself, recording each read's size; ``row_bytes`` as given (None: no such attribute)."""

    def __init__(self, n: int, row_bytes: int | None) -> None:
        self.X, self.y, self.reads = torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n), []
        if row_bytes is not None:
            self.row_bytes = row_bytes

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i]

    def read_batch(self, indices):
        idx = torch.as_tensor(indices)
        self.reads.append(len(idx))
        return [self.X[idx], self.y[idx]]


@pytest.mark.parametrize(("row_bytes", "chunk_bytes"), [(1, 8), (None, 8), (4, 32), (3, 25)])
def test_each_read_is_the_whole_batches_that_fit_in_chunk_bytes(row_bytes, chunk_bytes):
    """A read takes chunk_bytes // row_bytes rows, rounded down to whole batches (a source without row_bytes: 1 byte a row)."""
    ds = _CountedRows(40, row_bytes)
    got = _epochs(TensorLoader(ds, batch_size=2, chunk_bytes=chunk_bytes, generator=torch.Generator()), 1)
    assert ds.reads == [8] * 5, f"rows per read {ds.reads}, expected 8 ({chunk_bytes} bytes of {row_bytes or 1}-byte rows)"
    assert_same_epochs(got, _epochs(DataLoader(ds, batch_size=2, generator=torch.Generator()), 1), context="counted rows")


@pytest.mark.cuda
@pytest.mark.parametrize("kw", [dict(batch_size=32, shuffle=True), dict(batch_size=None),
                                dict(batch_sampler=[[0, 999, 3]]), dict(sampler=[3, 1], batch_size=None)],
                         ids=["batched", "unbatched", "batch_sampler", "unbatched-sampler"])
def test_pin_memory_pins_every_batch_read(tutorial_files, kw):
    """pin_memory=True with CUDA present: every batch read from the files is in pinned memory, with the unpinned values."""
    def make(**pin):
        return TensorLoader(NpyDataset(*tutorial_files), generator=torch.Generator().manual_seed(0), **pin, **kw)

    batches = _epochs(make(pin_memory=True), 1)
    assert all(t.is_pinned() for b in batches[0] for t in b)
    assert_same_epochs(batches, _epochs(make(), 1), context=f"pin_memory=True, {kw}")


def test_repr_names_the_source(tutorial_files):
    r = repr(TensorLoader(NpyDataset(*tutorial_files), batch_size=8))
    assert "source=NpyDataset(n=1000" in r and "X.npy" in r


@pytest.mark.parametrize("mmap", [True, False], ids=["memmap", "pread"])
def test_a_big_endian_file_is_served_in_the_machines_byte_order(tmp_path, mmap):
    """torch holds native byte order only: a '>f4' features file reads as float32 of the same values,
    per sample and per batch alike."""
    X = np.arange(40, dtype=">f4").reshape(10, 4)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(10, dtype=">i8"))
    ds = NpyDataset(tmp_path / "X.npy", tmp_path / "y.npy", mmap=mmap)
    xb, yb = next(iter(TensorLoader(ds, batch_size=10, generator=torch.Generator())))
    assert xb.dtype == torch.float32 and torch.equal(xb, torch.arange(40.0).reshape(10, 4))
    assert yb.dtype == torch.int64 and torch.equal(yb, torch.arange(10))
    assert torch.equal(ds[3][0], xb[3]) and ds[3][1].item() == 3
