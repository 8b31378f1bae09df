"""Dataset: length, indexing and validation of the tutorial's ``MyDataset`` (PairDataset)."""

import itertools
import re

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


class IntLike:
    """An index type of a user's own: an int through ``__index__`` only."""

    def __init__(self, i: int) -> None:
        self.i = i

    def __index__(self) -> int:
        return self.i

    def __repr__(self) -> str:
        return f"IntLike({self.i})"


@pytest.mark.parametrize("indices", [
    pytest.param([np.int64(3), np.int32(-2), 0], id="numpy-ints"),
    pytest.param([torch.tensor(3), torch.tensor(-2, dtype=torch.int32), 0], id="0-d-tensors"),
    pytest.param([IntLike(3), IntLike(-2)], id="__index__"),
    pytest.param((3, -2, 0), id="tuple"),
    pytest.param(range(2, 6), id="range"),
    pytest.param(torch.tensor([3, -2, 0], dtype=torch.int32), id="int32-tensor"),
    pytest.param(torch.tensor([3, 9, 0], dtype=torch.uint8), id="uint8-tensor"),
    pytest.param(np.array([3, -2, 0]), id="numpy-array"),
    pytest.param(np.array([3, -2, 0], dtype=object), id="numpy-object-array"),
])
def test_getitems_accepts_every_index_getitem_accepts(indices):
    """__getitems__ takes a batch of any index dataset[i] takes, or a 1-d integer tensor/array, and returns dataset[i] for each."""
    X, y = make_seed_data(10, 3, seed=1)
    ds = PairDataset(X, y)
    got = ds.__getitems__(indices)
    expected = [ds[int(i)] for i in indices]
    assert len(got) == len(expected)
    for k, ((xg, yg), (xe, ye)) in enumerate(zip(got, expected)):
        assert torch.equal(xg, xe) and torch.equal(yg, ye), f"pair {k} of {indices!r} is not dataset[{int(indices[k])}]"


@pytest.mark.parametrize(("indices", "match"), [
    # A Python sequence is checked index by index, as dataset[i]: the bad index is named.
    pytest.param([True, False], r"^PairDataset indices must be integers, got bool True$", id="bools"),
    pytest.param([0, True], r"indices must be integers, got bool True", id="int-and-bool"),
    pytest.param([0.0, 1.0], r"indices must be integers, got float 0\.0", id="floats"),
    pytest.param([[0, 1]], r"indices must be integers, got list \[0, 1\]", id="nested-list"),
    pytest.param([0, torch.tensor(True)], r"indices must be integers, got Tensor tensor\(True\)", id="bool-tensor-item"),
    # A tensor or array is refused whole (match None: the message shows it).
    pytest.param(torch.tensor([True, False]), None, id="bool-tensor"),
    pytest.param(torch.tensor([0.0, 1.0]), None, id="float-tensor"),
    pytest.param(torch.tensor([1j]), None, id="complex-tensor"),
    pytest.param(torch.tensor([[0, 1]]), None, id="2-d-tensor"),
    pytest.param(np.array([[0, 1]]), None, id="2-d-array"),
])
def test_getitems_refuses_what_is_not_a_batch_of_indices(indices, match):
    """Bools, floats or a 2-D index given to __getitems__ raise TypeError naming the bad index (or the tensor), never a gather by mask or by rounding."""
    ds = PairDataset(*make_seed_data(10))
    match = match or rf"^PairDataset\.__getitems__ needs a 1-d sequence of integers, got {re.escape(repr(indices))}$"
    with pytest.raises(TypeError, match=match):
        ds.__getitems__(indices)


def test_getitems_gathers_on_the_devices_of_the_data(device):
    """X on the device and y on the CPU: __getitems__ gathers each where it is, dataset[i]'s pairs."""
    X, y = make_seed_data(12, 3, seed=2)
    for ds, indices in itertools.product((PairDataset(X.to(device), y.to(device)), PairDataset(X.to(device), y)),
                                         ([5, -1, 0], np.array([5, -1, 0], dtype=object))):
        got = ds.__getitems__(indices)
        for i, (xg, yg) in zip([5, -1, 0], got):
            assert xg.device == ds.X.device and yg.device == ds.y.device
            assert torch.equal(xg.cpu(), X[i]) and torch.equal(yg.cpu(), y[i]), f"pair for index {i} on {device}"


@pytest.mark.parametrize("index", [1000, 1001, -1001, 10**9, 2**64, -(2**63) - 1])
def test_out_of_range_index_raises_index_error_naming_it(index):
    """An index outside [-n, n) raises IndexError naming the index and the length."""
    ds = PairDataset(*make_seed_data(1000))
    with pytest.raises(IndexError, match=rf"index {index} out of range for dataset of length 1000"):
        ds[index]
    with pytest.raises(IndexError, match=rf"index {index} out of range"):
        ds.__getitems__([0, -1000, index])  # -n is the first index of the dataset, not out of range


@pytest.mark.parametrize("index", [
    1.0, "3", None, True, slice(0, 2), [1], np.float64(2.0),
    torch.tensor(1.5), torch.tensor(True), torch.tensor([3]), torch.tensor([[2]]),
], ids=repr)
def test_non_integer_index_raises_type_error(index):
    """A non-integer index raises TypeError naming its type; bools (Python or tensor) and one-element tensors are not indices."""
    ds = PairDataset(*make_seed_data(10))
    with pytest.raises(TypeError, match=rf"^PairDataset indices must be integers, got {type(index).__name__} "):
        ds[index]


def test_integer_like_indices_are_accepted():
    """numpy and 0-d tensor integers (any integer dtype) index like ints."""
    X, y = make_seed_data(10)
    ds = PairDataset(X, y)
    for i in (np.int64(3), torch.tensor(3), np.int32(-7), torch.tensor(9, dtype=torch.uint8), np.array(4)):
        assert torch.equal(ds[i][0], X[int(i)]) and torch.equal(ds[i][1], y[int(i)]), f"dataset[{i!r}]"


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (torch.zeros(5, 3), torch.zeros(4), r"len\(X\)=5 and len\(y\)=4"),
        (torch.zeros(0, 3), torch.zeros(0), r"^PairDataset needs at least one sample, got len\(X\)=0$"),
        (torch.tensor(1.0), torch.zeros(1), r"^X must have a sample dimension"),
        (torch.zeros(1), torch.tensor(1.0), r"^y must have a sample dimension"),
    ],
    ids=["length-mismatch", "empty", "scalar-X", "scalar-y"],
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


@pytest.mark.parametrize("which", ["X", "y"])
def test_unconvertible_input_raises_type_error(which):
    """Input torch cannot convert raises TypeError naming the argument and the type it got."""
    data = {"X": torch.zeros(2, 1), "y": torch.zeros(2), which: {"a": 1, "b": 2}}
    with pytest.raises(TypeError, match=rf"^{which} must be a tensor or array-like, got dict: "):
        PairDataset(data["X"], data["y"])


def test_repr_names_the_length_shapes_and_dtypes():
    """repr(dataset) shows n and each tensor's per-dataset shape and dtype."""
    ds = PairDataset(torch.zeros(7, 2, 3, dtype=torch.float16), torch.zeros(7, dtype=torch.int32))
    assert repr(ds) == "PairDataset(n=7, X=(7, 2, 3) torch.float16, y=(7,) torch.int32)"


@given(n=st.integers(1, 200), features=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_seed_data_is_the_tutorials_and_deterministic(n, features, seed):
    """make_seed_data: float32 X of shape (n, F), y = (X.sum(1) > 0), the same for the same seed."""
    X, y = make_seed_data(n, features, seed)
    assert X.shape == (n, features) and X.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.equal(y, (X.sum(1) > 0).long())
    X2, y2 = make_seed_data(n, features, seed)
    assert torch.equal(X, X2) and torch.equal(y, y2)


def test_seed_data_defaults_are_the_tutorials():
    """make_seed_data() is the tutorial's data set: 1000 samples of 3 features, seed 0."""
    X, y = make_seed_data()
    X0, y0 = make_seed_data(n=1000, features=3, seed=0)
    assert X.shape == (1000, 3)
    assert torch.equal(X, X0) and torch.equal(y, y0)


def test_seed_data_is_float32_whatever_torchs_default_dtype():
    """With torch's default dtype set to float64, make_seed_data still returns the same float32 X."""
    expected, _ = make_seed_data(50, 3, seed=7)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        X, _ = make_seed_data(50, 3, seed=7)
    finally:
        torch.set_default_dtype(saved)
    assert X.dtype == torch.float32 and torch.equal(X, expected)


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


# --- one index check: datasets, sources and TensorLoader's samplers agree ------------------------

@pytest.mark.parametrize("idx", [2, -1, np.int64(2), torch.tensor(2), True, torch.tensor(True), 1.0,
                                 torch.tensor(1.0), torch.tensor([1]), "1", 5, -6],
                         ids=lambda v: f"{type(v).__name__}({v!r})")
def test_datasets_sources_and_tensorloader_check_an_index_alike(tmp_path, idx):
    """PairDataset, a lazy source and TensorLoader (an index from a sampler) accept and refuse the same indices, with the same error type."""
    from batchfeed import TensorLoader
    from batchfeed.sources import NpyDataset

    X, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
    np.save(tmp_path / "x.npy", X.numpy())
    np.save(tmp_path / "y.npy", y.numpy())

    class Once(torch.utils.data.Sampler):
        def __iter__(self):
            return iter([idx])

        def __len__(self):
            return 1

    def outcome(get):
        try:
            return int(get()[1])
        except (TypeError, IndexError) as exc:
            return type(exc)

    got = {
        "PairDataset": outcome(lambda: PairDataset(X, y)[idx]),
        "NpyDataset": outcome(lambda: NpyDataset(tmp_path / "x.npy", tmp_path / "y.npy")[idx]),
        "TensorLoader": outcome(lambda: next(iter(TensorLoader(PairDataset(X, y), batch_size=None, sampler=Once(),
                                                               generator=torch.Generator())))),
    }
    assert len(set(got.values())) == 1, got
