"""accelerate: DataLoaderDispatcher raises ValueError on an empty epoch (drop_last=True, fewer samples than one batch).
Consequence: crash: where torch's DataLoader runs an epoch of no batches, the dispatcher stops the run with ValueError."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def batches(loader):
    try:
        return [b[0].tolist() for b in loader]
    except ValueError as exc:
        return f"ValueError: {exc}"


def results():
    """(peer, torch): the batches of one epoch over 5 samples, batch_size=10, drop_last=True."""
    from accelerate.data_loader import DataLoaderDispatcher
    ds = TensorDataset(torch.arange(5))
    return batches(DataLoaderDispatcher(ds, batch_size=10, drop_last=True)), batches(DataLoader(ds, batch_size=10, drop_last=True))


if __name__ == "__main__":
    print("accelerate DataLoaderDispatcher: %s\ntorch DataLoader:               %s" % results())
