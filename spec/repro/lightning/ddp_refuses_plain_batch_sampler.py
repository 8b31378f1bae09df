"""Lightning Fabric, strategy="ddp" (1 CPU process): setup_dataloaders raises TypeError for a batch_sampler that is
not a torch BatchSampler (a list of index lists), which torch's DataLoader takes.
Consequence: crash at set-up: a hand-made batch order cannot be used without use_distributed_sampler=False."""
import torch
from torch.utils.data import DataLoader, TensorDataset

BATCHES = [[3, 1], [0, 4, 2, 9], [7]]


def batches(setup):
    try:
        return [b.tolist() for (b,) in setup(DataLoader(TensorDataset(torch.arange(10)), batch_sampler=BATCHES))]
    except TypeError as exc:
        return f"TypeError: {exc}".strip()


def results():
    """(peer, torch): the batches of batch_sampler=[[3, 1], [0, 4, 2, 9], [7]]."""
    from lightning.fabric import Fabric
    fabric = Fabric(accelerator="cpu", devices=1, strategy="ddp")
    fabric.launch()  # a gloo process group of one, in this process
    return batches(fabric.setup_dataloaders), batches(lambda loader: loader)


if __name__ == "__main__":
    print("Fabric ddp setup_dataloaders: %s\ntorch DataLoader:             %s" % results())
