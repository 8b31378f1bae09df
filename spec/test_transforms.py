"""Transforms: normalization, seeded augmentation, batch transforms on the batch's device (claim C8).

Per-sample transforms run inside a dataset's ``__getitem__`` with a generator that is a
pure function of ``(seed, epoch, index)``; batch transforms run on whatever device the
batch is on. No transform changes its input or the stored data.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from batchfeed import PairDataset
from batchfeed.sources import NpyDataset, write_npy_dataset
from batchfeed.transforms import (
    BatchGaussianNoise,
    BatchNormalize,
    BatchRandomFlip,
    Compose,
    GaussianNoise,
    Normalize,
    OnDevice,
    RandomCrop,
    RandomFlip,
    Transformed,
)

#: Normalization tolerance: statistics are accumulated in float64 and the output rounded
#: to float32 once, so the normalized mean and std are off by float32 rounding (~1e-7);
#: 1e-5 leaves two orders of magnitude.
NORM_TOL = 1e-5


def _randn(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _augment() -> Compose:
    return Compose([RandomCrop((4, 4), padding=1), RandomFlip(-1), GaussianNoise(0.1)])


@st.composite
def channel_data(draw):
    """``(X, channel_dim)``: n samples with C channels, each channel its own offset and scale. Example: ``((9, 3, 2, 2), 0)``."""
    n = draw(st.integers(2, 40), label="n")
    c = draw(st.integers(1, 4), label="channels")
    rest = draw(st.lists(st.integers(1, 4), max_size=2), label="other dims")
    offsets = torch.tensor(draw(st.lists(st.floats(-100, 100), min_size=c, max_size=c)), dtype=torch.float64)
    scales = torch.tensor(draw(st.lists(st.floats(0.1, 100), min_size=c, max_size=c)), dtype=torch.float64)
    seed = draw(st.integers(0, 2**31), label="seed")
    X = _randn((n, c, *rest), seed).double() * scales.reshape(1, c, *[1] * len(rest)) + offsets.reshape(1, c, *[1] * len(rest))
    return X.float(), 0


def _channel_stats(x: torch.Tensor, channel_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std of a (n, ...) batch, channel_dim within a sample."""
    flat = x.double().movedim(channel_dim + 1, 0).reshape(x.shape[channel_dim + 1], -1)
    return flat.mean(1), flat.std(1, correction=0)


@given(data=channel_data())
def test_fitted_normalize_gives_zero_mean_unit_std(data):
    """Normalize.fit(dataset) then normalizing gives each channel mean ~ 0 and std ~ 1 (within 1e-5)."""
    X, cdim = data
    ds = PairDataset(X, torch.zeros(len(X)))
    norm = Normalize.fit(ds, channel_dim=cdim)
    out = torch.stack([norm(ds[i][0]) for i in range(len(ds))])
    mean, std = _channel_stats(out, cdim)
    nonconstant = _channel_stats(X, cdim)[1] > 0
    assert out.dtype == torch.float32
    assert mean.abs().max() < NORM_TOL, f"normalized channel means {mean.tolist()}"
    assert (std[nonconstant] - 1).abs().max() < NORM_TOL, f"normalized channel stds {std.tolist()}"


@given(data=channel_data())
def test_fit_matches_the_two_pass_statistics(data):
    """Normalize.fit's one streaming pass gives the mean and population std of the whole data (float64, rel. 1e-9)."""
    X, cdim = data
    norm = Normalize.fit(PairDataset(X, torch.zeros(len(X))), channel_dim=cdim)
    mean, std = _channel_stats(X, cdim)
    torch.testing.assert_close(norm.mean, mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(norm.std, std, rtol=1e-9, atol=1e-9)


def test_normalize_with_given_statistics_broadcasts_per_channel():
    """Normalize(mean, std) computes (x - mean) / std per channel along channel_dim, per feature for a vector."""
    x = torch.arange(12.0).reshape(3, 2, 2)
    out = Normalize([1.0, 2.0, 3.0], [2.0, 4.0, 8.0])(x)
    expected = (x - torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1)) / torch.tensor([2.0, 4.0, 8.0]).reshape(3, 1, 1)
    torch.testing.assert_close(out, expected)
    v = Normalize([1.0, 0.0], [1.0, 2.0])(torch.tensor([3.0, 4.0]))
    assert v.tolist() == [2.0, 2.0]
    assert Normalize(0, 1)(torch.tensor([1, 2], dtype=torch.uint8)).dtype == torch.float32


@pytest.mark.parametrize(("mean", "std", "match"), [
    ([0.0], [0.0], r"std must be positive and finite, got std\[0\]=0.0"),
    ([0.0, 1.0], [1.0, -1.0], r"std\[1\]=-1.0"),
    ([0.0, 1.0], [1.0, 1.0, 1.0], r"mean has 2 values and std 3"),
    ([float("nan")], [1.0], r"mean must be finite"),
], ids=["zero-std", "negative-std", "length-mismatch", "nan-mean"])
def test_normalize_rejects_bad_statistics(mean, std, match):
    """A zero, negative or non-finite std, a non-finite mean, or mismatched lengths raise ValueError naming the value."""
    with pytest.raises(ValueError, match=match):
        Normalize(mean, std)


def test_fit_on_a_constant_channel_refuses_to_divide_by_zero():
    """Fitting data with a constant channel raises ValueError naming the zero std, instead of producing inf."""
    X = torch.zeros(5, 2)
    X[:, 1] = torch.arange(5.0)
    with pytest.raises(ValueError, match=r"std\[0\]=0.0"):
        Normalize.fit(PairDataset(X, torch.zeros(5)))


TRANSFORMS = {
    "flip": lambda seed: RandomFlip(-1, seed=seed),
    "crop": lambda seed: RandomCrop((3, 3), padding=2, seed=seed),
    "noise": lambda seed: GaussianNoise(0.5, seed=seed),
    "compose": lambda seed: Compose([RandomCrop(4, padding=1, seed=seed), RandomFlip(seed=seed), GaussianNoise(0.1, seed=seed)]),
}


@pytest.mark.parametrize("name", TRANSFORMS)
@given(seed=st.integers(0, 2**31))
def test_augmentation_is_reproducible_by_seed(name, seed):
    """Two transforms built with the same seed give the same outputs call after call; another seed gives others."""
    x = torch.arange(30.0).reshape(2, 3, 5)
    a, b, c = TRANSFORMS[name](seed), TRANSFORMS[name](seed), TRANSFORMS[name](seed + 1)
    run_a = [a(x) for _ in range(20)]
    run_b = [b(x) for _ in range(20)]
    run_c = [c(x) for _ in range(20)]
    assert all(torch.equal(p, q) for p, q in zip(run_a, run_b)), "same seed, different augmentations"
    assert not all(torch.equal(p, q) for p, q in zip(run_a, run_c)), "a different seed gave the same 20 augmentations"


@pytest.mark.parametrize("name", TRANSFORMS)
@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=3), seed=st.integers(0, 2**31),
       dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8]))
def test_transforms_never_modify_their_input(name, shape, seed, dtype):
    """Every transform returns a new tensor and leaves its input's values untouched."""
    t = TRANSFORMS[name](seed)
    if name in ("crop", "compose") and min(shape[-2:]) + 2 < 4:
        shape = [*shape[:-2], 4, 4]
    x = (_randn(shape, seed) * 10).to(dtype)
    before = x.clone()
    out = t(x)
    assert torch.equal(x, before), f"{name} modified its input"
    out.add_(1) if out.is_floating_point() else out.add_(1)
    assert torch.equal(x, before), f"{name}'s output shares memory with its input"


@given(seed=st.integers(0, 2**31))
def test_flip_and_crop_produce_a_flip_or_a_window_of_the_padded_input(seed):
    """RandomFlip returns x or x reversed; RandomCrop returns a size-window of the zero-padded input."""
    x = _randn((2, 6, 7), seed)
    f = RandomFlip(-1, seed=seed)(x)
    assert torch.equal(f, x) or torch.equal(f, x.flip(-1))
    c = RandomCrop((4, 5), padding=1, seed=seed)(x)
    padded = torch.nn.functional.pad(x, [1, 1, 1, 1])
    windows = [padded[:, i:i + 4, j:j + 5] for i in range(padded.shape[1] - 3) for j in range(padded.shape[2] - 4)]
    assert c.shape == (2, 4, 5) and any(torch.equal(c, w) for w in windows)


def test_flip_probability_and_noise_scale_hold_over_many_draws():
    """Over 4000 draws RandomFlip(p=0.3) flips 30% (+-3%, > 4 sigma) and GaussianNoise(0.5) adds noise of std 0.5 (+-2%)."""
    x = torch.tensor([0.0, 1.0])
    flip = RandomFlip(p=0.3, seed=1)
    rate = sum(bool(flip(x)[0] == 1.0) for _ in range(4000)) / 4000
    assert abs(rate - 0.3) < 0.03, f"flip rate {rate}"
    noise = GaussianNoise(0.5, seed=2)(torch.zeros(100_000)) - 0
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 0.5) < 0.01


@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_augmentation_depends_on_seed_epoch_and_index_only(tmp_path, workers):
    """Inside a dataset, sample i's augmentation is fixed by (seed, epoch, i): shuffle and workers change nothing; set_epoch does."""
    X = torch.arange(20 * 2 * 5 * 5, dtype=torch.float32).reshape(20, 2, 5, 5)
    ds = Transformed(PairDataset(X, torch.arange(20)), _augment(), seed=3)
    direct = torch.stack([ds[i][0] for i in range(20)])
    loader = DataLoader(ds, batch_size=6, shuffle=True, num_workers=workers, generator=torch.Generator().manual_seed(0))
    got = torch.empty_like(direct)
    for xb, yb in loader:
        got[yb] = xb
    assert torch.equal(got, direct), "a sample got a different augmentation through the shuffled DataLoader"
    again = Transformed(PairDataset(X, torch.arange(20)), _augment(), seed=3)
    assert torch.equal(torch.stack([again[i][0] for i in range(20)]), direct), "same seed, different augmentations"
    ds.set_epoch(1)
    assert not torch.equal(torch.stack([ds[i][0] for i in range(20)]), direct), "set_epoch(1) did not change the augmentations"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_transforms_inside_a_source_leave_the_stored_data_untouched(tmp_path):
    """A source applying transforms never writes to its file, and an in-memory dataset's tensors stay as they were."""
    px, py = write_npy_dataset(tmp_path, 50, 6)
    before = (_sha(px), _sha(py))
    norm = Normalize.fit(NpyDataset(px, py))
    for mmap in (True, False):
        ds = NpyDataset(px, py, mmap=mmap, transform=Compose([norm, GaussianNoise(1.0), RandomFlip()]))
        for x, _ in DataLoader(ds, batch_size=8, generator=torch.Generator()):
            x.mul_(0)  # a training loop scribbling on its batch must not reach the file either
        ds[0][0].mul_(0)
    assert (_sha(px), _sha(py)) == before
    X = _randn((10, 4), 0)
    X0 = X.clone()
    pair = Transformed(PairDataset(X, torch.zeros(10)), Compose([Normalize(1.0, 2.0), RandomFlip(), GaussianNoise(1.0)]))
    for i in range(10):
        pair[i][0].mul_(0)
    assert torch.equal(X, X0)


# --- batch transforms on the batch's device -------------------------------------------


@given(data=channel_data())
def test_batch_normalize_equals_per_sample_normalize(data):
    """BatchNormalize on a (B, ...) batch equals Normalize applied to each sample, up to float32 rounding."""
    X, cdim = data
    norm = Normalize.fit(PairDataset(X, torch.zeros(len(X))), channel_dim=cdim)
    batch = BatchNormalize(norm.mean, norm.std, channel_dim=cdim)(X)
    exact = torch.stack([norm(x) for x in X])  # computed in float64, rounded once
    # BatchNormalize works in the batch's dtype (float32): x - mean loses up to
    # eps32 * (|x| + |mean|), then divided by std; 4x that bound covers the division.
    shape = [1, -1] + [1] * (X.dim() - 2)
    bound = 4 * 2.0**-23 * (X.abs() + norm.mean.float().abs().reshape(shape)) / norm.std.float().reshape(shape) + 1e-6
    err = (batch - exact).abs()
    assert (err <= bound).all(), f"max error {float(err.max()):.3g} exceeds the float32 bound at {(err > bound).nonzero()[:3].tolist()}"


@given(seed=st.integers(0, 2**31), b=st.integers(1, 40))
def test_batch_flip_flips_each_sample_independently_and_reproducibly(seed, b):
    """BatchRandomFlip flips each sample or leaves it, independently, and the same seed repeats the choices."""
    x = _randn((b, 3, 4), seed)
    out = BatchRandomFlip(-1, seed=seed)(x)
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    assert all(f or torch.equal(o, xi) for f, o, xi in zip(flipped, out, x))
    assert torch.equal(out, BatchRandomFlip(-1, seed=seed)(x))
    noise = BatchGaussianNoise(0.3, seed=seed)
    assert torch.equal(noise(x), BatchGaussianNoise(0.3, seed=seed)(x)) and not torch.equal(noise(x), x)


def test_on_device_moves_batches_and_applies_the_batch_transform_there(device):
    """OnDevice yields each batch on the device, with the batch transform applied there; it can be iterated again."""
    X = _randn((30, 3, 2), 0) * 5 + 2
    loader = DataLoader(PairDataset(X, torch.arange(30)), batch_size=8, generator=torch.Generator())
    norm = Normalize.fit(PairDataset(X, torch.zeros(30)))
    feed = OnDevice(loader, device, Compose([BatchNormalize(norm.mean, norm.std), BatchRandomFlip(seed=1)]))
    assert len(feed) == 4
    for _ in range(2):
        batches = list(feed)
        xs = torch.cat([x for x, _ in batches])
        assert all(x.device.type == device.type and y.device.type == device.type for x, y in batches)
        mean, std = _channel_stats(xs.cpu(), 0)
        assert mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-4


@pytest.mark.cuda
def test_batch_random_transforms_draw_on_the_cuda_device():
    """Batch transforms on a CUDA batch draw from a CUDA generator, reproducibly by seed, and return CUDA tensors."""
    x = torch.arange(24.0, device="cuda").reshape(4, 6)
    a = BatchGaussianNoise(1.0, seed=5)(BatchRandomFlip(seed=5)(x))
    b = BatchGaussianNoise(1.0, seed=5)(BatchRandomFlip(seed=5)(x))
    assert a.device.type == "cuda" and torch.equal(a, b)


# --- the claim -------------------------------------------------------------------------


@pytest.mark.claim("C8")
def test_claim_transformations_are_easy_to_apply(tmp_path, claim_figures):
    """One transform= argument normalizes and augments a lazy dataset; its mean, std, reproducibility and stored data go to the ledger (C8)."""
    px, py = write_npy_dataset(tmp_path, 2000, 8, seed=1)
    raw = np.load(px) * np.arange(1, 9, dtype=np.float32) + np.arange(8, dtype=np.float32) * 10  # channels of their own scale
    np.save(px, raw)
    digest = _sha(px)
    norm = Normalize.fit(NpyDataset(px, py))
    ds = NpyDataset(px, py, transform=norm)
    out = torch.stack([x for x, _ in (ds[i] for i in range(len(ds)))])
    mean, std = out.double().mean(0), out.double().std(0, correction=0)
    aug = lambda seed: NpyDataset(px, py, transform=Compose([norm, GaussianNoise(0.1), RandomFlip()]), seed=seed)  # noqa: E731
    epochs = 5
    same = 0
    for e in range(epochs):
        a, b = aug(11), aug(11)
        a.set_epoch(e)
        b.set_epoch(e)
        loader = DataLoader(b, batch_size=64, num_workers=2 if e == 0 else 0, generator=torch.Generator())
        same += torch.equal(torch.stack([a[i][0] for i in range(len(a))]), torch.cat([x for x, _ in loader]))
    claim_figures.record("norm_mean_abs_max", float(mean.abs().max()))
    claim_figures.record("norm_std_err_max", float((std - 1).abs().max()))
    claim_figures.record("norm_tolerance", NORM_TOL)
    claim_figures.record("augment_epochs", epochs)
    claim_figures.record("augment_reproduced", same)
    claim_figures.record("stored_data_changed", int(_sha(px) != digest))
    # Within the tolerance, reproduced, unchanged: the ledger's C8 rule decides; here, every sample was transformed.
    assert out.shape == (2000, 8) and bool(torch.isfinite(out).all()), out.shape
