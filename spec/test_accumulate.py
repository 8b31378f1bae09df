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


def test_a_loss_function_without_a_reduction_attribute_is_taken_as_a_mean():
    """A plain function loss (``F.cross_entropy``, no ``reduction`` attribute) averages, as
    ``nn.CrossEntropyLoss()`` does: the accumulated epoch is still full-batch GD's step."""
    import torch.nn.functional as F

    X, y = _data(23, 4)
    full, acc = make_model(3, 2, 4).double(), make_model(3, 2, 4).double()
    train_full_batch(full, X, y, epochs=2, lr=0.5, loss_fn=F.cross_entropy)
    train(acc, TensorLoader((X, y), batch_size=5, generator=torch.Generator()), epochs=2, lr=0.5, loss_fn=F.cross_entropy, accumulate_epoch=True)
    for a, b in zip(acc.parameters(), full.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_accumulate_refuses_a_non_finite_loss_by_default_and_check_finite_false_lets_it_through():
    from batchfeed.training import accumulate

    X, y = _data(6, 2)
    X[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match=r"^loss=nan$"):
        accumulate(make_model(3, 2, 0).double(), torch.nn.CrossEntropyLoss(), X, y)
    model = make_model(3, 2, 0).double()
    h = train(model, TensorLoader((X, y), batch_size=3, generator=torch.Generator()), epochs=1, accumulate_epoch=True, check_finite=False)
    assert h.steps_per_epoch == [1] and not torch.isfinite(torch.tensor(h.update_losses)).all()
