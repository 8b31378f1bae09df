"""Resume mid-epoch: ``state_dict()`` / ``load_state_dict()`` of a stateful loader.

The rule, after torchdata's own tests: interrupted-then-restored output == uninterrupted
output. A loader iterated up to some point saves its state; a fresh loader built with the
same arguments loads it; the fresh loader's first ``iter()`` yields what was left of the
interrupted epoch (nothing, if every batch had been handed out), and every later
``iter()`` the same epoch as the uninterrupted run.

Run against torchdata's ``StatefulDataLoader`` (the reference) and batchfeed's
``TensorLoader``. Loaders are built the DataLoader way: ``shuffle=True`` with a seeded
``generator``. Known deviations are strict xfails with their reason.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import RandomSampler

from ..helpers import IndexedDataset
from ..worker_datasets import NpyFilesDataset, write_npy_samples

EPOCHS = 4


class LaterEpochsDiffer(AssertionError):
    """The resumed epoch was right, but an epoch after it differs from the uninterrupted run."""


# --- how the loader under test is built ----------------------------------------------------

#: How each case orders the samples: DataLoader's reproducible recipe (shuffle=True with a
#: seeded generator), in order, or a user's sampler with a generator of its own (the loader's
#: generator seeded differently), as batchfeed.checkpoint builds its loaders.
ORDERS = ["in-order", "shuffled", "own-sampler"]
ORDER = pytest.mark.parametrize("order", ORDERS)


@dataclass(frozen=True)
class Setup:
    """How every loader of one test is built: the same arguments each time."""

    build: Any  # the make_loader fixture
    order: str
    n: int
    batch_size: int
    drop_last: bool
    num_workers: int = 0
    seed: int = 0

    def make(self):
        self.build.require("resume")
        dataset = IndexedDataset(self.n, 2)
        kw = dict(batch_size=self.batch_size, drop_last=self.drop_last, shuffle=self.order == "shuffled",
                  generator=torch.Generator().manual_seed(self.seed))
        if self.num_workers:
            kw["num_workers"] = self.num_workers
        if self.order == "own-sampler":
            kw.update(generator=torch.Generator().manual_seed(self.seed + 1),
                      sampler=RandomSampler(dataset, generator=torch.Generator().manual_seed(self.seed)))
        return self.build(dataset, **kw)

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)


# --- driving a loader: stop points and segments ------------------------------------------

@dataclass(frozen=True)
class Point:
    """Where a run stops: in ``epoch`` after ``after`` batches (the iterator still open), or,
    with ``finished=True``, after that epoch's iterator raised ``StopIteration``."""

    epoch: int
    after: int = 0
    finished: bool = False


def labels(batch) -> list[int]:
    return batch[1].tolist()


def reference(setup: Setup, epochs: int = EPOCHS) -> list[list[list[int]]]:
    """The uninterrupted run: the labels of every batch of every epoch."""
    loader = setup.make()
    return [[labels(b) for b in loader] for _ in range(epochs)]


def segment(loader, begin: Point | None, end: Point | None, epochs: int = EPOCHS):
    """Run ``loader`` from ``begin`` (where its loaded state left it; None: a fresh loader) to
    ``end`` (None: the end of ``epochs``). Returns ``({epoch: [batch labels]}, state at end)``."""
    got: dict[int, list[list[int]]] = {}
    if begin is None:
        e, pos = 0, 0
    elif begin.finished:
        e, pos = begin.epoch + 1, 0
    else:
        e, pos = begin.epoch, begin.after
    while e < epochs:
        it = iter(loader)
        while True:
            if end is not None and (e, pos) == (end.epoch, end.after) and not end.finished:
                return got, loader.state_dict()
            try:
                batch = next(it)
            except StopIteration:
                break
            got.setdefault(e, []).append(labels(batch))
            pos += 1
        if end is not None and e == end.epoch and end.finished:
            return got, loader.state_dict()
        e, pos = e + 1, 0
    if end is not None:
        raise AssertionError(f"the run ended before reaching {end}")
    return got, None


def resumed_run(setup: Setup, stops: list[Point], transport=lambda state: state):
    """Interrupt at each of ``stops`` in turn, each time loading the state (passed through
    ``transport``) into a fresh loader. Returns the batches of each epoch, all segments joined."""
    got: dict[int, list[list[int]]] = {}
    loader, begin = setup.make(), None
    for stop in [*stops, None]:
        part, state = segment(loader, begin, stop)
        for e, batches in part.items():
            got.setdefault(e, []).extend(batches)
        if stop is None:
            break
        loader = setup.make()
        loader.load_state_dict(transport(state))
        begin = stop
    return [got.get(e, []) for e in range(EPOCHS)]


def assert_resumes_exactly(got, expected, *, first_resume: Point, setup: Setup) -> None:
    """Epochs up to the first resumed one must match (AssertionError), later ones too (LaterEpochsDiffer)."""
    __tracebackhide__ = True
    last_resumed = first_resume.epoch if not first_resume.finished else first_resume.epoch - 1
    for e in range(EPOCHS):
        if got[e] != expected[e]:
            kind = LaterEpochsDiffer if e > last_resumed else AssertionError
            raise kind(
                f"epoch {e} after resuming at {first_resume}: got {got[e]}, but the uninterrupted run gave "
                f"{expected[e]} [{setup}]"
            )


def check(setup: Setup, *stops: Point, transport=lambda s: s) -> None:
    __tracebackhide__ = True
    assert_resumes_exactly(resumed_run(setup, list(stops), transport), reference(setup),
                           first_resume=stops[0], setup=setup)


# --- the cases ---------------------------------------------------------------------------

DROP = pytest.mark.parametrize("drop_last", [False, True], ids=["keep-last", "drop-last"])
# 23 samples, batches of 5: 5 batches (the last of 3), or 4 with drop_last.
N, B = 23, 5


@DROP
@ORDER
def test_state_of_a_fresh_loader_replays_every_epoch(make_loader, order, drop_last):
    """The state of a loader never iterated, loaded into a fresh one, gives every epoch of the uninterrupted run."""
    setup = Setup(make_loader, order, N, B, drop_last)
    state = setup.make().state_dict()
    loader = setup.make()
    loader.load_state_dict(state)
    got, _ = segment(loader, None, None)
    assert_resumes_exactly([got.get(e, []) for e in range(EPOCHS)], reference(setup),
                           first_resume=Point(0), setup=setup)


@DROP
@ORDER
def test_resume_before_the_first_batch(make_loader, order, drop_last):
    """A state saved after iter() but before the first batch resumes the whole epoch."""
    check(Setup(make_loader, order, N, B, drop_last), Point(0, 0))


@DROP
@ORDER
def test_resume_mid_epoch(make_loader, order, drop_last):
    """A state saved mid-epoch resumes with exactly the batches that were left, then the same later epochs."""
    check(Setup(make_loader, order, N, B, drop_last), Point(0, 2))


@DROP
@ORDER
def test_resume_at_the_last_batch(make_loader, order, drop_last):
    """A state saved after the last batch, before StopIteration, resumes with an empty rest of that epoch, then the next epochs."""
    setup = Setup(make_loader, order, N, B, drop_last)
    check(setup, Point(0, setup.batches_per_epoch))


@DROP
@ORDER
def test_resume_after_the_epoch(make_loader, order, drop_last):
    """A state saved after the epoch's StopIteration resumes with the next epoch, in full."""
    check(Setup(make_loader, order, N, B, drop_last), Point(0, finished=True))


@DROP
@ORDER
def test_resume_in_a_later_epoch(make_loader, order, drop_last):
    """A state saved in the third epoch resumes that epoch's order (not the first epoch's), then the fourth."""
    check(Setup(make_loader, order, N, B, drop_last), Point(2, 1))


@pytest.mark.parametrize("order", ["in-order", "shuffled"])
@pytest.mark.parametrize("stop", [Point(0, 2), Point(2, 1)], ids=["mid-epoch", "later-epoch"])
def test_resume_with_workers(make_loader, order, stop):
    """With 2 worker processes the loader resumes mid-epoch and in a later epoch to exactly the uninterrupted run."""
    check(Setup(make_loader, order, N, B, False, num_workers=2), stop)


@ORDER
@pytest.mark.parametrize("stops", [
    (Point(0, 1), Point(0, 3)),
    (Point(0, 1), Point(1, 2)),
    (Point(0, finished=True), Point(1, 1)),
], ids=["same-epoch", "next-epoch", "after-epoch-then-mid"])
def test_two_resumes_in_a_row(make_loader, order, stops):
    """Resuming, running on, saving again and resuming again still gives the uninterrupted run."""
    check(Setup(make_loader, order, N, B, False), *stops)


def _torch_round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@ORDER
def test_state_survives_torch_save_with_weights_only(make_loader, order):
    """The state survives torch.save / torch.load(weights_only=True), as a training checkpoint stores it."""
    check(Setup(make_loader, order, N, B, False), Point(1, 2), transport=_torch_round_trip)


# One failure type per run (not an ExceptionGroup of every distinct failure), so a loader's
# known deviation can name it with raises=.
@settings(report_multiple_bugs=False)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 8), drop_last=st.booleans(), seed=st.integers(0, 2**31),
       data=st.data())
def _resume_property(make_loader, order, n, batch_size, drop_last, seed, data):
    setup = Setup(make_loader, order, n, batch_size, drop_last, 0, seed)
    per_epoch = setup.batches_per_epoch
    epoch = data.draw(st.integers(0, EPOCHS - 1), label="epoch")
    finished = data.draw(st.booleans(), label="finished")
    after = 0 if finished else data.draw(st.integers(0, per_epoch), label="after")
    check(setup, Point(epoch, after, finished))


@ORDER
def test_resume_anywhere_gives_the_uninterrupted_run(make_loader, order):
    """For any dataset size, batch size, drop_last, seed and stop point, the resumed run equals the uninterrupted one."""
    make_loader.require("resume")
    _resume_property(make_loader, order)


@pytest.mark.parametrize("num_workers", [0, 2], ids=["main-process", "2-workers"])
def test_lazy_dataset_resumes_mid_epoch(make_loader, tmp_path, num_workers):
    """A lazy dataset (one .npy file per sample) resumes mid-epoch to the same batches and values."""
    make_loader.require("resume")
    write_npy_samples(tmp_path, 30, features=2)

    def make():
        return make_loader(NpyFilesDataset(tmp_path), batch_size=4, shuffle=True, num_workers=num_workers,
                           generator=torch.Generator().manual_seed(4))

    expected = [(x.clone(), y.clone()) for x, y in make()]
    loader = make()
    it = iter(loader)
    head = [next(it) for _ in range(3)]
    state = loader.state_dict()
    del it
    resumed = make()
    resumed.load_state_dict(state)
    got = head + list(resumed)
    assert len(got) == len(expected), f"{len(got)} batches after resuming, expected {len(expected)}"
    for k, ((x, y), (xe, ye)) in enumerate(zip(got, expected)):
        assert torch.equal(y, ye) and torch.equal(x, xe), f"batch {k}: labels {y.tolist()}, expected {ye.tolist()}"


@ORDER
@pytest.mark.parametrize("used", ["after-an-epoch", "mid-epoch"])
def test_state_loaded_into_a_used_loader_resumes_like_a_fresh_one(make_loader, order, used):
    """load_state_dict() into a loader already iterated (a whole epoch, or part of one with its iterator still open) resumes exactly as a fresh loader would."""
    setup, stop = Setup(make_loader, order, N, B, False), Point(1, 2)
    expected = reference(setup)
    _, state = segment(setup.make(), None, stop)
    loader = setup.make()
    if used == "after-an-epoch":
        list(loader)
    else:
        it = iter(loader)
        next(it)
        next(it)
    loader.load_state_dict(state)
    part, _ = segment(loader, stop, None)
    head = {e: expected[e] for e in range(stop.epoch)} | {stop.epoch: expected[stop.epoch][:stop.after]}
    joined = [head.get(e, []) + part.get(e, []) for e in range(EPOCHS)]
    assert_resumes_exactly(joined, expected, first_resume=stop, setup=setup)
