"""Constructor errors: an invalid combination of keywords raises ValueError at construction.

Every test here runs against the loader under test (``--loader``).
"""

import pytest
from torch.utils.data import SequentialSampler

from ..helpers import IndexedDataset
from ..worker_datasets import RangeStream

DS = IndexedDataset(10)
SAMPLER = SequentialSampler(range(10))
BATCHES = [[0, 1], [2, 3]]

INVALID = [
    pytest.param(dict(batch_size=0), id="batch_size=0"),
    pytest.param(dict(batch_size=-4), id="batch_size=-4"),
    pytest.param(dict(num_workers=-1), id="num_workers=-1"),
    pytest.param(dict(shuffle=True, sampler=SAMPLER), id="shuffle+sampler"),
    pytest.param(dict(batch_sampler=BATCHES, batch_size=4), id="batch_sampler+batch_size"),
    pytest.param(dict(batch_sampler=BATCHES, shuffle=True), id="batch_sampler+shuffle"),
    pytest.param(dict(batch_sampler=BATCHES, drop_last=True), id="batch_sampler+drop_last"),
    pytest.param(dict(batch_sampler=BATCHES, sampler=SAMPLER), id="batch_sampler+sampler"),
    pytest.param(dict(timeout=-1), id="timeout=-1"),
    pytest.param(dict(batch_size=None, drop_last=True), id="batch_size=None+drop_last"),
    pytest.param(dict(prefetch_factor=2), id="prefetch_factor-without-workers"),
    pytest.param(dict(num_workers=2, prefetch_factor=-1), id="prefetch_factor=-1"),
    pytest.param(dict(persistent_workers=True), id="persistent_workers-without-workers"),
    pytest.param(dict(multiprocessing_context="fork"), id="multiprocessing_context-without-workers"),
    pytest.param(dict(num_workers=2, multiprocessing_context="no-such-method"), id="multiprocessing_context=unknown"),
]


@pytest.mark.parametrize("kwargs", INVALID)
def test_invalid_keywords_raise_value_error(make_loader, kwargs):
    """An invalid keyword or combination raises ValueError when the loader is built, not later."""
    with pytest.raises(ValueError):
        make_loader(DS, **kwargs)


ITERABLE_INVALID = [
    pytest.param(dict(shuffle=True), id="shuffle"),
    pytest.param(dict(sampler=SAMPLER), id="sampler"),
    pytest.param(dict(batch_sampler=BATCHES), id="batch_sampler"),
]


@pytest.mark.parametrize("kwargs", ITERABLE_INVALID)
def test_iterable_dataset_refuses_samplers_and_shuffle(make_loader, kwargs):
    """An IterableDataset decides its own order: shuffle=True, a sampler or a batch_sampler raise ValueError when the loader is built."""
    with pytest.raises(ValueError):
        make_loader(RangeStream(10), **kwargs)


@pytest.mark.parametrize("kwargs", [dict(batch_size=1), dict(batch_size=10, drop_last=True), dict(shuffle=False, sampler=SAMPLER),
                                    dict(batch_sampler=BATCHES)],
                         ids=["b=1", "b=n+drop_last", "sampler", "batch_sampler"])
def test_valid_edge_combinations_are_accepted(make_loader, kwargs):
    """The edges of the valid range build a loader that yields at least one batch."""
    loader = make_loader(DS, **kwargs)
    assert len(list(loader)) >= 1
