"""torchdata: StatefulDataLoader(shuffle=True, generator=g) shuffles another permutation than torch's DataLoader from the same g.
Its RandomSampler draws a seed from g and shuffles with a generator of its own, so g also ends elsewhere after an epoch.
Consequence: silently different order: switching from DataLoader changes every epoch's order and what g gives the code sharing it."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def epoch_and_state(make):
    """The first epoch of 10 samples (batches of 5, generator seed 0) and a draw from the generator after it."""
    g = torch.Generator().manual_seed(0)
    order = [i for (b,) in make(TensorDataset(torch.arange(10)), batch_size=5, shuffle=True, generator=g) for i in b.tolist()]
    return [order, int(torch.randint(0, 2**31, (), generator=g))]


def results():
    """(peer, torch)."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    return epoch_and_state(StatefulDataLoader), epoch_and_state(DataLoader)


if __name__ == "__main__":
    peer, ref = results()
    print(f"StatefulDataLoader [epoch, next draw of g]: {peer}\ntorch DataLoader   [epoch, next draw of g]: {ref}")
