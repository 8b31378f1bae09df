"""accelerate: DataLoaderDispatcher cannot serve batch_size=None when a sample holds a scalar (it concatenates samples).
Consequence: crash: unbatched loading of (features, label) samples stops at the first sample with RuntimeError."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def samples(loader):
    try:
        return [[tuple(x.shape), int(y)] for x, y in loader]
    except RuntimeError as exc:
        return f"RuntimeError: {exc}"


def results():
    """(peer, torch): the (feature shape, label) of each item, batch_size=None over 3 samples of 4 features."""
    from accelerate.data_loader import DataLoaderDispatcher
    ds = TensorDataset(torch.zeros(3, 4), torch.arange(3))
    return samples(DataLoaderDispatcher(ds, batch_size=None)), samples(DataLoader(ds, batch_size=None))


if __name__ == "__main__":
    print("accelerate DataLoaderDispatcher: %s\ntorch DataLoader:               %s" % results())
