"""Block shuffle (issue 15): :class:`batchfeed.BlockShuffleSampler`.

What is specified here: every index exactly once per epoch, in the order a literal shuffle
buffer gives from the same draws (the vectorized order is checked against a plain loop);
the extremes (block 1 = a uniform shuffle, buffer 1 = whole blocks, one block and buffer 1 =
sequential); reproducible for a seed, different from epoch to epoch; bounded displacement;
uniformity, counted over many seeded epochs with a stated tolerance (a fixed generator, so
the counts are the same every run and never flaky); the same batches through torch's
DataLoader and batchfeed's TensorLoader (tensors and ``.npy`` files); exact resume through
TensorLoader, torchdata's StatefulDataLoader and the sampler's own ``state_dict``; errors
naming the bad argument.
"""

from __future__ import annotations

import io
import json
import math
import statistics

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from batchfeed import BlockShuffleSampler, TensorLoader, blockread
from batchfeed.blockread import measure_block_reads, speedups
from batchfeed.experiments.blocks import block_convergence
from batchfeed.outofcore import make_files
from batchfeed.samplers import block_shuffle_order
from batchfeed.sources import NpyDataset, write_npy_dataset
from batchfeed.targets import COLD_RESIDENT_MAX
from spec.helpers import IndexedDataset

seeds = st.integers(min_value=0, max_value=2**63 - 1)
ns = st.integers(min_value=0, max_value=300)
block_sizes = st.integers(min_value=1, max_value=320)
buffer_sizes = st.integers(min_value=1, max_value=320)


def order(n: int, block: int, buffer: int, seed: int) -> list[int]:
    return block_shuffle_order(n, block, buffer, torch.Generator().manual_seed(seed)).tolist()


def literal_order(n: int, block: int, buffer: int, seed: int) -> list[int]:
    """The shuffle buffer as streaming loaders write it, one index at a time, from the same draws:
    ``randperm`` of the blocks, then one ``randint(buffer)`` slot per step while the stream lasts,
    then ``randperm`` of what is left in the buffer."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randperm(-(-n // block), generator=g).tolist()
    stream = [i for b in blocks for i in range(b * block, min(n, (b + 1) * block))]
    if buffer == 1:
        return stream
    if buffer >= n:
        return [stream[i] for i in torch.randperm(n, generator=g).tolist()]
    slots = torch.randint(buffer, (n - buffer,), generator=g).tolist()
    held, out = stream[:buffer], []
    for t, r in enumerate(slots):
        out.append(held[r])
        held[r] = stream[buffer + t]
    return out + [held[i] for i in torch.randperm(buffer, generator=g).tolist()]


# --- the order ---------------------------------------------------------------------------------

@given(n=ns, block=block_sizes, buffer=buffer_sizes, seed=seeds)
def test_every_index_exactly_once_in_the_literal_buffers_order(n, block, buffer, seed):
    """One epoch is a permutation of 0..n-1, equal to a literal block shuffle + shuffle buffer from the same draws."""
    got = order(n, block, buffer, seed)
    assert sorted(got) == list(range(n))
    assert got == literal_order(n, block, buffer, seed)


@given(n=ns, block=block_sizes, seed=seeds)
def test_buffer_of_one_hands_out_whole_blocks(n, block, seed):
    """buffer_size=1: runs of block_size consecutive indices, each starting at a multiple of block_size (the last block shorter)."""
    got, p, starts = order(n, block, 1, seed), 0, []
    while p < n:
        first = got[p]
        assert first % block == 0, (p, first)
        run = list(range(first, min(n, first + block)))
        assert got[p:p + len(run)] == run
        starts.append(first)
        p += len(run)
    assert sorted(starts) == list(range(0, n, block))


@given(n=st.integers(min_value=0, max_value=300), extra=st.integers(min_value=0, max_value=50), seed=seeds)
def test_one_block_and_buffer_of_one_is_sequential(n, extra, seed):
    """block_size >= n with buffer_size=1: 0, 1, ..., n-1."""
    assert order(n, n + extra or 1, 1, seed) == list(range(n))


@given(n=st.integers(min_value=1, max_value=300), buffer=buffer_sizes, seed=seeds)
def test_displacement_is_bounded_by_the_buffer(n, buffer, seed):
    """In one block (the stream is 0..n-1), index i never comes out before position i - (buffer - 1):
    the first q+1 indices handed out are all < q + buffer."""
    got = order(n, n, buffer, seed)
    for q, i in enumerate(got):
        assert q >= i - (buffer - 1), (q, i)
    running = 0
    for q, i in enumerate(got):
        running = max(running, i)
        assert running < q + buffer


def test_block_of_one_is_a_uniform_shuffle():
    """block_size=1: each index lands at each position with probability 1/n, for a buffer of 1, 3 and n.

    n=8, 16,000 epochs from one seeded generator: each (index, position) count has mean 2000
    and standard deviation sqrt(16000 * 1/8 * 7/8) = 41.8; every count must lie within 5 of
    them (209), and the chi-square statistic over the 64 cells (49 degrees of freedom) below
    100 (p < 1e-4 for a uniform shuffle). The generator is seeded, so the counts are fixed.
    """
    n, epochs = 8, 16_000
    for buffer in (1, 3, n):
        g = torch.Generator().manual_seed(1234 + buffer)
        counts = torch.zeros(n, n)
        for _ in range(epochs):
            counts[block_shuffle_order(n, 1, buffer, g), torch.arange(n)] += 1
        mean, sd = epochs / n, math.sqrt(epochs / n * (1 - 1 / n))
        assert (counts - mean).abs().max() <= 5 * sd, (buffer, counts)
        assert float(((counts - mean) ** 2 / mean).sum()) < 100, buffer


def test_block_order_is_uniform_and_the_buffer_only_reaches_back_its_size():
    """n=40, block 10, buffer 1: each of the 4 blocks comes first in a quarter of 8,000 epochs (within 5 sd);
    with buffer 5 the first index handed out is always from the first block's first 5 rows."""
    g = torch.Generator().manual_seed(99)
    firsts = torch.zeros(4)
    for _ in range(8000):
        firsts[block_shuffle_order(40, 10, 1, g)[0] // 10] += 1
    assert (firsts - 2000).abs().max() <= 5 * math.sqrt(8000 * 0.25 * 0.75), firsts
    for _ in range(200):
        first = int(block_shuffle_order(40, 10, 5, g)[0])
        assert first % 10 < 5


@given(n=st.integers(min_value=200, max_value=300), block=st.integers(min_value=1, max_value=10), buffer=buffer_sizes,
       seed=seeds)
def test_reproducible_for_a_seed_and_different_every_epoch(n, block, buffer, seed):
    """Two samplers with generators seeded alike give the same epochs; consecutive epochs differ
    (at least 20 blocks: two equal block orders have probability 1/20! < 1e-18)."""
    a = BlockShuffleSampler(n, block, buffer, generator=torch.Generator().manual_seed(seed))
    b = BlockShuffleSampler(list(range(n)), block, buffer, generator=torch.Generator().manual_seed(seed))
    epochs_a, epochs_b = [list(a) for _ in range(3)], [list(b) for _ in range(3)]
    assert epochs_a == epochs_b
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert len(a) == n


@pytest.mark.uses_global_rng
def test_without_a_generator_each_epoch_draws_a_seed_from_the_global_rng():
    """generator=None: like RandomSampler, a seed from torch's global RNG per epoch (so torch.manual_seed reproduces it)."""
    torch.manual_seed(5)
    first = [list(BlockShuffleSampler(100, 4)) for _ in range(2)]
    torch.manual_seed(5)
    s = BlockShuffleSampler(100, 4)
    assert [list(s), list(s)] == first
    assert first[0] != first[1]


# --- with loaders -------------------------------------------------------------------------------

def _labels(loader) -> list[list[int]]:
    return [b[1].tolist() for b in loader]


@given(n=st.integers(min_value=1, max_value=200), block=st.integers(min_value=1, max_value=64),
       buffer=st.integers(min_value=1, max_value=64), batch=st.integers(min_value=1, max_value=32),
       drop_last=st.booleans(), seed=seeds)
def test_dataloader_and_tensorloader_give_the_same_batches(n, block, buffer, batch, drop_last, seed):
    """With the sampler, torch's DataLoader and TensorLoader yield the same batches, epoch after epoch, in the sampler's order."""
    ds = IndexedDataset(n)
    loaders = [make(ds, batch_size=batch, drop_last=drop_last, generator=torch.Generator(),
                    sampler=BlockShuffleSampler(ds, block, buffer, generator=torch.Generator().manual_seed(seed)))
               for make in (DataLoader, TensorLoader)]
    expected = BlockShuffleSampler(n, block, buffer, generator=torch.Generator().manual_seed(seed))
    for _ in range(3):
        want = list(expected)
        stop = n - n % batch if drop_last else n
        dl, tl = (_labels(loader) for loader in loaders)
        assert dl == tl == [want[i:i + batch] for i in range(0, stop, batch)]


def test_tensorloader_reads_npy_files_in_the_samplers_order(tmp_path):
    """TensorLoader(NpyDataset, sampler=BlockShuffleSampler) gives DataLoader's batches over the same files, both back ends."""
    px, py = write_npy_dataset(tmp_path, 500, 4, seed=3)
    for mmap in (True, False):
        ds = NpyDataset(px, py, mmap=mmap)
        got = [[t.clone() for t in b] for b in TensorLoader(
            ds, batch_size=32, generator=torch.Generator(), sampler=BlockShuffleSampler(ds, 16, 48, generator=torch.Generator().manual_seed(1)))]
        want = list(DataLoader(ds, batch_size=32, generator=torch.Generator(),
                               sampler=BlockShuffleSampler(ds, 16, 48, generator=torch.Generator().manual_seed(1))))
        assert len(got) == len(want) == 16
        for (gx, gy), (wx, wy) in zip(got, want):
            assert torch.equal(gx, wx) and torch.equal(gy, wy)
        ds.close()


def _resumed(make, n, batch, stop_after):
    """(served then resumed, uninterrupted) labels of epoch 2, the state saved after ``stop_after`` batches of it."""
    loader, resumed, plain = make(), make(), make()
    list(loader)
    it = iter(loader)
    served = [next(it)[1].tolist() for _ in range(stop_after)]
    resumed.load_state_dict(json.loads(json.dumps(loader.state_dict())))
    list(plain)
    return served + _labels(resumed), _labels(plain), _labels(resumed), _labels(plain)


@pytest.mark.parametrize("kind", ["TensorLoader", "StatefulDataLoader"])
@pytest.mark.parametrize("stop_after", [0, 1, 3, 7])
def test_loaders_resume_the_sampler_exactly(kind, stop_after):
    """A loader's state_dict saved mid-epoch resumes the rest of that epoch, then the same later epochs.

    TensorLoader restores the sampler's generator and skips the batches served; torchdata's
    StatefulDataLoader restores the sampler through its state_dict.
    """
    if kind == "TensorLoader":
        make_loader = TensorLoader
    else:
        make_loader = pytest.importorskip("torchdata.stateful_dataloader").StatefulDataLoader
    ds = IndexedDataset(50)

    def make():
        return make_loader(ds, batch_size=7, generator=torch.Generator().manual_seed(1), sampler=BlockShuffleSampler(ds, 4, 6, generator=torch.Generator().manual_seed(8)))
    first, plain, later, plain_later = _resumed(make, 50, 7, stop_after)
    assert first == plain
    assert later == plain_later


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("gen", [True, False], ids=["generator", "global-rng"])
@pytest.mark.parametrize("served", [0, 11, 29])
def test_sampler_state_dict_resumes_its_epoch(gen, served):
    """The sampler's own state (JSON-safe): saved after iter() and ``served`` indices, a fresh sampler
    that loads it hands out the rest of that epoch; saved between epochs, the next epoch."""
    torch.manual_seed(0)
    make = lambda: BlockShuffleSampler(30, 4, 5, generator=torch.Generator().manual_seed(2) if gen else None)  # noqa: E731
    s, t = make(), make()
    list(s)
    it = iter(s)
    head = [next(it) for _ in range(served)]
    state = json.loads(json.dumps(s.state_dict()))
    assert state["in_epoch"] and state["yielded"] == served
    rest = list(it)
    t.load_state_dict(state)
    assert head + list(t) == head + rest and len(head + rest) == 30
    between = json.loads(json.dumps(s.state_dict()))
    assert not between["in_epoch"]
    if gen:
        u = make()
        u.load_state_dict(between)
        assert list(u) == list(s)


@pytest.mark.uses_global_rng
def test_sampler_state_dict_refuses_another_sampler():
    """load_state_dict names what differs: the format, n, block_size, buffer_size, the generator setup."""
    s = BlockShuffleSampler(30, 4, generator=torch.Generator())
    with pytest.raises(ValueError, match="not a BlockShuffleSampler state_dict"):
        s.load_state_dict({"format": "x"})
    for other, words in [(BlockShuffleSampler(31, 4, generator=torch.Generator()), "n=31"),
                         (BlockShuffleSampler(30, 5, generator=torch.Generator()), "block_size=5"),
                         (BlockShuffleSampler(30, 4, 9, generator=torch.Generator()), "buffer_size=9"),
                         (BlockShuffleSampler(30, 4), "had no generator")]:
        with pytest.raises(ValueError, match=words):
            s.load_state_dict(other.state_dict())


# --- bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "words"), [
    (dict(data_source_or_n=10, block_size=0), ValueError, "block_size must be a positive integer, got 0"),
    (dict(data_source_or_n=10, block_size=-3), ValueError, "block_size must be a positive integer, got -3"),
    (dict(data_source_or_n=10, block_size=2.0), ValueError, "block_size must be a positive integer, got 2.0"),
    (dict(data_source_or_n=10, block_size=True), ValueError, "block_size must be a positive integer, got True"),
    (dict(data_source_or_n=10, block_size=4, buffer_size=0), ValueError, "buffer_size must be a positive integer, got 0"),
    (dict(data_source_or_n=-1, block_size=4), ValueError, "data_source_or_n must be .* got -1"),
    (dict(data_source_or_n=object(), block_size=4), TypeError, "data_source_or_n must be a dataset with len"),
    (dict(data_source_or_n=10, block_size=4, generator=42), TypeError, "generator must be a torch.Generator or None, got int"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, words):
    """A bad block_size, buffer_size, length or generator raises naming the argument and the value."""
    with pytest.raises(error, match=words):
        BlockShuffleSampler(**kwargs)


def test_empty_dataset_gives_an_empty_epoch():
    """n=0: len 0, no indices."""
    s = BlockShuffleSampler(0, 4, generator=torch.Generator())
    assert len(s) == 0 and list(s) == []


# --- what it costs and what it buys: the experiments, and the figures for the ledger -------------

def test_block_convergence_table_is_the_experiments_runs():
    """block_convergence: a row per experiment and order, a loss and accuracy per seed; block 1 through the
    sampler draws RandomSampler's first permutation, so with one epoch it trains exactly as shuffle=True."""
    table = block_convergence((1, 8), seeds=range(2), n=64, epochs=1, batch_size=8, loader=TensorLoader)
    assert [(r.experiment, r.order, r.block_size, r.buffer_size) for r in table.rows] == [
        (e, o, b, b) for e in ("sorted", "tutorial") for o, b in (("none", None), ("full", None), ("block", 1),
                                                                    ("block", 8))]
    for exp in ("sorted", "tutorial"):
        full, one = table.row(exp, "full"), table.row(exp, "block", 1)
        assert one.losses == full.losses and one.accuracies == full.accuracies
        assert all(len(r.losses) == len(r.accuracies) == 2 for r in table.rows)
        none = table.row(exp, "none")
        assert table.wins(full, "none") == sum(a < b for a, b in zip(full.losses, none.losses))
    text = table.format()
    assert "label-sorted data (the C11 experiment), N=64" in text and "| block 8, buffer 8 |" in text
    with pytest.raises(ValueError, match="unknown experiment"):
        block_convergence((4,), experiments=("shuffled",))


def test_blockread_prints_both_tables_and_keeps_them_as_json(tmp_path):
    """python -m batchfeed.blockread, tiny: the cold and warm read tables (every mode, back end and block size,
    the references) and the convergence tables, all in its JSON."""
    out = io.StringIO()
    assert blockread.main(["--n", "3000", "--repeats", "1", "--seeds", "1", "--conv-n", "64", "--blocks", "1", "4",
                           "--dir", str(tmp_path / "files"), "--json", str(tmp_path / "out.json")], out=out) == 0
    text = out.getvalue()
    for words in ("ooc-cold: N=3,000", "ooc-warm: N=3,000", "| mmap | sampler | block 4, buffer 4 |",
                  "| pread | chunked | shuffle=True (TensorLoader's own) |", "sequential read of the files (bound)",
                  "the tutorial's data, in its own (random) order, N=64", "load average at end"):
        assert words in text, words
    saved = json.loads((tmp_path / "out.json").read_text())
    assert len(saved["reads"]) == 2 * (2 * 2 * 2 + 3) and len(saved["convergence"]) == 1
    assert all(r["samples"] == 3000 for r in saved["reads"])


@pytest.mark.claim("C11")
def test_claim_block_shuffle_convergence_cost(claim_figures):
    """On C11's label-sorted data (N=1000, B=32, lr=0.1, 5 epochs), blocks of 64 rows and a buffer of 64,
    against no shuffling, 10 seeds: the wins and mean accuracy go beside C11's verdict (never deciding it)."""
    table = block_convergence((64,), seeds=range(10), experiments=("sorted",), loader=TensorLoader)
    block = table.row("sorted", "block", 64)
    claim_figures.record("block_size", 64)
    claim_figures.record("block_buffer", block.buffer_size)
    claim_figures.record("block_seeds", len(block.losses))
    claim_figures.record("block_wins", table.wins(block, "none"))
    claim_figures.record("acc_block", statistics.mean(block.accuracies))
    assert len(block.losses) == 10


@pytest.mark.claim("C9")
def test_claim_block_shuffle_reads_cold_files_faster(tmp_path, claim_figures):
    """An epoch of batches (B=256) from .npy files (N=20,000, F=64) through TensorLoader(NpyDataset, sampler=...),
    page cache dropped before each of 2 timed epochs: blocks of 64 rows against the fully shuffled order, with
    preadv and through a memory map. The speed-ups go beside C9's verdict, only if the pages really left the
    cache (not so on tmpfs)."""
    files = make_files(tmp_path, 20_000, 64)
    rows = measure_block_reads(files, 256, (64,), cold=True, modes=("sampler",), repeats=2, warmup=0)
    assert all(m.samples == 20_000 for m in rows.values())
    if max(max(m.resident) for m in rows.values()) <= COLD_RESIDENT_MAX:
        claim_figures.record("block_read_n", files.n)
        claim_figures.record("block_read_batch", 256)
        claim_figures.record("block_read_size", 64)
        claim_figures.record("block_read_speedup_pread", speedups(rows, "pread")[64])
        claim_figures.record("block_read_speedup_mmap", speedups(rows, "mmap")[64])
