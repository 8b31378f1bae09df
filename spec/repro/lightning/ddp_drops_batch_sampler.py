"""Lightning Fabric, strategy="ddp" (1 CPU process): a BatchSampler given as batch_sampler= is dropped when the
sampler is replaced, and the loader yields single samples (its batch_size is None).
Consequence: silently different batching: 23 steps on unbatched samples instead of 5 batches of up to 5."""
import torch
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler, TensorDataset


def shapes(loader):
    return [len(loader), [list(b.shape) for (b,) in loader]]


def results():
    """(peer, torch): len() and the batch shapes of batch_sampler=BatchSampler(SequentialSampler(23), 5)."""
    from lightning.fabric import Fabric
    fabric = Fabric(accelerator="cpu", devices=1, strategy="ddp")
    fabric.launch()  # a gloo process group of one, in this process

    def make():
        return DataLoader(TensorDataset(torch.arange(23)), batch_sampler=BatchSampler(SequentialSampler(range(23)), 5, False))
    return shapes(fabric.setup_dataloaders(make())), shapes(make())


if __name__ == "__main__":
    print("Fabric ddp setup_dataloaders [len, shapes]: %s\ntorch DataLoader [len, shapes]:             %s" % results())
