"""Feeding: storage and feeding are separate (C5), and mini-batch GD does not need a DataLoader (C14)."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from batchfeed import PairDataset, make_model, make_seed_data, train_minibatch

from ..helpers import TutorialDataset, epoch


@pytest.mark.claim("C5")
def test_claim_any_dataset_works_with_any_loader(make_loader, claim_figures):
    """Every dataset kind, fed by the loader under test and by torch's DataLoader, yields all its samples."""
    X, y = make_seed_data(101)
    datasets = {"PairDataset": PairDataset(X, y), "TensorDataset": TensorDataset(X, y),
                "tutorial MyDataset": TutorialDataset(X, y)}
    loaders = {"loader under test": make_loader, "torch DataLoader": DataLoader}
    ok, failures = 0, []
    for dname, ds in datasets.items():
        for lname, factory in loaders.items():
            try:
                batches = epoch(factory(ds, batch_size=16, shuffle=False))
            except pytest.skip.Exception as exc:  # the loader under test cannot serve this dataset
                failures.append(f"{dname} x {lname}: skipped ({exc.msg})")
                continue
            xs = torch.cat([b[0] for b in batches])
            ys = torch.cat([b[1] for b in batches])
            if torch.equal(xs, X) and torch.equal(ys, y):
                ok += 1
            else:
                failures.append(f"{dname} x {lname}: wrong samples")
    claim_figures.record("pairs", len(datasets) * len(loaders))
    claim_figures.record("pairs_ok", ok)
    assert not [f for f in failures if "wrong samples" in f], failures


@pytest.mark.claim("C14")
def test_claim_minibatch_gd_needs_no_dataloader(claim_figures):
    """How far mini-batch GD fed by plain tensor slices ends from DataLoader-fed training goes to the ledger (C14).

    Both runs see the same batches (the same permutation per epoch, passed to DataLoader as
    its sampler), so any difference would come from the DataLoader itself. Tolerance 1e-6
    absolute: the two feeds hand identical values to identical float operations, so the
    result is expected to be bitwise equal; the tolerance only allows a different memory
    layout of a collated batch to change a last bit. Within it or not is the C14 rule's call.
    """
    tolerance, worst = 1e-6, 0.0
    seeds = range(5)
    for seed in seeds:
        X, y = make_seed_data(1000, 3, seed)
        perms = [torch.randperm(1000, generator=torch.Generator().manual_seed(seed * 100 + e)) for e in range(3)]

        class PerEpochSampler:
            def __init__(self):
                self.epoch = 0

            def __iter__(self):
                order = perms[self.epoch]
                self.epoch += 1
                return iter(order.tolist())

            def __len__(self):
                return 1000

        with_loader = make_model(seed=seed)
        steps = [train_minibatch(with_loader, DataLoader(PairDataset(X, y), batch_size=32, sampler=PerEpochSampler(),
                                                         generator=torch.Generator()), X, y, epochs=3).total_steps]

        class Slices:
            def __init__(self):
                self.epoch = 0

            def __iter__(self):
                order = perms[self.epoch]
                self.epoch += 1
                return ((X[idx], y[idx]) for idx in order.split(32))

        without = make_model(seed=seed)
        steps.append(train_minibatch(without, Slices(), X, y, epochs=3).total_steps)
        assert steps == [3 * 32, 3 * 32], f"seed {seed}: {steps} updates, expected 3 epochs of 32 batches each"
        for p, q in zip(with_loader.parameters(), without.parameters()):
            worst = max(worst, float((p - q).detach().abs().max()))
    claim_figures.record("seeds", len(seeds))
    claim_figures.record("max_weight_diff", worst)
    claim_figures.record("tolerance", tolerance)
