"""Findings about torch's DataLoader workers that are not promises a loader must keep.

They run against ``torch.utils.data.DataLoader`` only, never ``--loader``: a conformance
test must hold for DataLoader and fail the same way on every run for a loader that differs,
and what is asserted here is a property of DataLoader's implementation (where the draws of
``num_workers=0`` come from), whose outcome for another loader can be random (unseeded
workers passed it 3 runs of 6).
"""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from .worker_datasets import AugmentedDataset


@pytest.mark.uses_global_rng
def test_worker_augmentations_depend_on_num_workers():
    """Finding: augmentations drawn from the workers' global RNGs differ between num_workers=0 and 2, even with the same generator.

    The order of samples is reproducible across worker counts, random augmentations are
    not: with 0 workers they come from the main process's global RNG. Augmentations that
    must not depend on num_workers draw from a generator seeded by (seed, epoch, index).
    """
    def draws(w: int) -> torch.Tensor:
        torch.manual_seed(5)
        np.random.seed(5)
        random.seed(5)
        loader = DataLoader(AugmentedDataset(8), batch_size=2, num_workers=w, generator=torch.Generator().manual_seed(5))
        return torch.cat([d for d, _, _ in loader])

    d0, d2 = draws(0), draws(2)
    for k, name in enumerate(AugmentedDataset.RNGS):
        assert not torch.equal(d0[:, k], d2[:, k]), f"{name}: the same draws with 0 and 2 workers: {d0[:, k].tolist()}"
