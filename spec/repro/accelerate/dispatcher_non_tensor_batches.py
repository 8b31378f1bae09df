"""accelerate: DataLoaderDispatcher raises TypeError for a batch that is not made of tensors (a collate_fn's object, strings, Python numbers).
Consequence: crash: a collate_fn that returns its own batch type, or samples carrying file names, cannot be dispatched."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def names(samples):
    """A user's collate_fn: the labels of the batch as strings."""
    return [f"sample {int(y)}" for _, y in samples]


def batches(make):
    try:
        return list(make(TensorDataset(torch.zeros(4, 2), torch.arange(4)), batch_size=2, collate_fn=names))
    except TypeError as exc:
        return f"TypeError: {exc}"


def results():
    """(peer, torch): the batches a collate_fn returning lists of str makes, 4 samples, batch_size=2."""
    from accelerate.data_loader import DataLoaderDispatcher
    return batches(DataLoaderDispatcher), batches(DataLoader)


if __name__ == "__main__":
    print("accelerate DataLoaderDispatcher: %s\ntorch DataLoader:               %s" % results())
