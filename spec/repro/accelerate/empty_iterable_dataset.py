"""accelerate: an IterableDataset that yields nothing raises ValueError where torch's DataLoader runs an empty epoch.
Consequence: crash: a stream with nothing left (an empty shard, a filtered-out file) stops the run instead of ending the epoch."""
import torch
from torch.utils.data import DataLoader, IterableDataset


class Empty(IterableDataset):
    def __iter__(self):
        return iter(())

    def __len__(self):
        return 0


def batches(make):
    try:
        return [b.tolist() for b in make(Empty(), batch_size=4)]
    except ValueError as exc:
        return f"ValueError: {exc}"


def results(make=None):
    """(peer, torch): the batches of an empty IterableDataset, batch_size=4."""
    from batchfeed.adapters import accelerate_prepared
    return batches(make or accelerate_prepared), batches(DataLoader)


if __name__ == "__main__":
    print("accelerate: %s\ntorch DataLoader: %s" % results())
