"""accelerate: prepare() of a DataLoader with batch_size=None drops the user's sampler: every sample in dataset order, len() = len(dataset).
Consequence: silently different data: an epoch meant to visit samples 0, 4, 8, 12 visits all 13, and len(loader) says 13."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def len_and_labels(loader):
    return [len(loader), [int(y) for _, y in loader]]


def results(make=None):
    """(peer, torch): [len(), labels] of 13 samples, batch_size=None, sampler = indices 0, 4, 8, 12."""
    from batchfeed.adapters import accelerate_prepared
    ds = TensorDataset(torch.zeros(13, 2), torch.arange(13))
    make = make or accelerate_prepared
    return (len_and_labels(make(ds, batch_size=None, sampler=[0, 4, 8, 12])),
            len_and_labels(DataLoader(ds, batch_size=None, sampler=[0, 4, 8, 12])))


if __name__ == "__main__":
    print("accelerate prepare(): %s\ntorch DataLoader:     %s" % results())
