"""Dataset: length, indexing and validation of the tutorial's ``MyDataset`` (PairDataset)."""

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from batchfeed import PairDataset, make_seed_data

from spec.strategies import pair_data


@given(data=pair_data(max_n=64))
def test_len_is_number_of_samples(data):
    """len(dataset) is the number of samples, whatever the feature shape and dtype."""
    X, y = data
    assert len(PairDataset(X, y)) == X.shape[0]


@given(data=pair_data(max_n=64))
def test_every_index_returns_its_aligned_pair(data):
    """dataset[i] returns (X[i], y[i]) with shape and dtype unchanged, for every i."""
    X, y = data
    ds = PairDataset(X, y)
    for i in range(len(ds)):
        x_i, y_i = ds[i]
        assert x_i.shape == X.shape[1:] and x_i.dtype == X.dtype, f"x[{i}]: {x_i.shape} {x_i.dtype}"
        assert y_i.dtype == y.dtype, f"y[{i}].dtype={y_i.dtype}, but should be {y.dtype}"
        assert torch.equal(x_i, X[i]) and torch.equal(y_i, y[i]), f"dataset[{i}] is not (X[{i}], y[{i}])"


@given(n=st.integers(1, 50), data=st.data())
def test_negative_indices_count_from_the_end(n, data):
    """dataset[-k] is dataset[n - k], as for a Python sequence."""
    X, y = make_seed_data(n, 2, seed=n)
    ds = PairDataset(X, y)
    k = data.draw(st.integers(1, n), label="k")
    assert torch.equal(ds[-k][0], X[n - k]) and torch.equal(ds[-k][1], y[n - k])


@given(n=st.integers(1, 50), data=st.data())
@example(n=1, data=None)
def test_getitems_matches_getitem(n, data):
    """__getitems__(indices) returns the same pairs as [dataset[i] for i in indices]."""
    X, y = make_seed_data(n, 3, seed=n)
    ds = PairDataset(X, y)
    indices = [0, -1] if data is None else data.draw(st.lists(st.integers(-n, n - 1), max_size=70), label="indices")
    got = ds.__getitems__(indices)
    assert len(got) == len(indices)
    for i, (xg, yg) in zip(indices, got):
        xe, ye = ds[i]
        assert torch.equal(xg, xe) and torch.equal(yg, ye), f"__getitems__ pair for index {i} differs from dataset[{i}]"


@pytest.mark.parametrize("index", [1000, 1001, -1001, 10**9])
def test_out_of_range_index_raises_index_error_naming_it(index):
    """An index outside [-n, n) raises IndexError naming the index and the length."""
    ds = PairDataset(*make_seed_data(1000))
    with pytest.raises(IndexError, match=rf"index {index} out of range for dataset of length 1000"):
        ds[index]
    with pytest.raises(IndexError, match=rf"index {index} out of range"):
        ds.__getitems__([0, index])


@pytest.mark.parametrize("index", [1.0, "3", None, True, torch.tensor(1.5), slice(0, 2)], ids=repr)
def test_non_integer_index_raises_type_error(index):
    """A non-integer index raises TypeError naming its type (bool is not an index here)."""
    ds = PairDataset(*make_seed_data(10))
    with pytest.raises(TypeError, match="indices must be integers"):
        ds[index]


def test_integer_like_indices_are_accepted():
    """numpy and 0-d tensor integers index like ints."""
    X, y = make_seed_data(10)
    ds = PairDataset(X, y)
    for i in (np.int64(3), torch.tensor(3), np.int32(-7)):
        assert torch.equal(ds[i][0], X[int(i)])


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (torch.zeros(5, 3), torch.zeros(4), r"len\(X\)=5 and len\(y\)=4"),
        (torch.zeros(0, 3), torch.zeros(0), r"at least one sample"),
        (torch.tensor(1.0), torch.zeros(1), r"X must have a sample dimension"),
    ],
    ids=["length-mismatch", "empty", "scalar"],
)
def test_bad_construction_raises_value_error(X, y, match):
    """Mismatched lengths, no samples or a 0-d input raise ValueError naming the problem."""
    with pytest.raises(ValueError, match=match):
        PairDataset(X, y)


def test_array_likes_are_converted_to_tensors():
    """Lists and numpy arrays become tensors with their dtype kept."""
    ds = PairDataset(np.arange(6, dtype=np.float32).reshape(3, 2), [0, 1, 1])
    assert isinstance(ds.X, torch.Tensor) and ds.X.dtype == torch.float32
    assert isinstance(ds.y, torch.Tensor) and ds.y.dtype == torch.int64
    assert torch.equal(ds[2][0], torch.tensor([4.0, 5.0]))


def test_unconvertible_input_raises_type_error():
    """Input torch cannot convert raises TypeError naming the argument."""
    with pytest.raises(TypeError, match="y must be a tensor or array-like"):
        PairDataset(torch.zeros(2, 1), [object(), object()])


@given(n=st.integers(1, 200), features=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_seed_data_is_the_tutorials_and_deterministic(n, features, seed):
    """make_seed_data: float32 X of shape (n, F), y = (X.sum(1) > 0), the same for the same seed."""
    X, y = make_seed_data(n, features, seed)
    assert X.shape == (n, features) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.equal(y, (X.sum(1) > 0).long())
    X2, y2 = make_seed_data(n, features, seed)
    assert torch.equal(X, X2) and torch.equal(y, y2)


def test_seed_data_differs_across_seeds_and_looks_standard_normal():
    """Different seeds give different data; 100k draws have mean ~ 0 and std ~ 1 (±0.02, > 6 sigma)."""
    X0, _ = make_seed_data(100_000, 1, seed=0)
    X1, _ = make_seed_data(100_000, 1, seed=1)
    assert not torch.equal(X0, X1)
    assert abs(float(X0.mean())) < 0.02 and abs(float(X0.std()) - 1) < 0.02


@pytest.mark.parametrize("bad", [{"n": 0}, {"n": -3}, {"features": 0}, {"n": 2.5}])
def test_seed_data_rejects_bad_sizes(bad):
    """make_seed_data rejects a non-positive or non-integer size, naming it."""
    name = next(iter(bad))
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer"):
        make_seed_data(**bad)


@pytest.mark.claim("C6")
def test_claim_any_sample_by_index(claim_figures):
    """Every index of the tutorial's 1000-sample dataset, positive and negative, is checked against its pair; the count of wrong pairs goes to the ledger (C6)."""
    X, y = make_seed_data(1000)
    ds = PairDataset(X, y)
    checked = mismatches = 0
    for i in list(range(1000)) + list(range(-1000, 0)):
        x_i, y_i = ds[i]
        checked += 1
        mismatches += not (torch.equal(x_i, X[i]) and torch.equal(y_i, y[i]))
    claim_figures.record("indices_checked", checked)
    claim_figures.record("mismatches", mismatches)
    assert checked == 2000
