"""Updates per epoch: what each training loop really does, counted by an optimizer hook."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from batchfeed import (
    PairDataset,
    make_model,
    make_seed_data,
    train_full_batch,
    train_minibatch,
)


class StepCounter:
    """Counts optimizer.step() calls with the optimizer's own post-step hook."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.count = 0
        optimizer.register_step_post_hook(lambda *_: setattr(self, "count", self.count + 1))


@settings(max_examples=25)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 64), drop_last=st.booleans(), epochs=st.integers(1, 3))
def test_minibatch_takes_len_loader_steps_per_epoch(make_loader, n, batch_size, drop_last, epochs):
    """Mini-batch GD performs exactly len(loader) optimizer steps per epoch."""
    X, y = make_seed_data(n, 3, seed=n)
    model = make_model(3, 2, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = StepCounter(opt)
    loader = make_loader(PairDataset(X, y), batch_size=batch_size, shuffle=True, drop_last=drop_last,
                         generator=torch.Generator().manual_seed(n))
    assume(len(loader) > 0)  # drop_last with n < batch_size: an empty epoch, covered by test_batching
    hist = train_minibatch(model, loader, X, y, epochs=epochs, optimizer=opt)
    assert counter.count == epochs * len(loader), f"{counter.count} steps, but {epochs} epochs x len(loader)={len(loader)}"
    assert hist.steps_per_epoch == [len(loader)] * epochs
    assert len(hist.update_losses) == counter.count


@pytest.mark.parametrize("epochs", [1, 5])
def test_full_batch_takes_one_step_per_epoch(epochs):
    """Full-batch GD performs exactly one optimizer step per epoch."""
    X, y = make_seed_data(100)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = StepCounter(opt)
    hist = train_full_batch(model, X, y, epochs=epochs, optimizer=opt)
    assert counter.count == epochs and hist.steps_per_epoch == [1] * epochs


def test_full_batch_steps_per_epoch_option():
    """train_full_batch(steps_per_epoch=k) performs k full-data updates per epoch."""
    X, y = make_seed_data(50)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    counter = StepCounter(opt)
    hist = train_full_batch(model, X, y, epochs=2, steps_per_epoch=7, optimizer=opt)
    assert counter.count == 14 and hist.steps_per_epoch == [7, 7]
    assert hist.samples_per_epoch == [7 * 50, 7 * 50]


def test_history_records_every_update_and_epoch():
    """History has one loss per update, and full-data loss/accuracy before training and after each epoch."""
    X, y = make_seed_data(1000)
    loader = torch.utils.data.DataLoader(PairDataset(X, y), batch_size=32, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    hist = train_minibatch(make_model(), loader, X, y, epochs=3)
    assert len(hist.update_losses) == 3 * math.ceil(1000 / 32)
    assert len(hist.epoch_loss) == len(hist.epoch_accuracy) == 4
    assert hist.samples_per_epoch == [1000] * 3
    assert hist.updates_so_far == [0, 32, 64, 96]
    assert all(0.0 <= a <= 1.0 for a in hist.epoch_accuracy)
    assert hist.epoch_time == sorted(hist.epoch_time) and hist.epoch_time[0] > 0


def test_full_batch_update_loss_is_the_full_data_loss():
    """Full-batch GD's loss at update k equals the full-data loss evaluated before that update."""
    X, y = make_seed_data(200)
    hist = train_full_batch(make_model(), X, y, epochs=4)
    assert hist.update_losses == pytest.approx(hist.epoch_loss[:-1], rel=1e-6)


def test_same_initial_weights_give_the_same_first_loss():
    """make_model(seed) is deterministic, so both methods start from the same full-data loss."""
    X, y = make_seed_data(100)
    a = train_full_batch(make_model(seed=3), X, y, epochs=1)
    b = train_minibatch(make_model(seed=3), [(X[:10], y[:10])], X, y, epochs=1)
    assert a.epoch_loss[0] == b.epoch_loss[0]
    assert not torch.equal(make_model(seed=3)[0].weight, make_model(seed=4)[0].weight)


@pytest.mark.parametrize("lr", [0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate_is_rejected(lr):
    """A non-positive or non-finite lr raises ValueError naming lr."""
    X, y = make_seed_data(10)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        train_full_batch(make_model(), X, y, lr=lr)


def test_divergence_raises_naming_epoch_and_step():
    """A non-finite loss raises DivergenceError naming the epoch and step, not a NaN table."""
    from batchfeed import DivergenceError

    X, y = make_seed_data(64)
    X[0, 0] = float("inf")  # the first batch's loss is not finite
    loader = [(X[:32], y[:32]), (X[32:], y[32:])]
    with pytest.raises(DivergenceError, match=r"epoch 1, step 1"):
        train_minibatch(make_model(), loader, X, y, epochs=2)
