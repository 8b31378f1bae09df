"""Thin adapters: other libraries' loaders, called with ``torch.utils.data.DataLoader``'s keywords.

Each adapter takes ``(dataset, **DataLoader_keywords)`` and returns the peer's loader, built the
way that library's documentation tells a user to build it. An adapter only translates the call:
it never works around what the peer does, so whatever the conformance specification finds is
the peer's own behaviour (``spec/loaders/<peer>.txt`` declares it, ``spec/repro/`` shows it)::

    pytest spec/conformance --loader=batchfeed.adapters:accelerate_prepared \\
        --loader-deviations=spec/loaders/accelerate-prepared.txt

Loaders that already take DataLoader's keywords need no adapter and are checked as they are:
``torch.utils.data:DataLoader``, ``torchdata.stateful_dataloader:StatefulDataLoader`` (extra
``resume``) and ``batchfeed:TensorLoader``.

Imports are lazy: ``import batchfeed.adapters`` needs none of the peers, and an adapter whose
peer is missing raises ``ImportError`` naming the extra that brings it
(``pip install 'batchfeed[accelerate]'``, ``[lightning]``, ``[webdataset]``).
"""

from __future__ import annotations

import atexit
import importlib
from typing import Any

__all__ = [
    "accelerate_prepared", "accelerate_shard", "accelerate_dispatcher", "accelerate_skip_first_batches",
    "fabric_single_cpu", "fabric_ddp_world1", "webdataset_webloader", "webdataset_webloader_with_length",
]


def _require(module: str, extra: str) -> Any:
    """Import ``module``; if it is missing, say which batchfeed extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"batchfeed.adapters needs {module!r}, which is not installed: "
                          f"pip install 'batchfeed[{extra}]'") from exc


# --- Hugging Face accelerate --------------------------------------------------------------

def accelerate_prepared(dataset: Any, **kwargs: Any) -> Any:
    """``Accelerator(cpu=True).prepare(DataLoader(dataset, **kwargs))``: the loader a training script gets."""
    accelerate = _require("accelerate", "accelerate")
    from torch.utils.data import DataLoader

    return accelerate.Accelerator(cpu=True).prepare(DataLoader(dataset, **kwargs))


def accelerate_shard(dataset: Any, **kwargs: Any) -> Any:
    """``accelerate.data_loader.DataLoaderShard(dataset, **kwargs)``, built directly (device, RNG sync: its defaults)."""
    return _require("accelerate.data_loader", "accelerate").DataLoaderShard(dataset, **kwargs)


def accelerate_dispatcher(dataset: Any, **kwargs: Any) -> Any:
    """``accelerate.data_loader.DataLoaderDispatcher(dataset, **kwargs)``: batches drawn on process 0 and dispatched."""
    return _require("accelerate.data_loader", "accelerate").DataLoaderDispatcher(dataset, **kwargs)


def accelerate_skip_first_batches(dataset: Any, **kwargs: Any) -> Any:
    """``accelerator.skip_first_batches(prepared, 0)``: the loader accelerate's resume recipe hands back,
    skipping nothing (``prepared`` is :func:`accelerate_prepared`'s loader)."""
    accelerate = _require("accelerate", "accelerate")
    from torch.utils.data import DataLoader

    accelerator = accelerate.Accelerator(cpu=True)
    return accelerator.skip_first_batches(accelerator.prepare(DataLoader(dataset, **kwargs)), 0)


# --- Lightning Fabric ---------------------------------------------------------------------

def fabric_single_cpu(dataset: Any, **kwargs: Any) -> Any:
    """``Fabric(accelerator="cpu", devices=1).setup_dataloaders(DataLoader(dataset, **kwargs))``."""
    fabric = _require("lightning.fabric", "lightning")
    from torch.utils.data import DataLoader

    return fabric.Fabric(accelerator="cpu", devices=1).setup_dataloaders(DataLoader(dataset, **kwargs))


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


def webdataset_webloader_with_length(dataset: Any, **kwargs: Any) -> Any:
    """:func:`webdataset_webloader` given its length, as webdataset documents for trainers that need ``len()``:
    ``.with_length(n, silent=True)`` with ``n`` the wrapped DataLoader's own ``len()`` (the number of
    batches; a ``TypeError`` for an ``IterableDataset`` without ``__len__``, as DataLoader raises it).
    ``silent=True`` only drops webdataset's warning that the length does not change the epoch."""
    loader = webdataset_webloader(dataset, **kwargs)
    return loader.with_length(len(loader.pipeline[0]), silent=True)
