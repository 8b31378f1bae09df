"""Peak memory of each method of the comparison, each run alone in a fresh process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..loaders import DEFAULT_LOADER, resolve
from ..setup import build
from ..training import (
    train_full_batch,
    train_minibatch,
)

# --- peak memory --------------------------------------------------------------------------

def run_method(method: str, *, n: int, features: int, batch_size: int, epochs: int, lr: float, seed: int,
               shuffle: bool = True, device: str = "cpu", loader: str = DEFAULT_LOADER) -> float:
    """One method of :func:`compare` alone, from scratch (data, weights, loader, training).

    What :func:`measure_memory` runs in a fresh process, so the loader comes by name
    (``module:callable``). Returns the final full-data loss, the same as
    ``compare(...).full`` or ``.mini`` of the same arguments.
    """
    s = build(n=n, features=features, seed=seed, batch_size=batch_size, shuffle=shuffle,
              loader_factory=resolve(loader))
    if method == "full-batch":
        return train_full_batch(s.model, s.X, s.y, epochs=epochs, lr=lr, device=device).final_loss
    if method == "mini-batch":
        return train_minibatch(s.model, s.loader, s.X, s.y, epochs=epochs, lr=lr, device=device).final_loss
    raise ValueError(f"method must be 'full-batch' or 'mini-batch', got {method!r}")


def measure_memory(config: dict, *, timeout: float = 600.0) -> dict:
    """Peak memory of each method's whole run (:func:`run_method`), each in a fresh process.

    Uses :func:`batchfeed.measure.peak_memory_series`: in each process a warm-up run (a
    tenth of the data, one epoch; not reported) pays the one-time costs (autograd,
    DataLoader, thread pools), then the peak is reset and the real run measured. The two
    processes run side by side. Returns ``{method: PeakMemory}``: ``peak_rss`` includes
    Python and torch themselves, ``rss_increase`` is what the run added to the warmed-up
    process, ``cuda_max_allocated`` is set on CUDA.
    """
    from ..measure import Job, peak_memory_series

    kw = {k: config[k] for k in ("n", "features", "batch_size", "epochs", "lr", "seed", "shuffle", "device")}
    kw["loader"] = config.get("loader", DEFAULT_LOADER)
    warm = dict(kw, n=max(1, kw["n"] // 10), epochs=1)
    methods = ("full-batch", "mini-batch")
    with ThreadPoolExecutor(len(methods)) as pool:
        futures = [pool.submit(peak_memory_series, [Job(run_method, (m,), warm), Job(run_method, (m,), kw)],
                               timeout=timeout) for m in methods]
        return {m: f.result()[-1] for m, f in zip(methods, futures)}
