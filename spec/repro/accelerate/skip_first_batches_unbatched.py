"""accelerate: skip_first_batches() on a loader with batch_size=None builds a loader that raises TypeError when iterated.
Consequence: crash: resuming an unbatched loader with accelerate's recipe fails at the first batch, even when skipping 0."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def samples(loader):
    try:
        return [[tuple(x.shape), int(y)] for x, y in loader]
    except TypeError as exc:
        return f"TypeError: {exc}"


def results():
    """(peer, torch): the (feature shape, label) of each item, batch_size=None over 3 samples, 0 batches skipped."""
    from accelerate import Accelerator
    ds, acc = TensorDataset(torch.zeros(3, 4), torch.arange(3)), Accelerator(cpu=True)
    peer = acc.skip_first_batches(acc.prepare(DataLoader(ds, batch_size=None)), 0)
    return samples(peer), samples(DataLoader(ds, batch_size=None))


if __name__ == "__main__":
    print("accelerate skip_first_batches(prepared, 0): %s\ntorch DataLoader:                          %s" % results())
