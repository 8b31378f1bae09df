"""Thin adapters: other libraries' loaders, called with ``torch.utils.data.DataLoader``'s keywords.

Each adapter takes ``(dataset, **DataLoader_keywords)`` and returns the peer's loader, built the
way that library's documentation tells a user to build it. An adapter only translates the call:
it never works around what the peer does, so whatever the conformance specification finds is
the peer's own behaviour (``spec/loaders/<peer>.txt`` declares it, ``spec/repro/`` shows it)::

    pytest spec/conformance --loader=batchfeed.adapters:accelerate_prepared \\
        --loader-deviations=spec/loaders/accelerate-prepared.txt

Loaders that already take DataLoader's keywords need no adapter and are checked as they are:
``torch.utils.data:DataLoader``, ``torchdata.stateful_dataloader:StatefulDataLoader`` (extra
``resume``), ``batchfeed:TensorLoader``, ``streaming:StreamingDataLoader`` (extra ``streaming``),
``torch_geometric.loader:DataLoader`` (``[geometric]``) and ``monai.data:DataLoader`` (``[monai]``).

Each adapter names the distributions whose loader it builds in its ``wraps`` attribute
(``accelerate_stateful.wraps == ("accelerate", "torchdata")``): ``batchfeed conform`` reports
their versions, not only batchfeed's, the package the callable lives in.

Imports are lazy: ``import batchfeed.adapters`` needs none of the peers, and an adapter whose
peer is missing raises ``ImportError`` naming the extra that brings it
(``pip install 'batchfeed[accelerate]'``, ``[lightning]``, ``[webdataset]``, ``[nodes]``).
"""

from __future__ import annotations

import atexit
import importlib
from typing import Any

__all__ = [
    "accelerate_prepared", "accelerate_shard", "accelerate_dispatcher", "accelerate_skip_first_batches",
    "accelerate_stateful", "fabric_single_cpu", "fabric_ddp_world1", "webdataset_webloader",
    "webdataset_webloader_with_length", "torchdata_nodes",
]


def _wraps(*distributions: str) -> Any:
    """Record on an adapter the distributions whose loader it builds (``adapter.wraps``)."""
    def mark(fn: Any) -> Any:
        fn.wraps = distributions
        return fn
    return mark


def _require(module: str, extra: str) -> Any:
    """Import ``module``; if it is missing, say which batchfeed extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"batchfeed.adapters needs {module!r}, which is not installed: "
                          f"pip install 'batchfeed[{extra}]'") from exc


# --- Hugging Face accelerate --------------------------------------------------------------

@_wraps("accelerate")
def accelerate_prepared(dataset: Any, **kwargs: Any) -> Any:
    """``Accelerator(cpu=True).prepare(DataLoader(dataset, **kwargs))``: the loader a training script gets."""
    accelerate = _require("accelerate", "accelerate")
    from torch.utils.data import DataLoader

    return accelerate.Accelerator(cpu=True).prepare(DataLoader(dataset, **kwargs))


@_wraps("accelerate")
def accelerate_shard(dataset: Any, **kwargs: Any) -> Any:
    """``accelerate.data_loader.DataLoaderShard(dataset, **kwargs)``, built directly (device, RNG sync: its defaults)."""
    return _require("accelerate.data_loader", "accelerate").DataLoaderShard(dataset, **kwargs)


@_wraps("accelerate")
def accelerate_dispatcher(dataset: Any, **kwargs: Any) -> Any:
    """``accelerate.data_loader.DataLoaderDispatcher(dataset, **kwargs)``: batches drawn on process 0 and dispatched."""
    return _require("accelerate.data_loader", "accelerate").DataLoaderDispatcher(dataset, **kwargs)


@_wraps("accelerate")
def accelerate_skip_first_batches(dataset: Any, **kwargs: Any) -> Any:
    """``accelerator.skip_first_batches(prepared, 0)``: the loader accelerate's resume recipe hands back,
    skipping nothing (``prepared`` is :func:`accelerate_prepared`'s loader)."""
    accelerate = _require("accelerate", "accelerate")
    from torch.utils.data import DataLoader

    accelerator = accelerate.Accelerator(cpu=True)
    return accelerator.skip_first_batches(accelerator.prepare(DataLoader(dataset, **kwargs)), 0)


@_wraps("accelerate", "torchdata")
def accelerate_stateful(dataset: Any, **kwargs: Any) -> Any:
    """``Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(use_stateful_dataloader=True))
    .prepare(DataLoader(dataset, **kwargs))``: accelerate's resumable loader (a torchdata
    StatefulDataLoader inside its DataLoaderShard), the configuration its checkpointing guide names."""
    accelerate = _require("accelerate", "accelerate")
    _require("torchdata.stateful_dataloader", "accelerate")
    from torch.utils.data import DataLoader

    config = accelerate.DataLoaderConfiguration(use_stateful_dataloader=True)
    return accelerate.Accelerator(cpu=True, dataloader_config=config).prepare(DataLoader(dataset, **kwargs))


# --- Lightning Fabric ---------------------------------------------------------------------

@_wraps("lightning")
def fabric_single_cpu(dataset: Any, **kwargs: Any) -> Any:
    """``Fabric(accelerator="cpu", devices=1).setup_dataloaders(DataLoader(dataset, **kwargs))``."""
    fabric = _require("lightning.fabric", "lightning")
    from torch.utils.data import DataLoader

    return fabric.Fabric(accelerator="cpu", devices=1).setup_dataloaders(DataLoader(dataset, **kwargs))


@_wraps("lightning")
def fabric_ddp_world1(dataset: Any, **kwargs: Any) -> Any:
    """``Fabric(accelerator="cpu", devices=1, strategy="ddp")`` launched in this process (gloo, world size 1),
    then ``setup_dataloaders(DataLoader(dataset, **kwargs))``.

    ``fabric.launch()`` joins this process to a gloo process group of one; Fabric itself picks
    MASTER_ADDR 127.0.0.1 and a free MASTER_PORT when the environment names none. The group is
    process-wide and the returned loader is used after this function returns, so it is not
    destroyed here: the first call creates it, later calls find it (Fabric does not initialise
    twice), and an exit handler destroys it. What Fabric itself leaves in the process stays, as
    it would in a user's: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK, NODE_RANK in
    ``os.environ``, and, unless OMP_NUM_THREADS is set, torch's intra-op threads set to CPU
    cores / processes.
    """
    fabric = _require("lightning.fabric", "lightning")
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    creates_group = not dist.is_initialized()
    f = fabric.Fabric(accelerator="cpu", devices=1, strategy="ddp")
    f.launch()
    if creates_group:
        atexit.register(_destroy_process_group)
    return f.setup_dataloaders(DataLoader(dataset, **kwargs))


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# --- webdataset ---------------------------------------------------------------------------

@_wraps("webdataset")
def webdataset_webloader(dataset: Any, **kwargs: Any) -> Any:
    """``webdataset.WebLoader(dataset, **kwargs)``, as it is.

    The dataset is not converted: webdataset 1.0's ``WebLoader(*args, **kw)`` builds
    ``torch.utils.data.DataLoader(*args, **kw)`` itself and iterates it as the first stage of a
    ``DataPipeline`` (an ``IterableDataset`` with a fluid interface: ``.shuffle()``, ``.batched()``,
    ...). A map-style dataset therefore reaches torch's DataLoader unchanged, and so does an
    ``IterableDataset`` such as ``webdataset.WebDataset(urls)``. No stage is appended, so batches
    are DataLoader's; what differs is the wrapper (no ``__len__``, no ``state_dict()``).
    """
    return _require("webdataset", "webdataset").WebLoader(dataset, **kwargs)


@_wraps("webdataset")
def webdataset_webloader_with_length(dataset: Any, **kwargs: Any) -> Any:
    """:func:`webdataset_webloader` given its length, as webdataset documents for trainers that need ``len()``:
    ``.with_length(n, silent=True)`` with ``n`` the wrapped DataLoader's own ``len()`` (the number of
    batches; a ``TypeError`` for an ``IterableDataset`` without ``__len__``, as DataLoader raises it).
    ``silent=True`` only drops webdataset's warning that the length does not change the epoch."""
    loader = webdataset_webloader(dataset, **kwargs)
    return loader.with_length(len(loader.pipeline[0]), silent=True)


# --- torchdata.nodes ----------------------------------------------------------------------

class _MapAndCollate:
    """The map function of torchdata's migration guide: a batch of indices -> the collated samples."""

    def __init__(self, dataset: Any, collate_fn: Any) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __call__(self, indices: Any) -> Any:
        return self.collate_fn([self.dataset[i] for i in indices])


class _MapAndConvert:
    """One index -> its sample, through ``collate_fn`` (DataLoader's ``default_convert`` unbatched)."""

    def __init__(self, dataset: Any, convert_fn: Any) -> None:
        self.dataset, self.convert_fn = dataset, convert_fn

    def __call__(self, index: Any) -> Any:
        return self.convert_fn(self.dataset[index])


@_wraps("torchdata")
def torchdata_nodes(dataset: Any, batch_size: int | None = 1, shuffle: bool | None = None, sampler: Any = None,
                    batch_sampler: Any = None, num_workers: int = 0, collate_fn: Any = None,
                    pin_memory: bool = False, drop_last: bool = False, generator: Any = None, *,
                    prefetch_factor: int | None = None, multiprocessing_context: Any = None,
                    pin_memory_device: str = "", in_order: bool = True) -> Any:
    """A ``torchdata.nodes.Loader`` built as torchdata 0.11's guide "Migrating to torchdata.nodes
    from torch.utils.data" builds one from DataLoader's arguments.

    ``SamplerWrapper`` over the sampler DataLoader would build (``sampler``, else ``RandomSampler(
    dataset, generator=generator)`` for ``shuffle``, else ``SequentialSampler``), ``Batcher(batch_size,
    drop_last)``, then ``ParallelMapper`` (``method="process"``, ``num_workers``, ``in_order``,
    ``multiprocessing_context``) of the guide's map-and-collate function with ``collate_fn`` or
    ``default_collate``; ``PinMemory`` when ``pin_memory``; ``Prefetcher`` of ``prefetch_factor``
    (DataLoader's default 2) times ``num_workers`` batches when there are workers (DataLoader
    prefetches nothing without them, and the guide's ``num_workers * 2`` would be 0). A
    ``batch_sampler`` is wrapped instead of sampler and Batcher; ``batch_size=None`` maps single
    indices with ``collate_fn`` or ``default_convert`` (the guide's ``map_fn=dataset.__getitem__``).
    DataLoader's other keywords (``timeout``, ``worker_init_fn``, ``persistent_workers``) have no
    node: passing them is a ``TypeError``.
    """
    tn = _require("torchdata.nodes", "nodes")
    from torch.utils.data import RandomSampler, SequentialSampler, default_collate, default_convert

    if sampler is None:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    if batch_sampler is not None:
        node, fn = tn.SamplerWrapper(batch_sampler), _MapAndCollate(dataset, collate_fn or default_collate)
    elif batch_size is None:
        node, fn = tn.SamplerWrapper(sampler), _MapAndConvert(dataset, collate_fn or default_convert)
    else:
        node = tn.Batcher(tn.SamplerWrapper(sampler), batch_size=batch_size, drop_last=drop_last)
        fn = _MapAndCollate(dataset, collate_fn or default_collate)
    node = tn.ParallelMapper(node, map_fn=fn, num_workers=num_workers, in_order=in_order, method="process",
                             multiprocessing_context=multiprocessing_context)
    if pin_memory:
        node = tn.PinMemory(node, pin_memory_device=pin_memory_device)
    if num_workers > 0:
        node = tn.Prefetcher(node, prefetch_factor=(2 if prefetch_factor is None else prefetch_factor) * num_workers)
    return tn.Loader(node)
