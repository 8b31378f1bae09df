"""``TensorLoader``: torch's DataLoader for data already in memory, without the per-sample work.

For an in-memory tensor dataset, torch's DataLoader calls ``__getitem__`` once per sample
and collates a Python list of samples into each batch. ``TensorLoader`` draws one
permutation per epoch and cuts every batch out of a permuted gather of the data:
``index_select`` over a chunk of the permutation (8 MiB of rows), then ``split`` into
batch views. No per-sample Python, no collate.

Arrays on disk (:class:`~batchfeed.sources.NpyDataset`) are served the same way: one
permutation per epoch, then one ``read_batch`` per chunk of whole batches (a memory-map
``take``, or ``preadv`` of the sorted rows coalescing neighbours, put back in the
permutation's order), so the batches are DataLoader's over the same dataset.

It is DataLoader-compatible: the same constructor keywords (plus ``device`` and
``chunk_bytes``), the same ``len``, the same batches. With a CPU generator it yields exactly
the batches ``DataLoader(dataset, shuffle=True, generator=g)`` yields, epoch after epoch,
and leaves ``g`` (or, with ``generator=None``, torch's global RNG) in the same state:

* ``DataLoader``'s iterator draws a "base seed" from the generator when ``iter(loader)`` is
  called (``_BaseDataLoaderIter.__init__``), then ``RandomSampler`` draws
  ``torch.randperm(n, generator=g)`` at the first ``next``; once the sampler is exhausted it
  draws a second ``randperm(n)`` whose result it throws away (its ``num_samples % n`` tail).
  ``TensorLoader`` makes the same draws at the same moments; the discarded tail is
  replayed with ``n - 1`` 32-bit draws, which advance the generator exactly as
  ``randperm`` does (checked at run time; it falls back to ``randperm`` otherwise).
* With ``generator=None`` both draw from torch's global RNG, as DataLoader does.

Resumable: ``state_dict()`` / ``load_state_dict(state)`` follow torchdata's
``StatefulDataLoader``: a fresh loader that loads the state yields exactly the batches
that were left of the interrupted epoch, then the same later epochs as an uninterrupted
run. The state is plain JSON (generator states as lists of ints).
"""

from .core import STATE_FORMAT, TensorLoader
from .iterator import TensorLoaderIter

__all__ = ["STATE_FORMAT", "TensorLoader", "TensorLoaderIter"]
