"""The spec's assertion helpers fail when they should, with messages that say why."""

import pytest
import torch

from spec.helpers import (
    IndexedDataset,
    assert_aligned,
    assert_batch_sizes,
    assert_permutation,
    chi2_sf,
    chi2_statistic,
    chi2_threshold,
)


def test_assert_permutation_names_missing_and_repeated():
    """assert_permutation passes a permutation and names what is missing or repeated otherwise."""
    assert_permutation([2, 0, 1], 3)
    with pytest.raises(AssertionError, match=r"missing \[1\] \(1\), repeated \[0\] \(1\)"):
        assert_permutation([0, 0, 2], 3)
    with pytest.raises(AssertionError, match=r"out of range \[3\]"):
        assert_permutation([0, 1, 2, 3], 3)


def test_assert_batch_sizes_states_the_expected_sizes():
    """assert_batch_sizes accepts the rule and shows expected vs actual sizes otherwise."""
    assert_batch_sizes([4, 4, 2], n=10, batch_size=4, drop_last=False)
    assert_batch_sizes([4, 4], n=10, batch_size=4, drop_last=True)
    with pytest.raises(AssertionError, match=r"batch sizes \[4, 4\], but should be \[4, 4, 2\]"):
        assert_batch_sizes([4, 4], n=10, batch_size=4, drop_last=False)


def test_assert_aligned_detects_shifted_labels():
    """assert_aligned passes aligned rows and reports the rows whose label moved."""
    ds = IndexedDataset(6)
    assert_aligned(ds.X, ds.y, features=3)
    with pytest.raises(AssertionError, match="labels not aligned with features"):
        assert_aligned(ds.X, ds.y.roll(1), features=3)


@pytest.mark.parametrize(("df", "alpha", "tabulated"), [(49, 0.05, 66.339), (10, 0.01, 23.209), (100, 0.001, 149.449)])
def test_chi2_threshold_matches_tabulated_quantiles(df, alpha, tabulated):
    """The chi-square quantile matches tabulated values to 3 decimals, and its tail is alpha."""
    assert chi2_threshold(df, alpha) == pytest.approx(tabulated, abs=1e-3)
    assert chi2_sf(chi2_threshold(df, 1e-6), df) == pytest.approx(1e-6, rel=1e-6)


def test_chi2_statistic():
    """Pearson's statistic is 0 for a uniform table and grows with a biased cell."""
    assert chi2_statistic(torch.full((4, 4), 10)) == 0
    biased = torch.full((4, 4), 10)
    biased[0, 0] = 30
    assert chi2_statistic(biased) > 30
