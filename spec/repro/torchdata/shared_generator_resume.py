"""torchdata: with shuffle=True and generator=g, a StatefulDataLoader resumed mid-epoch gives later epochs another order
than the uninterrupted run (the per-epoch base-seed draw from g is not replayed).
Consequence: silently different order: after resuming from a checkpoint, every later epoch differs from the run that was not stopped."""
import torch
from torch.utils.data import TensorDataset


def make():
    from torchdata.stateful_dataloader import StatefulDataLoader
    return StatefulDataLoader(TensorDataset(torch.arange(23)), batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))


def epochs(loader, n):
    return [[i for (b,) in loader for i in b.tolist()] for _ in range(n)]


def results():
    """(resumed, uninterrupted): epochs 1 and 2 after resuming at batch 2 of epoch 0, and without the stop. torch's DataLoader
    has no state_dict(): the reference is the uninterrupted run, which is what torch's own resumable loader must reproduce."""
    loader, resumed = make(), make()
    it = iter(loader)
    next(it), next(it)
    resumed.load_state_dict(loader.state_dict())
    return epochs(resumed, 3)[1:], epochs(make(), 3)[1:]


if __name__ == "__main__":
    print("StatefulDataLoader resumed, epochs 1-2:      %s\nStatefulDataLoader uninterrupted, epochs 1-2: %s" % results())
