"""torchdata: num_workers=0: a state taken right after a batch raised resumes after that batch, so its good samples never come.
Consequence: lost batch: repairing the data and resuming from the saved state silently skips the batch that failed."""
BAD = [9]


class Samples(list):
    def __getitem__(self, i):
        if i in BAD:
            raise ValueError(f"sample {i}: corrupt")
        return i


def results():
    """(peer, expected): the samples delivered before the error plus those after resuming (sample 9 repaired), and 0..19."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    loader, seen = StatefulDataLoader(Samples(range(20)), batch_size=4), []
    try:
        for batch in loader:
            seen += batch.tolist()
    except ValueError:
        state = loader.state_dict()
    BAD.clear()  # repaired
    resumed = StatefulDataLoader(Samples(range(20)), batch_size=4)
    resumed.load_state_dict(state)
    return seen + [i for b in resumed for i in b.tolist()], list(range(20))


if __name__ == "__main__":
    print("StatefulDataLoader, before the error + resumed: %s\nevery sample, once (torch's DataLoader, rerun): %s" % results())
