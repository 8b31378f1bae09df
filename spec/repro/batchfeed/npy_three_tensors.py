"""batchfeed TensorLoader over NpyDataset (spec.npy_loader): NpyDataset reads exactly two files, features and labels,
so a dataset of three tensors cannot be written to it and is refused, where DataLoader serves it.
Consequence: crash: TypeError at construction; stack extra inputs into the features file, or serve the tensors from memory."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def results():
    """(peer, torch): the shapes of the first batch of TensorDataset(a, b, c), batches of 4, or the peer's error."""
    from spec.npy_loader import memmap
    ds = TensorDataset(torch.zeros(10, 2), torch.arange(10), torch.ones(10, 3))
    try:
        peer = [list(t.shape) for t in next(iter(memmap(ds, batch_size=4, generator=torch.Generator())))]
    except TypeError as exc:
        peer = f"TypeError: {exc}"
    return peer, [list(t.shape) for t in next(iter(DataLoader(ds, batch_size=4)))]


if __name__ == "__main__":
    print("TensorLoader over NpyDataset: %s\ntorch DataLoader:             %s" % results())
