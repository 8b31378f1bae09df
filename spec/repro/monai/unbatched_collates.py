"""MONAI: monai.data.DataLoader with batch_size=None still collates each sample with list_data_collate (stacking its fields).
Consequence: crash: unbatched loading of (features, label) samples stops at the first sample with RuntimeError."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def samples(loader):
    try:
        return [[list(x.shape), int(y)] for x, y in loader]
    except RuntimeError as exc:
        return f"RuntimeError: {str(exc).splitlines()[0]}"


def results():
    """(peer, torch): the (feature shape, label) of each item, batch_size=None over 3 samples of 4 features."""
    from monai.data import DataLoader as MonaiDataLoader
    ds = TensorDataset(torch.zeros(3, 4), torch.arange(3))
    return samples(MonaiDataLoader(ds, batch_size=None)), samples(DataLoader(ds, batch_size=None))


if __name__ == "__main__":
    print("monai DataLoader: %s\ntorch DataLoader: %s" % results())
