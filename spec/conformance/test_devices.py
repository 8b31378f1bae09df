"""Device placement: models and batches land on the requested device (``--device``).

CPU always runs. With ``--device cuda`` these run on the GPU, and skip with the reason
when torch sees no CUDA device.
"""

import pytest
import torch

from batchfeed import (
    PairDataset,
    compare,
    make_model,
    make_seed_data,
    train_full_batch,
    train_minibatch,
)


class DeviceRecorder(torch.nn.Module):
    """Wraps a model and records the device of every input it sees."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append(x.device)
        return self.inner(x)


def same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def test_minibatch_training_moves_model_and_batches(make_loader, device):
    """Mini-batch training puts the model and every batch on the requested device."""
    X, y = make_seed_data(200)
    model = DeviceRecorder(make_model())
    loader = make_loader(PairDataset(X, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    hist = train_minibatch(model, loader, X, y, epochs=2, device=device)
    assert all(same_device(p.device, device) for p in model.parameters())
    assert model.seen and all(same_device(d, device) for d in model.seen), f"inputs on {set(model.seen)}, asked {device}"
    assert hist.final_loss < hist.epoch_loss[0]


def test_full_batch_training_moves_model_and_data(device):
    """Full-batch training puts the model and the whole data on the requested device."""
    X, y = make_seed_data(200)
    model = DeviceRecorder(make_model())
    train_full_batch(model, X, y, epochs=2, device=device)
    assert all(same_device(p.device, device) for p in model.parameters())
    assert all(same_device(d, device) for d in model.seen)


def test_compare_runs_on_the_device(make_loader, device):
    """The tutorial's comparison runs end to end on the device and mini-batch wins per epoch there too."""
    c = compare(n=500, epochs=3, device=device, loader_factory=make_loader)
    assert c.config["device"] == str(device)
    assert c.mini.final_loss < c.full.final_loss


@pytest.mark.cuda
def test_cuda_results_match_cpu_within_float_tolerance():
    """On CUDA, full-batch training ends within 1e-4 of the CPU weights (float32 kernels differ in summation order)."""
    X, y = make_seed_data(500)
    cpu, gpu = make_model(seed=1), make_model(seed=1)
    train_full_batch(cpu, X, y, epochs=20, device="cpu")
    train_full_batch(gpu, X, y, epochs=20, device="cuda")
    for p, q in zip(cpu.parameters(), gpu.parameters()):
        assert torch.allclose(p, q.cpu(), atol=1e-4), f"max diff {(p - q.cpu()).abs().max():.3g}"
