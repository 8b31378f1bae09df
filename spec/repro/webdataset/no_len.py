"""webdataset: WebLoader has no len() (it is an IterableDataset); only .with_length(n) gives it one.
Consequence: crash: code that needs len(loader) (LR schedules, progress bars, steps per epoch) raises TypeError."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def length(loader):
    try:
        return len(loader)
    except TypeError as exc:
        return f"TypeError: {exc}"


def results():
    """(peer, torch): len() of a loader over 10 samples, batch_size=4, and the batches each yields."""
    import webdataset
    ds = TensorDataset(torch.arange(10))
    peer, ref = webdataset.WebLoader(ds, batch_size=4), DataLoader(ds, batch_size=4)
    return [length(peer), len(list(peer))], [length(ref), len(list(ref))]


if __name__ == "__main__":
    print("webdataset WebLoader [len, batches]: %s\ntorch DataLoader [len, batches]:     %s" % results())
