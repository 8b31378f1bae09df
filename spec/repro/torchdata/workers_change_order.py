"""torchdata: StatefulDataLoader with shuffle=True gives another order with num_workers=2 than with 0, for the same generator seed.
Consequence: silently different order: changing num_workers changes which samples share a batch, so runs stop being comparable."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def first_batches(make):
    """The first batch with num_workers=0 and with 2 (103 samples, batches of 8, generator seed 3)."""
    ds = TensorDataset(torch.arange(103))
    return [next(iter(make(ds, batch_size=8, shuffle=True, num_workers=w, generator=torch.Generator().manual_seed(3))))[0].tolist()
            for w in (0, 2)]


def results():
    """(peer, torch)."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    return first_batches(StatefulDataLoader), first_batches(DataLoader)


if __name__ == "__main__":
    peer, ref = results()
    print(f"StatefulDataLoader, workers 0 / 2: {peer[0]} / {peer[1]}\ntorch DataLoader,   workers 0 / 2: {ref[0]} / {ref[1]}")
