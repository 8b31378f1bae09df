"""Lightning Fabric, strategy="ddp" (1 CPU process): with shuffle=True the DataLoader's generator is ignored; the
order comes from a DistributedSampler seeded with PL_GLOBAL_SEED (0 unless seed_everything ran).
Consequence: silently different order: every generator seed gives the same shuffle, so runs meant to differ do not."""
import torch
from torch.utils.data import DataLoader, TensorDataset


def orders(setup):
    """The first epoch's order for generator seeds 0, 1 and 2 (10 samples, batches of 5)."""
    ds = TensorDataset(torch.arange(10))
    made = [setup(DataLoader(ds, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(s))) for s in range(3)]
    return [[i for (b,) in loader for i in b.tolist()] for loader in made]


def results():
    """(peer, torch)."""
    from lightning.fabric import Fabric
    fabric = Fabric(accelerator="cpu", devices=1, strategy="ddp")
    fabric.launch()  # a gloo process group of one, in this process
    return orders(fabric.setup_dataloaders), orders(lambda loader: loader)


if __name__ == "__main__":
    peer, ref = results()
    print(f"Fabric ddp setup_dataloaders, seeds 0 1 2: {peer}\ntorch DataLoader, seeds 0 1 2:             {ref}")
