"""torchdata: with sampler=RandomSampler(ds, generator=g1), a state saved in a later epoch resumes another permutation: the
sampler has no state_dict(), so StatefulDataLoader only skips the batches already served, it cannot restore g1.
Consequence: silently different order, lost and repeated samples: the resumed epoch serves a different permutation's tail."""
import torch
from torch.utils.data import RandomSampler, TensorDataset


def make():
    from torchdata.stateful_dataloader import StatefulDataLoader
    ds = TensorDataset(torch.arange(23))
    return StatefulDataLoader(ds, batch_size=5, sampler=RandomSampler(ds, generator=torch.Generator().manual_seed(0)))


def labels(batches):
    return [i for (b,) in batches for i in b.tolist()]


def results():
    """(resumed, uninterrupted): epoch 2 when a state is saved after its first batch and resumed, and without the stop."""
    loader, resumed, uninterrupted = make(), make(), make()
    list(loader), list(loader)
    served = next(iter(loader))
    resumed.load_state_dict(loader.state_dict())
    list(uninterrupted), list(uninterrupted)
    return labels([served, *resumed]), labels(uninterrupted)


if __name__ == "__main__":
    print("StatefulDataLoader resumed, epoch 2:      %s\nStatefulDataLoader uninterrupted, epoch 2: %s" % results())
