"""The batch-size sweep: steps to a target loss, the McCandlish et al. 2018 fit, and B_simple."""

import math

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from torch.nn import functional as F

from batchfeed import make_model, make_seed_data
from batchfeed.experiments import (
    batch_size_sweep,
    fit_noise_model,
    gradient_noise_scale,
    steps_to_target,
)
from batchfeed.report import format_sweep


def reference_steps(X, y, *, batch_size, lr, target, max_steps, seed):
    """Plain nn.Linear + torch.optim.SGD on the same batches: (steps or None, samples or None, loss after each step)."""
    model = make_model(X.shape[1], 2, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n, pos, perm, losses, seen = len(y), 0, torch.randperm(len(y), generator=g), [], 0
    for step in range(1, max_steps + 1):
        if pos >= n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        seen += len(idx)
        opt.zero_grad()
        F.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
        with torch.no_grad():
            losses.append(float(F.cross_entropy(model(X), y)))
        if losses[-1] <= target:
            return step, seen, losses
    return None, None, losses


@pytest.mark.parametrize("batch_size", [1, 7, 50, 100])
def test_stacked_learning_rates_train_like_separate_sgd_runs(batch_size):
    """Each learning rate of steps_to_target reaches the target at the step, and after the samples, that plain
    nn.Linear + SGD does (B=7 leaves a short last batch of 2 in every epoch of 100)."""
    X, y = make_seed_data(100, 3, 2)
    lrs, target, cap = [0.1, 0.5, 2.0], 0.45, 300
    steps, samples = steps_to_target(X, y, make_model(3, 2, 2), batch_size=batch_size, lrs=lrs, target_loss=target,
                                     max_steps=cap, seed=2)
    for lr, s, e in zip(lrs, steps, samples):
        ref, ref_e, losses = reference_steps(X, y, batch_size=batch_size, lr=lr, target=target, max_steps=cap, seed=2)
        assert ref is not None, f"lr {lr}: the reference never reached {target} in {cap} steps; pick another target"
        if s != ref:
            # float32 rounding may move a crossing that lands within 1e-6 of the target by one step
            assert abs(losses[ref - 1] - target) < 1e-6 and abs(s - ref) == 1, (lr, s, ref)
        else:
            assert e == ref_e, (lr, e, ref_e)


@given(
    s_min=st.floats(1.0, 1e4),
    b_noise=st.floats(0.01, 1e4),
    batch_sizes=st.lists(st.integers(1, 4096), min_size=2, max_size=8, unique=True),
)
@example(s_min=120.0, b_noise=7.5, batch_sizes=[1, 8, 32, 128, 1000])
def test_fit_recovers_the_model_it_fits(s_min, b_noise, batch_sizes):
    """Steps made exactly by S = S_min (1 + B_noise/B) give back S_min and B_noise, with zero error."""
    steps = [s_min * (1 + b_noise / b) for b in batch_sizes]
    fit = fit_noise_model(batch_sizes, steps)
    assert not fit.at_bound
    assert fit.s_min == pytest.approx(s_min, rel=1e-6)
    assert fit.b_noise == pytest.approx(b_noise, rel=1e-5, abs=1e-6 * max(batch_sizes))
    assert fit.e_min == pytest.approx(fit.s_min * fit.b_noise, rel=1e-9)
    assert fit.max_rel_error < 1e-6


def test_fit_keeps_b_noise_non_negative():
    """Steps that grow with B (no noise regime) fit B_noise = 0 at its bound, S_min their weighted mean."""
    fit = fit_noise_model([1, 10, 100], [100, 101, 102])
    assert fit.at_bound and fit.b_noise == 0.0 and fit.e_min == 0.0
    assert 100 < fit.s_min < 102 and fit.max_rel_error < 0.011


@pytest.mark.parametrize(("bs", "ss"), [([8], [10]), ([8, 8], [10, 11]), ([1, 2], [0, 5])],
                         ids=["one point", "one batch size", "zero steps"])
def test_fit_needs_two_batch_sizes_and_positive_steps(bs, ss):
    """fit_noise_model refuses fewer than two distinct batch sizes or a non-positive step count."""
    with pytest.raises(ValueError, match="fit_noise_model"):
        fit_noise_model(bs, ss)


def test_b_simple_matches_a_loop_over_per_sample_gradients():
    """B_simple = tr(Sigma)/|G|^2 equals the one computed from 40 separate per-sample backward passes."""
    X, y = make_seed_data(40, 3, 5)
    model = make_model(3, 2, 5)
    grads = []
    for i in range(40):
        model.zero_grad()
        F.cross_entropy(model(X[i:i + 1]), y[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    g = torch.stack(grads)
    G = g.mean(0)
    tr = float(((g - G) ** 2).sum(1).mean())
    b_simple, tr_got, gsq = gradient_noise_scale(make_model(3, 2, 5), X, y)
    assert tr_got == pytest.approx(tr, rel=1e-5)
    assert gsq == pytest.approx(float(G @ G), rel=1e-5)
    assert b_simple == pytest.approx(tr / float(G @ G), rel=1e-5)


def test_b_simple_is_zero_when_every_sample_has_the_same_gradient():
    """N copies of one sample have no gradient noise: tr(Sigma) = 0, B_simple = 0."""
    X, y = make_seed_data(1, 3, 0)
    b_simple, tr, gsq = gradient_noise_scale(make_model(3, 2, 0), X.repeat(16, 1), y.repeat(16))
    assert tr == pytest.approx(0.0, abs=1e-12) and gsq > 0 and b_simple == pytest.approx(0.0, abs=1e-9)


@pytest.fixture(scope="module")
def sweep():
    """A small sweep: N=200, B in 1, 10, 50, 200, learning rates 0.1 and 0.4."""
    return batch_size_sweep([50, 1, 200, 10, 10], n=200, lrs=[0.1, 0.4], seed=3, reference_updates=20)


def test_sweep_is_reproducible_by_seed(sweep):
    """The same seed gives the same steps, samples, fitted B_noise and B_simple, to the bit."""
    again = batch_size_sweep([1, 10, 50, 200], n=200, lrs=[0.1, 0.4], seed=3, reference_updates=20)
    assert again.to_dict() == sweep.to_dict()
    assert sweep.fit is not None and again.fit.b_noise == sweep.fit.b_noise


def test_sweep_keeps_the_fewest_steps_of_each_batch_size(sweep):
    """Batch sizes are sorted and deduplicated; each keeps the learning rate that reached the target first."""
    assert [p.batch_size for p in sweep.points] == [1, 10, 50, 200]
    for p in sweep.points:
        reached = {lr: s for lr, s in p.steps_by_lr.items() if s is not None}
        assert p.steps == min(reached.values()) and p.steps_by_lr[p.lr] == p.steps
        assert p.batch_size * (p.steps - 1) < p.samples <= p.batch_size * p.steps


def test_sweep_target_and_noise_path(sweep):
    """The default target is 1.1 x full-batch GD's loss after the reference updates; B_simple runs from the
    initial weights to that target, whose loss it reaches."""
    assert sweep.config["target_rule"].startswith("1.1 x the full-data loss of full-batch GD after 20 updates")
    nz = sweep.noise
    assert nz.steps[0] == 0 and nz.loss[-1] <= sweep.config["target_loss"] < nz.loss[0]
    assert all(math.isfinite(b) and b > 0 for b in nz.b_simple)
    text = format_sweep(sweep)
    assert f"B_noise = {sweep.fit.b_noise:.2f}" in text and f"mean {nz.mean:.1f}" in text


def test_unreached_targets_are_reported_not_looped_on():
    """A target no batch size reaches within max_steps reads 'not reached', and no fit is made."""
    sw = batch_size_sweep([1, 10], n=50, seed=0, target_loss=1e-6, max_steps=5)
    assert [p.steps for p in sw.points] == [None, None] and sw.fit is None
    text = format_sweep(sw)
    assert "not reached" in text and "needs at least two batch sizes" in text


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_sizes": [8, 300]}, "batch size 300 exceeds N=200"),
    ({"batch_sizes": []}, "at least one batch size"),
    ({"batch_sizes": [0, 8]}, "batch size must be a positive integer"),
    ({"batch_sizes": [8], "lrs": [0.1, -1.0]}, "lrs must be positive"),
])
def test_sweep_rejects_bad_arguments(kwargs, match):
    """Bad batch sizes or learning rates raise ValueError naming them."""
    with pytest.raises(ValueError, match=match):
        batch_size_sweep(n=200, **kwargs)
