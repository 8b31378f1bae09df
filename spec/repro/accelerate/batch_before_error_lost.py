"""accelerate: when a batch raises, the batch before it is never delivered (its loaders fetch one batch ahead).
Consequence: lost batch: the step before a crash never runs; a loop that catches the error and goes on skips two batches."""
from torch.utils.data import DataLoader


class FailsAt13(list):
    def __getitem__(self, i):
        if i == 13:
            raise KeyError(f"sample {i} is unreadable")
        return i


def delivered(loader):
    seen = []
    try:
        for batch in loader:
            seen += batch.tolist()
    except KeyError as exc:
        return seen, f"KeyError: {exc}"
    return seen, None


def results(make=None):  # (peer, torch); make: a batchfeed.adapters function, by default accelerate's prepare()
    from accelerate import Accelerator
    make = make or (lambda ds, **kw: Accelerator(cpu=True).prepare(DataLoader(ds, **kw)))
    return delivered(make(FailsAt13(range(20)), batch_size=4)), delivered(DataLoader(FailsAt13(range(20)), batch_size=4))


if __name__ == "__main__":
    print("accelerate prepare(): %s\ntorch DataLoader:     %s" % results())
