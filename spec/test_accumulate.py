"""Full-batch GD fed batch by batch (issue 15, "mini-batch and accumulated full-batch"): the one
training loop, ``train(..., accumulate_epoch=True)``, adds every batch's gradient up and takes one
step per epoch, the step full-batch GD on all the data in memory takes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfeed import TensorLoader
from batchfeed.training import DivergenceError, Stop, make_model, train, train_full_batch


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return X, (X.sum(1) > 0).long()


@given(n=st.integers(1, 120), batch_size=st.integers(1, 50), epochs=st.integers(1, 3), seed=st.integers(0, 2**31))
@settings(max_examples=25)
def test_an_accumulated_epoch_is_one_full_batch_step(n, batch_size, epochs, seed):
    """Uneven last batch included: the weights after each epoch, the one step per epoch and the loss
    recorded for it are full-batch GD's on the whole (X, y)."""
    X, y = _data(n, seed)
    full, acc = make_model(3, 2, seed).double(), make_model(3, 2, seed).double()
    expected = train_full_batch(full, X, y, epochs=epochs, lr=0.5)
    loader = TensorLoader((X, y), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    got = train(acc, loader, epochs=epochs, lr=0.5, accumulate_epoch=True, eval_data=(X, y), method="full-batch")
    assert got.steps_per_epoch == [1] * epochs and got.samples_per_epoch == [n] * epochs
    for a, b in zip(acc.parameters(), full.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.tensor(got.update_losses), torch.tensor(expected.update_losses),
                               rtol=1e-10, atol=1e-12)


def test_a_summed_loss_accumulates_the_summed_gradient():
    X, y = _data(30, 1)
    full, acc = make_model(3, 2, 1).double(), make_model(3, 2, 1).double()
    loss = torch.nn.CrossEntropyLoss(reduction="sum")
    train(full, [(X, y)], epochs=1, lr=0.01, loss_fn=loss)
    train(acc, [(X[:7], y[:7]), (X[7:], y[7:])], epochs=1, lr=0.01, loss_fn=loss, accumulate_epoch=True)
    for a, b in zip(acc.parameters(), full.parameters()):
        torch.testing.assert_close(a, b)


def test_a_diverged_or_stopped_epoch_takes_no_step():
    X, y = _data(20, 2)
    model = make_model(3, 2, 2).double()
    before = [p.detach().clone() for p in model.parameters()]
    bad = X.clone()
    bad[15] = float("nan")
    with pytest.raises(DivergenceError, match="epoch 1, step 2"):
        train(model, [(X[:10], y[:10]), (bad[10:], y[10:])], epochs=1, accumulate_epoch=True)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))

    def stop(_info):
        raise Stop

    hist = train(model, [(X, y)], epochs=1, accumulate_epoch=True, on_step=stop)
    assert hist.stopped == "hook" and hist.steps_per_epoch == [0]
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
