"""Constructor errors: an invalid combination of keywords raises ValueError at construction.

Every test here runs against the loader under test (``--loader``).
"""

import pytest
from torch.utils.data import SequentialSampler

from ..helpers import IndexedDataset

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
]


@pytest.mark.parametrize("kwargs", INVALID)
def test_invalid_keywords_raise_value_error(make_loader, kwargs):
    """An invalid keyword or combination raises ValueError when the loader is built, not later."""
    with pytest.raises(ValueError):
        make_loader(DS, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(batch_size=1), dict(batch_size=10, drop_last=True), dict(shuffle=False, sampler=SAMPLER),
                                    dict(batch_sampler=BATCHES)],
                         ids=["b=1", "b=n+drop_last", "sampler", "batch_sampler"])
def test_valid_edge_combinations_are_accepted(make_loader, kwargs):
    """The edges of the valid range build a loader that yields at least one batch."""
    loader = make_loader(DS, **kwargs)
    assert len(list(loader)) >= 1
