"""PyG: torch_geometric.loader.DataLoader collates Python floats into a float32 tensor; torch's default_collate keeps float64.
Consequence: silently less precise: float samples (a loss weight, a numpy draw) lose digits, values differ from torch's DataLoader's from the 8th digit on."""
import torch
from torch.utils.data import DataLoader, Dataset


class Floats(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return 0.1 + i


def batch(loader):
    b = next(iter(loader))
    return [str(b.dtype), b.tolist()]


def results():
    """(peer, torch): the dtype and values of the batch of the floats 0.1 and 1.1."""
    from torch_geometric.loader import DataLoader as PygDataLoader
    return batch(PygDataLoader(Floats(), batch_size=2)), batch(DataLoader(Floats(), batch_size=2))


if __name__ == "__main__":
    print("PyG DataLoader:   %s\ntorch DataLoader: %s" % results())
