"""Training loops: the tutorial's model, its two loops and what their History records.

test_updates.py counts the optimizer steps and test_convergence.py compares the two
methods; this module specifies the rest of batchfeed.training against the tutorial's own
loop (``CrossEntropyLoss`` + ``SGD(lr=0.1)``, 5 epochs, ``Sequential(Linear(3, 2))``),
written out here: the same weights and losses, the evaluation in eval mode, the
divergence checks, the timing and the defaults.
"""

import math
import time

import pytest
import torch
from torch import nn

from batchfeed import (
    DivergenceError,
    History,
    PairDataset,
    evaluate,
    make_model,
    make_seed_data,
    train_full_batch,
    train_minibatch,
)
from batchfeed.training import Budget, full_batch_gradient


def _tutorial_loop(model, batches_per_epoch, *, epochs, lr, loss_fn=None) -> list[float]:
    """The tutorial's training loop, verbatim in effect; returns the loss of every update."""
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        for xb, yb in batches_per_epoch:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


def _batches(X, y, b):
    return list(zip(X.split(b), y.split(b)))


def assert_same_weights(a: nn.Module, b: nn.Module, *, context: str) -> None:
    __tracebackhide__ = True
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-6, atol=1e-7, msg=lambda m, name=name: f"{name}: {m} [{context}]")


# --- the model ---------------------------------------------------------------------------------

def test_make_model_defaults_are_the_tutorials_linear_3_to_2():
    """make_model() is Sequential(Linear(3, 2)) on CPU in float32, seeded with 0."""
    model = make_model()
    assert isinstance(model, nn.Sequential) and len(model) == 1 and isinstance(model[0], nn.Linear)
    assert (model[0].in_features, model[0].out_features) == (3, 2)
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 and p.requires_grad for p in model.parameters())
    assert_same_weights(model, make_model(3, 2, seed=0), context="make_model() vs make_model(3, 2, seed=0)")


@pytest.mark.parametrize("features", [1, 4, 9])
def test_make_model_draws_nn_linears_uniform_init(features):
    """Weights and biases are U(-1/sqrt(F), 1/sqrt(F)), as nn.Linear's default: within the bound, and filling it."""
    bound = 1 / math.sqrt(features)
    model = make_model(features, 400, seed=features)  # 400 x F draws: max |w| > 0.95 bound with P > 1 - 0.95^400
    for name, p in model.named_parameters():
        p = p.detach()
        assert float(p.abs().max()) <= bound, f"{name}: |w| up to {float(p.abs().max())} > 1/sqrt({features})"
        assert float(p.max()) > 0.9 * bound and float(p.min()) < -0.9 * bound, (
            f"{name}: in [{float(p.min())}, {float(p.max())}], not spread over +-{bound}")


@pytest.mark.parametrize("bad", [{"features": 0}, {"classes": 0}, {"features": 2.5}])
def test_make_model_rejects_bad_sizes(bad):
    """A non-positive or non-integer number of features or classes raises ValueError naming it."""
    name = next(iter(bad))
    with pytest.raises(ValueError, match=rf"{name} must be a positive integer"):
        make_model(**bad)


# --- evaluate --------------------------------------------------------------------------------

@pytest.mark.parametrize("was_training", [True, False])
def test_evaluate_runs_in_eval_mode_and_restores_the_mode(was_training):
    """evaluate computes in eval mode (dropout off), without gradients, and leaves the model in the mode it came in."""
    X, y = make_seed_data(40, 3, seed=1)
    model = nn.Sequential(make_model(3, 2, seed=1), nn.Dropout(0.5))
    model.train(was_training)
    modes = []
    model.register_forward_hook(lambda m, _i, out: modes.append((m.training, out.requires_grad)))
    loss, acc = evaluate(model, X, y)
    assert modes == [(False, False)], f"forward ran with (training, requires_grad) = {modes}"
    assert model.training is was_training and model[1].training is was_training
    with torch.no_grad():
        out = model[0](X)  # eval-mode dropout is the identity
    assert loss == pytest.approx(float(nn.functional.cross_entropy(out, y)), rel=1e-6)
    assert acc == pytest.approx(float((out.argmax(1) == y).double().mean()))


def test_evaluate_uses_the_given_loss_fn():
    """evaluate(..., loss_fn) reports that loss; without one, cross-entropy; accuracy is argmax == y either way."""
    X, y = make_seed_data(30, 3, seed=2)
    model = make_model(3, 2, seed=2)
    with torch.no_grad():
        out = model(X)
    ce = float(nn.functional.cross_entropy(out, y))
    summed = evaluate(model, X, y, nn.CrossEntropyLoss(reduction="sum"))
    assert summed[0] == pytest.approx(30 * ce, rel=1e-5)
    assert evaluate(model, X, y)[0] == pytest.approx(ce, rel=1e-6)
    assert summed[1] == evaluate(model, X, y)[1] == pytest.approx(float((out.argmax(1) == y).double().mean()))


# --- the loops are the tutorial's loop -------------------------------------------------------------

def test_train_minibatch_is_the_tutorials_loop_with_its_defaults():
    """train_minibatch with its defaults (5 epochs, SGD lr=0.1, cross-entropy) gives the tutorial loop's weights and per-update losses."""
    X, y = make_seed_data(50, 3, seed=3)
    batches = _batches(X, y, 8)  # 6 full batches and one of 2
    hist = train_minibatch(got := make_model(seed=3), batches, X, y)
    losses = _tutorial_loop(expected := make_model(seed=3), batches, epochs=5, lr=0.1)
    assert hist.method == "mini-batch" and hist.epochs == 5
    assert hist.update_losses == pytest.approx(losses, rel=1e-6)
    assert_same_weights(got, expected, context="train_minibatch defaults vs the tutorial's loop")
    assert hist.samples_per_epoch == [50] * 5 and hist.steps_per_epoch == [7] * 5


def test_train_full_batch_is_the_tutorials_loop_with_its_defaults():
    """train_full_batch with its defaults (5 epochs, one full-data SGD lr=0.1 update each) gives the tutorial loop's weights."""
    X, y = make_seed_data(50, 3, seed=4)
    hist = train_full_batch(got := make_model(seed=4), X, y)
    losses = _tutorial_loop(expected := make_model(seed=4), [(X, y)], epochs=5, lr=0.1)
    assert hist.method == "full-batch" and hist.epochs == 5
    assert hist.update_losses == pytest.approx(losses, rel=1e-6)
    assert_same_weights(got, expected, context="train_full_batch defaults vs the tutorial's loop")


@pytest.mark.parametrize("method", ["mini-batch", "full-batch"])
def test_a_given_loss_fn_is_trained_on_and_reported(method):
    """loss_fn=...: the updates follow that loss and History's losses are that loss, evaluations included."""
    X, y = make_seed_data(40, 3, seed=5)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.3)
    batches = _batches(X, y, 16) if method == "mini-batch" else [(X, y)]
    if method == "mini-batch":
        hist = train_minibatch(got := make_model(seed=5), batches, X, y, epochs=2, lr=0.5, loss_fn=loss_fn)
    else:
        hist = train_full_batch(got := make_model(seed=5), X, y, epochs=2, lr=0.5, loss_fn=loss_fn)
    losses = _tutorial_loop(expected := make_model(seed=5), batches, epochs=2, lr=0.5, loss_fn=loss_fn)
    assert hist.update_losses == pytest.approx(losses, rel=1e-6)
    assert_same_weights(got, expected, context="label-smoothed loss")
    assert hist.epoch_loss[0] == pytest.approx(evaluate(make_model(seed=5), X, y, loss_fn)[0], rel=1e-6)
    assert hist.epoch_loss[-1] == pytest.approx(evaluate(got, X, y, loss_fn)[0], rel=1e-6)


def test_training_runs_in_train_mode_whatever_mode_the_model_came_in():
    """A model handed over in eval mode is trained in train mode (dropout on) and evaluated in eval mode."""
    X, y = make_seed_data(16, 3, seed=6)
    model = nn.Sequential(make_model(3, 2, seed=6), nn.Dropout(0.0))
    model.eval()
    modes = []
    model.register_forward_hook(lambda m, _i, out: modes.append((m.training, out.requires_grad)))
    train_minibatch(model, _batches(X, y, 8), X, y, epochs=1)
    # evaluation before training, two training batches, evaluation after the epoch
    assert modes == [(False, False), (True, True), (True, True), (False, False)], modes


def test_on_epoch_sees_the_history_after_each_epoch():
    """on_epoch is called once per epoch, after that epoch's evaluation, with the History so far (both loops)."""
    X, y = make_seed_data(24, 3, seed=7)
    seen = []
    hist = train_minibatch(make_model(seed=7), _batches(X, y, 10), X, y, epochs=3,
                           on_epoch=lambda h: seen.append((h.epochs, len(h.epoch_loss), h.total_steps)))
    assert seen == [(1, 2, 3), (2, 3, 6), (3, 4, 9)]
    full = []
    train_full_batch(make_model(seed=7), X, y, epochs=2, steps_per_epoch=2,
                     on_epoch=lambda h: full.append((h.method, h.epochs, h.total_steps)))
    assert full == [("full-batch", 1, 2), ("full-batch", 2, 4)]
    assert hist.total_steps == 9 and hist.final_loss == hist.epoch_loss[-1]
    assert hist.to_dict()["steps_per_epoch"] == [3, 3, 3] and hist.to_dict()["method"] == "mini-batch"


def test_zero_epochs_evaluates_once_and_leaves_the_model():
    """epochs=0 trains nothing: one evaluation, no steps, the weights unchanged, no wall time."""
    X, y = make_seed_data(20, 3, seed=8)
    model = make_model(seed=8)
    hist = train_full_batch(model, X, y, epochs=0)
    assert hist.epochs == 0 and hist.update_losses == [] and hist.updates_so_far == [0]
    assert hist.epoch_loss == [pytest.approx(evaluate(make_model(seed=8), X, y)[0])]
    assert hist.wall_time == 0.0 and hist.epoch_time == []
    assert_same_weights(model, make_model(seed=8), context="epochs=0")


def test_an_epoch_without_batches_takes_no_step():
    """A loader that yields nothing: each epoch records 0 steps and 0 samples, and the loss stays put."""
    X, y = make_seed_data(20, 3, seed=9)
    hist = train_minibatch(make_model(seed=9), [], X, y, epochs=2)
    assert hist.steps_per_epoch == [0, 0] and hist.samples_per_epoch == [0, 0] and hist.update_losses == []
    assert hist.epoch_loss[0] == hist.epoch_loss[1] == hist.epoch_loss[2]


@pytest.mark.parametrize("epochs", [-1, 1.5, True, "3"], ids=repr)
def test_bad_epochs_are_rejected(epochs):
    """epochs must be a non-negative int: anything else raises ValueError naming it."""
    X, y = make_seed_data(10)
    with pytest.raises(ValueError, match=rf"epochs must be a non-negative integer, got {epochs!r}"):
        train_full_batch(make_model(), X, y, epochs=epochs)


@pytest.mark.parametrize("steps", [0, -1, 1.5])
def test_bad_steps_per_epoch_is_rejected(steps):
    """train_full_batch(steps_per_epoch=...) must be a positive int: ValueError naming it."""
    X, y = make_seed_data(10)
    with pytest.raises(ValueError, match=r"^steps_per_epoch must be a positive integer"):
        train_full_batch(make_model(), X, y, steps_per_epoch=steps)


def test_a_model_without_parameters_is_refused():
    """A model with no parameters has nothing to train: ValueError (SGD's empty parameter list)."""
    X, y = make_seed_data(10, 2)
    with pytest.raises(ValueError, match="empty parameter list"):
        train_full_batch(nn.Sequential(), X, y, epochs=1)


def test_the_device_option_trains_there(device):
    """device=...: the model and the data go there, and the run matches the CPU run."""
    X, y = make_seed_data(32, 3, seed=10)
    cpu = train_full_batch(make_model(seed=10), X, y, epochs=2)
    model = make_model(seed=10)
    hist = train_full_batch(model, X, y, epochs=2, device=str(device))
    assert all(p.device == device for p in model.parameters())
    assert hist.epoch_loss == pytest.approx(cpu.epoch_loss, rel=1e-5)
    model = make_model(seed=10).to(device)
    hist = train_minibatch(model, [(X, y)], X, y, epochs=2)  # default: the model's device
    assert all(p.device == device for p in model.parameters()), "the model was moved off its device"
    assert hist.epoch_loss == pytest.approx(cpu.epoch_loss, rel=1e-5)
    model = make_model(seed=10)
    hist = train_minibatch(model, [(X, y)], X, y, epochs=2, device=device)
    assert all(p.device == device for p in model.parameters())
    assert hist.epoch_loss == pytest.approx(cpu.epoch_loss, rel=1e-5)


def test_full_batch_gradient_runs_on_the_models_device(device):
    """full_batch_gradient moves CPU batches to the model's device: the gradient is there and equals the CPU one."""
    X, y = make_seed_data(30, 3, seed=17)
    cpu = full_batch_gradient(make_model(seed=17), nn.CrossEntropyLoss(), _batches(X, y, 8))
    got = full_batch_gradient(make_model(seed=17).to(device), nn.CrossEntropyLoss(), _batches(X, y, 8))
    for g, c in zip(got, cpu):
        assert g.device == device
        torch.testing.assert_close(g.cpu(), c, rtol=1e-5, atol=1e-6)


# --- time ------------------------------------------------------------------------------------------

class _SlowBatches:
    """Two batches per epoch, each taking at least ``delay`` seconds to produce."""

    def __init__(self, X, y, delay: float) -> None:
        self.batches, self.delay = _batches(X, y, (len(y) + 1) // 2), delay

    def __iter__(self):
        for b in self.batches:
            time.sleep(self.delay)
            yield b


def test_epoch_time_is_the_cumulative_training_time_without_evaluation():
    """epoch_time[k]: the training time up to the end of epoch k, evaluations excluded; wall_time is the last.

    Bounds from sleeps, which only ever take longer: each batch takes >= 10 ms to produce and
    each evaluation sleeps >= 10 ms, so at the end of epoch k (on_epoch, after its evaluation)
    epoch_time >= 2k x 10 ms and <= (time since the start) - (k + 1) x 10 ms.
    """
    X, y = make_seed_data(20, 3, seed=11)
    delay = 0.01

    def loss_fn(out, target):
        if not torch.is_grad_enabled():  # evaluate() runs under no_grad
            time.sleep(delay)
        return nn.functional.cross_entropy(out, target)

    ends = []
    start = time.perf_counter()
    hist = train_minibatch(make_model(seed=11), _SlowBatches(X, y, delay), X, y, epochs=3, loss_fn=loss_fn,
                           on_epoch=lambda h: ends.append(time.perf_counter() - start))
    assert len(hist.epoch_time) == 3
    for k, (t, end) in enumerate(zip(hist.epoch_time, ends), start=1):
        assert t >= k * 2 * delay, f"epoch_time[{k - 1}] = {t:.4f} s < {k} epochs x 2 batches x {delay} s"
        assert t <= end - (k + 1) * delay, (
            f"epoch_time[{k - 1}] = {t:.4f} s, but epoch {k} ended {end:.4f} s after the start, "
            f"with {k + 1} evaluations of >= {delay} s in that time")
    assert hist.wall_time == hist.epoch_time[-1]


def test_a_fresh_history_has_no_wall_time():
    """History before any epoch: no steps, no wall time."""
    hist = History(method="mini-batch")
    assert hist.wall_time == 0.0 and hist.epochs == 0 and hist.total_steps == 0 and hist.updates_so_far == [0]


# --- divergence ----------------------------------------------------------------------------------

class _Epochs:
    """A loader whose epoch ``e`` (from 1) yields ``make(e)``'s batches."""

    def __init__(self, make) -> None:
        self.make, self.epoch = make, 0

    def __iter__(self):
        self.epoch += 1
        return iter(self.make(self.epoch))


def test_divergence_names_the_epoch_and_step_and_skips_the_bad_update():
    """A non-finite batch loss at epoch 2, step 2 raises DivergenceError naming both; the weights stay finite (no step on it)."""
    X, y = make_seed_data(30, 3, seed=12)
    bad = X[10:20].clone()
    bad[0, 0] = float("nan")
    good = _batches(X, y, 10)
    loader = _Epochs(lambda e: good if e == 1 else [good[0], (bad, y[10:20]), good[2]])
    model = make_model(seed=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(DivergenceError, match=r"^mini-batch training diverged: loss=nan at epoch 2, step 2 \(lr=0\.1\)$"):
        train_minibatch(model, loader, X, y, epochs=3, optimizer=opt)
    expected = make_model(seed=12)
    _tutorial_loop(expected, good, epochs=1, lr=0.1)
    _tutorial_loop(expected, good[:1], epochs=1, lr=0.1)
    assert_same_weights(model, expected, context="the 4 updates before the bad batch")


def test_divergence_seen_only_at_the_epochs_end_is_raised_naming_the_epoch():
    """Finite batch losses but non-finite weights after the epoch's last update: DivergenceError after that epoch."""
    X, y = make_seed_data(30, 3, seed=13)
    model = make_model(seed=13)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # An update that overflows: the step's loss (before it) was finite, the weights after it are not.
    opt.register_step_post_hook(lambda *_: model[0].weight.data.fill_(float("inf")))
    with pytest.raises(DivergenceError, match=r"^full-batch training diverged: full-data loss=nan after epoch 1 \(lr=0\.1\)$"):
        train_full_batch(model, X, y, epochs=3, optimizer=opt)


def test_history_of_a_dataloader_run_counts_samples_with_an_uneven_last_batch():
    """samples_per_epoch counts the samples of every batch, the short last one included."""
    X, y = make_seed_data(45, 3, seed=14)
    loader = torch.utils.data.DataLoader(PairDataset(X, y), batch_size=10, shuffle=True,
                                         generator=torch.Generator().manual_seed(14))
    hist = train_minibatch(make_model(seed=14), loader, X, y, epochs=2)
    assert hist.samples_per_epoch == [45, 45] and hist.steps_per_epoch == [5, 5]
    assert hist.updates_so_far == [0, 5, 10]


@pytest.mark.parametrize("method", ["mini-batch", "full-batch"])
def test_track_full_loss_records_the_full_data_loss_after_every_update(method):
    """track_full_loss=True: one full-data loss per update, each what evaluate() gives after that update in the tutorial's loop; off by default."""
    X, y = make_seed_data(96, 3, 2)
    batches = [(X[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)] if method == "mini-batch" else [(X, y)]
    model, ref = make_model(3, 2, 2), make_model(3, 2, 2)
    if method == "mini-batch":
        h = train_minibatch(model, batches, X, y, epochs=2, lr=0.5, track_full_loss=True)
    else:
        h = train_full_batch(model, X, y, epochs=2, lr=0.5, track_full_loss=True)
    opt, loss_fn, expected = torch.optim.SGD(ref.parameters(), lr=0.5), nn.CrossEntropyLoss(), []
    for _ in range(2):
        for xb, yb in batches:
            loss = loss_fn(ref(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            expected.append(evaluate(ref, X, y)[0])
    assert h.update_full_losses == pytest.approx(expected, rel=1e-6)
    assert len(h.update_full_losses) == h.total_steps == 2 * len(batches)
    assert h.update_full_losses[len(batches) - 1] == pytest.approx(h.epoch_loss[1], rel=1e-6), "the epoch's last update"
    untracked = train_minibatch(make_model(3, 2, 2), batches, X, y, epochs=1, lr=0.5)
    assert untracked.update_full_losses == [] == train_full_batch(make_model(3, 2, 2), X, y, epochs=1).update_full_losses


def test_track_full_loss_uses_the_given_loss_fn():
    """With loss_fn=..., the full-data loss after every update is that loss: after an epoch's last update, its epoch_loss."""
    X, y = make_seed_data(48, 3, 3)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.4)
    h = train_minibatch(make_model(3, 2, 3), _batches(X, y, 16), X, y, epochs=2, lr=0.5, loss_fn=loss_fn,
                        track_full_loss=True)
    assert h.update_full_losses[2::3] == pytest.approx(h.epoch_loss[1:], rel=1e-6)
    assert h.update_full_losses[-1] != pytest.approx(evaluate(make_model(3, 2, 3), X, y)[0], rel=1e-3)


# --- the one training loop: budgets, hooks, a clean stop ------------------------------------------

def _tiny():
    X, y = make_seed_data(40, 3, 1)
    return X, y, [(X[i:i + 8], y[i:i + 8]) for i in range(0, 40, 8)]  # 5 batches of 8


@pytest.mark.parametrize(("budget", "steps", "stopped"), [
    (Budget(steps=7), 7, "steps"), (Budget(samples=20), 3, "samples"), (Budget(samples=60), 8, "samples"),
    (Budget(steps=100), 15, None),
])
def test_a_budget_stops_training_after_the_step_that_spends_it(budget, steps, stopped):
    """Budget(steps) stops after exactly that many updates, Budget(samples) after the update that reaches it (counted over
    all epochs); otherwise the epochs run out."""
    from batchfeed.training import train

    X, y, batches = _tiny()
    h = train(make_model(3, 2, 1), batches, epochs=3, budget=budget, eval_data=(X, y))
    assert h.total_steps == steps and h.stopped == stopped
    assert sum(h.samples_per_epoch) == 8 * steps
    assert len(h.epoch_loss) == len(h.steps_per_epoch) + 1, "the epoch a budget cut short is evaluated too"


def test_hooks_see_every_step_and_epoch_and_stop_cleanly():
    """before_epoch runs before each epoch, on_step after each update with its numbers; a callable gives epoch e's batches;
    Stop ends training after that step."""
    from batchfeed.training import Stop, train

    X, y, batches = _tiny()
    seen, epochs = [], []

    def on_step(info):
        seen.append((info.epoch, info.step, info.global_step, info.samples))
        assert torch.isfinite(info.loss) and not info.loss.requires_grad
        if info.global_step == 8:
            raise Stop

    h = train(make_model(3, 2, 1), lambda e: batches[: 2 if e == 2 else 5], epochs=5, on_step=on_step,
              before_epoch=epochs.append)
    assert seen == [(1, s, s, 8) for s in range(1, 6)] + [(2, 1, 6, 8), (2, 2, 7, 8), (3, 1, 8, 8)]
    assert epochs == [1, 2, 3] and h.stopped == "hook" and h.steps_per_epoch == [5, 2, 1]
    assert h.epoch_loss == [], "no eval_data: nothing evaluated"


def test_train_needs_epochs_or_a_budget_and_eval_data_to_track():
    """Without epochs or a budget training would never end: refused, naming both; track_full_loss without eval_data too."""
    from batchfeed.training import train

    with pytest.raises(ValueError, match=r"^train needs epochs, a budget, or both$"):
        train(make_model(), [])
    with pytest.raises(ValueError, match=r"^track_full_loss needs eval_data, the data whose loss it records$"):
        train(make_model(), [], epochs=1, track_full_loss=True)


# --- full_batch_gradient (its accuracy and memory: test_memory.py) ----------------------------------

class _WithUnused(nn.Module):
    """The tutorial's model plus a parameter the loss never reaches."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.net = make_model(3, 2, seed=seed)
        self.unused = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return self.net(x)


def test_full_batch_gradient_takes_a_plain_loss_function_as_a_mean():
    """A loss function without a `reduction` (F.cross_entropy) is taken as averaging: the full-batch gradient."""
    X, y = make_seed_data(30, 3, seed=15)
    model = make_model(seed=15)
    model.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    true = [p.grad.clone() for p in model.parameters()]
    got = full_batch_gradient(model, nn.functional.cross_entropy, _batches(X, y, 7))
    for g, t in zip(got, true):
        torch.testing.assert_close(g, t, rtol=1e-5, atol=1e-7)


def test_full_batch_gradient_of_a_parameter_the_loss_does_not_reach_is_zero():
    """A parameter with requires_grad that the loss never reaches gets a zero gradient, in .grad and in the result."""
    X, y = make_seed_data(20, 3, seed=16)
    model = _WithUnused(seed=16)
    grads = full_batch_gradient(model, nn.CrossEntropyLoss(), _batches(X, y, 8))
    k = next(i for i, p in enumerate(model.parameters()) if p is model.unused)  # in model.parameters() order
    assert len(grads) == 3 and grads[k] is model.unused.grad
    assert torch.equal(model.unused.grad, torch.zeros(4))


@pytest.mark.parametrize(("loss", "batches", "match"), [
    (nn.CrossEntropyLoss(reduction="none"), [(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))],
     r"^full_batch_gradient needs a loss with reduction 'mean' or 'sum', got 'none'$"),
    (nn.CrossEntropyLoss(), [], r"^full_batch_gradient: loader yielded no samples$"),
], ids=["reduction-none", "empty-loader"])
def test_full_batch_gradient_says_why_it_cannot_weight(loss, batches, match):
    """A per-sample loss or a loader with no samples raises ValueError saying which."""
    with pytest.raises(ValueError, match=match):
        full_batch_gradient(make_model(3, 2), loss, batches)


# --- the loop's clock, budgets and hooks, step by step ----------------------------------------------

class _Clock:
    """Stands in for batchfeed.training's ``time``: perf_counter moves only when ``tick`` says."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def _timed_run(monkeypatch, **kwargs):
    """train() on 2 batches an epoch, each taking 1 s to produce; hooks and evaluations take 100-100000 s."""
    import batchfeed.training as training

    clock = _Clock()
    monkeypatch.setattr(training, "time", clock)
    X, y, batches = _tiny()

    def batches_of(epoch):
        for b in batches[:2]:
            clock.tick(1.0)
            yield b

    def loss_fn(out, target):
        if not torch.is_grad_enabled():  # evaluate() runs under no_grad
            clock.tick(1000.0)
        return nn.functional.cross_entropy(out, target)

    return training.train(make_model(3, 2, 1), batches_of, eval_data=(X, y), loss_fn=loss_fn,
                          on_step=lambda info: clock.tick(100.0), on_epoch=lambda h: clock.tick(10000.0),
                          before_epoch=lambda e: clock.tick(100000.0), **kwargs)


def test_epoch_time_leaves_out_hooks_and_evaluations(monkeypatch):
    """epoch_time counts producing the batches and updating, not the hooks nor the evaluations (track_full_loss's included)."""
    h = _timed_run(monkeypatch, epochs=3, track_full_loss=True)
    assert h.epoch_time == [2.0, 4.0, 6.0] and h.wall_time == 6.0
    assert len(h.update_full_losses) == 6 and h.stopped is None


@pytest.mark.parametrize(("seconds", "steps"), [(2.0, 2), (2.5, 3), (3.0, 3)])
def test_a_seconds_budget_counts_training_time_only(monkeypatch, seconds, steps):
    """Budget(seconds) stops after the update at which the training time (hooks and evaluations left out) reaches it."""
    h = _timed_run(monkeypatch, budget=Budget(seconds=seconds))
    assert h.total_steps == steps and h.stopped == "seconds" and h.epoch_time[-1] == float(steps)
    assert len(h.epoch_loss) == h.epochs + 1


@pytest.mark.parametrize(("budget", "why"), [
    (Budget(steps=3, samples=3, seconds=3.0), "steps"), (Budget(samples=3, seconds=3.0), "samples"),
    (Budget(seconds=3.0), "seconds"), (Budget(steps=4, samples=4, seconds=4.0), None), (Budget(), None),
])
def test_budget_reached_names_the_first_limit_spent(budget, why):
    """Budget.reached(steps, samples, seconds): the first of steps, samples, seconds at or over its limit, else None."""
    assert budget.reached(3, 3, 3.0) == why
    assert Budget(steps=0).reached(0, 0, 0.0) == "steps" and Budget(seconds=1.0).reached(9, 9, 0.5) is None


def test_update_is_one_checked_tutorial_step():
    """update(): forward, loss, zero_grad, backward, step; returns the detached loss; a non-finite loss raises before the step."""
    from batchfeed.training import update

    X, y = make_seed_data(20, 3, seed=18)
    model, expected = make_model(seed=18), make_model(seed=18)
    loss = update(model, torch.optim.SGD(model.parameters(), lr=0.3), nn.CrossEntropyLoss(), X, y)
    assert loss.item() == pytest.approx(_tutorial_loop(expected, [(X, y)], epochs=1, lr=0.3)[0]) and not loss.requires_grad
    assert_same_weights(model, expected, context="one update")
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="^loss=nan$"):
        update(model, torch.optim.SGD(model.parameters(), lr=0.3), nn.CrossEntropyLoss(), bad, y)
    assert_same_weights(model, expected, context="no step on a non-finite loss")
    unchecked = update(model, torch.optim.SGD(model.parameters(), lr=0.3), nn.CrossEntropyLoss(), bad, y, check_finite=False)
    assert math.isnan(unchecked.item()) and torch.isnan(model[0].weight).all()


def test_check_finite_false_trains_through_a_non_finite_loss():
    """train(check_finite=False) takes the step on a NaN loss and records it; without eval_data nothing else checks."""
    from batchfeed.training import train

    X, y, batches = _tiny()
    bad = batches[1][0].clone()
    bad[0, 0] = float("nan")
    h = train(make_model(3, 2, 1), [batches[0], (bad, batches[1][1]), batches[2]], epochs=1, check_finite=False)
    assert h.steps_per_epoch == [3] and math.isfinite(h.update_losses[0]) and math.isnan(h.update_losses[1])


def test_without_epochs_training_runs_until_the_budget_is_spent():
    """epochs=None: epoch after epoch until the budget stops it; an epoch with no batch then raises, as it would never end."""
    from batchfeed.training import train

    X, y, batches = _tiny()
    assert train(make_model(3, 2, 1), batches, budget=Budget(steps=12)).steps_per_epoch == [5, 5, 2]
    h = train(make_model(3, 2, 1), batches[:1], budget=Budget(samples=25))
    assert h.steps_per_epoch == [1, 1, 1, 1] and h.stopped == "samples"
    with pytest.raises(ValueError, match=r"^epoch 1 gave no batch: training until the budget is spent would never end$"):
        train(make_model(3, 2, 1), [], budget=Budget(steps=1))
    h = train(make_model(3, 2, 1), [], epochs=2, budget=Budget(steps=1))
    assert h.steps_per_epoch == [0, 0] and h.stopped is None


def test_on_epoch_can_stop_training_and_is_not_called_after_a_stop():
    """on_epoch raising Stop ends training after that epoch (evaluated, stopped="hook"); after a budget's stop it is not called."""
    from batchfeed.training import Stop, train

    X, y, batches = _tiny()
    calls = []

    def on_epoch(h):
        calls.append(h.epochs)
        if h.epochs == 2:
            raise Stop

    h = train(make_model(3, 2, 1), batches, epochs=5, eval_data=(X, y), on_epoch=on_epoch)
    assert calls == [1, 2] and h.stopped == "hook" and h.steps_per_epoch == [5, 5] and len(h.epoch_loss) == 3
    calls.clear()
    h = train(make_model(3, 2, 1), batches, epochs=5, budget=Budget(steps=7), on_epoch=lambda h: calls.append(h.epochs))
    assert calls == [1] and h.stopped == "steps" and h.steps_per_epoch == [5, 2]


def test_train_defaults_are_the_tutorials_minibatch_loop():
    """train() without optimizer, lr, loss_fn or method: SGD(lr=0.1) on cross-entropy, recorded as "mini-batch"."""
    from batchfeed.training import train

    X, y, batches = _tiny()
    h = train(got := make_model(3, 2, 1), batches, epochs=2)
    losses = _tutorial_loop(expected := make_model(3, 2, 1), batches, epochs=2, lr=0.1)
    assert h.method == "mini-batch" and h.update_losses == pytest.approx(losses, rel=1e-6) and h.stopped is None
    assert_same_weights(got, expected, context="train() defaults vs the tutorial's loop")
