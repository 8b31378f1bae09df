"""The tutorial's experiment, done properly: the same data, the same initial weights,
full-batch vs mini-batch gradient descent, per epoch, per update and per second; the
figures the claims ledger decides C2, C3, C4 and C15 from; repeats over seeds; a
batch-size sweep fitted with McCandlish et al.'s model; the gradient noise scale.

The CLI, the spec and the claims ledger all call these functions; there is no second
copy of the experiment anywhere.
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from . import claims
from ._checks import check_positive_int
from .loaders import DEFAULT_LOADER, resolve
from .setup import build, sort_by_label
from .training import Budget, History, StepInfo, Stop, train, train_full_batch, train_minibatch

__all__ = [
    "REPORTED_CLAIMS",
    "ClaimResult",
    "CompareRun",
    "Comparison",
    "LoaderFactory",
    "NoiseFit",
    "NoiseScale",
    "Sweep",
    "SweepPoint",
    "batch_size_sweep",
    "claim_figures",
    "claim_results",
    "compare",
    "fit_noise_model",
    "gradient_noise_scale",
    "measure_memory",
    "order_pattern_experiment",
    "roughness",
    "run_compare",
    "run_method",
    "sort_by_label",
    "steps_to_target",
    "strictly_decreasing",
    "summarize",
    "total_work",
]

#: A callable with torch DataLoader's constructor keywords that returns an iterable of batches.
LoaderFactory = Callable[..., object]

#: The claims ``batchfeed compare`` decides from its own run.
REPORTED_CLAIMS = ("C2", "C3", "C15")


@dataclass
class Comparison:
    """Full-batch vs mini-batch from the same data and initial weights.

    ``full_equal_updates`` is full-batch GD given as many updates as mini-batch took.
    ``full_equal_time`` (when asked for) is full-batch GD given as much training time as
    mini-batch took (``mini.wall_time``, evaluation excluded): the updates whose
    cumulative training time stayed within that budget, one per "epoch" of the History.
    """

    config: dict
    full: History
    mini: History
    full_equal_updates: History
    full_equal_time: History | None = None

    def to_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "full": self.full.to_dict(),
            "mini": self.mini.to_dict(),
            "full_equal_updates": self.full_equal_updates.to_dict(),
            "full_equal_time": None if self.full_equal_time is None else self.full_equal_time.to_dict(),
        }


def _truncate_per_update(h: History, k: int) -> History:
    """The first ``k`` updates of a one-update-per-epoch History."""
    return History(
        method=h.method, update_losses=h.update_losses[:k], epoch_loss=h.epoch_loss[:k + 1],
        epoch_accuracy=h.epoch_accuracy[:k + 1], steps_per_epoch=h.steps_per_epoch[:k],
        samples_per_epoch=h.samples_per_epoch[:k], epoch_time=h.epoch_time[:k],
        update_full_losses=h.update_full_losses[:k],
    )


def _train_full_batch_for(init: nn.Module, X: torch.Tensor, y: torch.Tensor, *, seconds: float, lr: float,
                          device: str | torch.device, max_updates: int) -> History:
    """Full-batch GD, one update per History epoch, for as many updates as fit in ``seconds`` of training."""
    dev = torch.device(device)
    Xd, yd = X.to(dev), y.to(dev)
    h = train(copy.deepcopy(init).to(dev), [(Xd, yd)], epochs=max_updates, lr=lr, device=dev, eval_data=(Xd, yd),
              method="full-batch", budget=Budget(seconds=seconds))
    return _truncate_per_update(h, sum(t <= seconds for t in h.epoch_time))


def compare(
    *,
    n: int = 1000,
    features: int = 3,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    seed: int = 0,
    shuffle: bool = True,
    device: str | torch.device = "cpu",
    loader_factory: LoaderFactory = DataLoader,
    equal_updates: bool = True,
    equal_time: bool = False,
) -> Comparison:
    """Run the tutorial's two cases from one seed.

    The seed fixes the data (:func:`make_seed_data`), the initial weights (shared by both
    methods) and the shuffling generator. Defaults are the tutorial's: N=1000, 3 features,
    batch 32, shuffle, SGD lr=0.1, 5 epochs. ``equal_updates`` adds full-batch GD given
    the mini-batch run's number of updates; ``equal_time`` adds full-batch GD given its
    training time (wall-clock, so that part varies from run to run; at most 1000 times
    the mini-batch run's updates).
    """
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    X, y, init, loader = build(n=n, features=features, seed=seed, batch_size=batch_size, shuffle=shuffle,
                               loader_factory=loader_factory)
    # The full-data loss after every update, for both methods: what C3 compares, and the per-update plot.
    full = train_full_batch(copy.deepcopy(init), X, y, epochs=epochs, lr=lr, device=device, track_full_loss=True)
    mini = train_minibatch(copy.deepcopy(init), loader, X, y, epochs=epochs, lr=lr, device=device,
                           track_full_loss=True)
    if equal_updates:
        full_eq = train_full_batch(copy.deepcopy(init), X, y, epochs=mini.total_steps, lr=lr, device=device,
                                   track_full_loss=True)
    else:
        full_eq = History(method="full-batch")
    full_time = None
    if equal_time:
        full_time = _train_full_batch_for(init, X, y, seconds=mini.wall_time, lr=lr, device=device,
                                          max_updates=max(1, 1000 * mini.total_steps))
    config = dict(n=n, features=features, batch_size=batch_size, epochs=epochs, lr=lr, seed=seed,
                  shuffle=shuffle, device=str(device))
    return Comparison(config=config, full=full, mini=mini, full_equal_updates=full_eq, full_equal_time=full_time)


# --- the claims' figures -----------------------------------------------------------------

#: How much lower a roughness must be to count as smoother (C3): more than float rounding.
SMOOTHER_BY = 1e-9


def roughness(losses: Sequence[float]) -> float:
    """Total variation of a loss sequence over its net decrease: 1.0 for a monotone descent; a
    sequence that did not decrease at all divides by 1e-12 (as rough as it gets)."""
    tv = sum(abs(b - a) for a, b in zip(losses, losses[1:]))
    return tv / max(losses[0] - losses[-1], 1e-12) if len(losses) > 1 else 0.0


def strictly_decreasing(values: Sequence[float]) -> bool:
    """Every value is below the one before it."""
    return all(b < a for a, b in zip(values, values[1:]))


def claim_figures(runs: Sequence[Comparison]) -> dict[str, dict[str, float]]:
    """The figures the ledger (:mod:`batchfeed.claims`) decides C2, C3, C4 and C15 from.

    One definition, used by spec/test_convergence.py (30 seeds) and by ``batchfeed
    compare`` (its own seeds). Every run needs ``full_equal_updates``. Per claim:

    - C2: seeds, epochs, updates, epoch_wins (mini-batch lower full-data loss after the
      epochs), equal_update_wins (lower than full-batch given as many updates),
      equal_update_loss_ratio (median mini/full loss at equal updates).
    - C3, like with like: the full-data loss after every update of mini-batch and of
      full-batch at equal updates; median :func:`roughness` of each, the seeds in which
      mini-batch's is smoother, the seeds in which each fell after every update; and, as
      its own figure, the median roughness of mini-batch's per-batch training losses (each
      on a different sample of the data: noise, not the path of the full-data loss).
    - C4: full-batch behind after the epochs; rises of full-batch's full-data loss over
      all its updates (both its runs).
    - C15: full-batch behind per pass over the data and at equal updates.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("claim_figures needs at least one Comparison, got none")
    for r in runs:
        if r.mini.total_steps and not r.full_equal_updates.epoch_loss:
            raise ValueError(f"claim_figures needs full_equal_updates (compare(equal_updates=True)), seed {r.config['seed']}")
    seeds = len(runs)
    behind = sum(r.full.final_loss > r.mini.final_loss for r in runs)
    eq_behind = sum(r.full_equal_updates.final_loss > r.mini.final_loss for r in runs)
    for r in runs:
        if r.mini.total_steps and len(r.mini.update_full_losses) != r.mini.total_steps:
            raise ValueError(f"claim_figures needs the full-data loss after every update (compare() records it), "
                             f"seed {r.config['seed']}")

    def path(h: History) -> list[float]:
        return [h.epoch_loss[0], *h.update_full_losses]

    mini_r = [roughness(path(r.mini)) for r in runs]
    full_r = [roughness(path(r.full_equal_updates)) for r in runs]
    return {
        "C2": {
            "seeds": seeds,
            "epochs": runs[0].mini.epochs,
            "updates": runs[0].mini.total_steps,
            "epoch_wins": sum(r.mini.final_loss < r.full.final_loss for r in runs),
            "equal_update_wins": sum(r.mini.final_loss < r.full_equal_updates.final_loss for r in runs),
            "equal_update_loss_ratio": statistics.median(r.mini.final_loss / r.full_equal_updates.final_loss
                                                         for r in runs),
        },
        "C3": {
            "seeds": seeds,
            "updates": runs[0].mini.total_steps,
            "mini_roughness": statistics.median(mini_r),
            "full_roughness": statistics.median(full_r),
            # smoother by more than rounding: two monotone paths both have roughness 1 up to an ulp
            "mini_smoother": sum(m < f - SMOOTHER_BY for m, f in zip(mini_r, full_r)),
            "mini_monotone": sum(strictly_decreasing(path(r.mini)) for r in runs),
            "full_monotone": sum(strictly_decreasing(path(r.full_equal_updates)) for r in runs),
            "batch_loss_roughness": statistics.median(roughness(r.mini.update_losses) for r in runs),
        },
        "C4": {
            "seeds": seeds,
            "epochs": runs[0].full.epochs,
            "full_behind_per_epoch": behind,
            "full_loss_increases": sum(b > a for r in runs for h in (r.full, r.full_equal_updates)
                                       for a, b in zip(h.epoch_loss, h.epoch_loss[1:])),
            "full_updates": sum(h.total_steps for r in runs for h in (r.full, r.full_equal_updates)),
        },
        "C15": {
            "seeds": seeds,
            "full_behind_per_epoch": behind,
            "full_behind_per_update": eq_behind,
        },
    }


@dataclass
class ClaimResult:
    """A claim decided from this run: the verdict over all seeds, and each seed's own.

    ``seeds_agreeing`` counts the seeds whose single-seed verdict equals ``verdict``;
    ``per_seed`` maps each single-seed verdict to the number of seeds that reached it.
    """

    claim: str
    verdict: str
    text: str
    figures: dict[str, float]
    seeds: int
    seeds_agreeing: int
    per_seed: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


def claim_results(runs: Sequence[Comparison], ids: Sequence[str] = REPORTED_CLAIMS) -> dict[str, ClaimResult]:
    """Each claim's verdict from :func:`claim_figures` of ``runs`` and ``claims.decide``."""
    runs = list(runs)
    together = claim_figures(runs)
    singles = [claim_figures([r]) for r in runs]
    out = {}
    for cid in ids:
        verdict, text = claims.decide(cid, together[cid])
        per: dict[str, int] = {}
        for f in singles:
            v = claims.decide(cid, f[cid])[0]
            per[v] = per.get(v, 0) + 1
        out[cid] = ClaimResult(cid, verdict, text, together[cid], len(runs), per.get(verdict, 0), per)
    return out


# --- repeats ------------------------------------------------------------------------------

def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: Sequence[Comparison]) -> dict:
    """Per-epoch mean and standard deviation (sample, n-1; 0 for one seed) over the runs.

    ``{"full-batch"|"mini-batch": {"loss"|"accuracy"|"time": {"mean": [...], "std": [...]},
    "updates": [...], "samples": [...]}, "equal_updates": {...}, "equal_time": {...}}``:
    time is cumulative training seconds at the end of each epoch (0 before training);
    updates and samples are cumulative and the same in every seed.
    """
    runs = list(runs)
    out: dict[str, Any] = {}
    for key, get in (("full-batch", lambda r: r.full), ("mini-batch", lambda r: r.mini)):
        hs = [get(r) for r in runs]
        block: dict[str, Any] = {}
        for name, series in (("loss", lambda h: h.epoch_loss), ("accuracy", lambda h: h.epoch_accuracy),
                             ("time", lambda h: [0.0, *h.epoch_time])):
            cols = list(zip(*(series(h) for h in hs)))
            ms = [_mean_std(c) for c in cols]
            block[name] = {"mean": [m for m, _ in ms], "std": [s for _, s in ms]}
        block["updates"] = hs[0].updates_so_far
        block["samples"] = [0, *[sum(hs[0].samples_per_epoch[:e + 1]) for e in range(hs[0].epochs)]]
        out[key] = block
    if all(r.full_equal_updates.epoch_loss for r in runs):
        out["equal_updates"] = {
            "updates": runs[0].mini.total_steps,
            "full_loss": _mean_std(r.full_equal_updates.final_loss for r in runs),
            "mini_loss": _mean_std(r.mini.final_loss for r in runs),
        }
    if all(r.full_equal_time is not None for r in runs):
        out["equal_time"] = {
            "seconds": _mean_std(r.mini.wall_time for r in runs),
            "full_updates": _mean_std(r.full_equal_time.total_steps for r in runs),  # type: ignore[union-attr]
            "full_loss": _mean_std(r.full_equal_time.final_loss for r in runs),  # type: ignore[union-attr]
            "mini_updates": runs[0].mini.total_steps,
            "mini_loss": _mean_std(r.mini.final_loss for r in runs),
        }
    return out


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
    from .measure import Job, peak_memory_series

    kw = {k: config[k] for k in ("n", "features", "batch_size", "epochs", "lr", "seed", "shuffle", "device")}
    kw["loader"] = config.get("loader", DEFAULT_LOADER)
    warm = dict(kw, n=max(1, kw["n"] // 10), epochs=1)
    methods = ("full-batch", "mini-batch")
    with ThreadPoolExecutor(len(methods)) as pool:
        futures = [pool.submit(peak_memory_series, [Job(run_method, (m,), warm), Job(run_method, (m,), kw)],
                               timeout=timeout) for m in methods]
        return {m: f.result()[-1] for m, f in zip(methods, futures)}


# --- batch-size sweep and the gradient noise scale ---------------------------------------------

@dataclass
class SweepPoint:
    """One batch size of the sweep.

    ``steps``/``samples``/``lr``: at the learning rate that reached the target in the
    fewest steps (None: no learning rate reached it within ``max_steps``);
    ``steps_by_lr`` lists every learning rate tried: the step at which it reached the target,
    or None if it had not when the best one did (training stops there) or within ``max_steps``.
    """

    batch_size: int
    steps: int | None
    samples: int | None
    lr: float | None
    steps_by_lr: dict[float, int | None]

    @property
    def reached(self) -> bool:
        return self.steps is not None


@dataclass
class NoiseFit:
    """S = S_min (1 + B_noise / B) fitted to the sweep (McCandlish et al. 2018, eq. 2.11).

    Least squares of S against 1/B weighted by 1/S^2 (each point's relative error counts
    the same), with B_noise >= 0 (``at_bound`` when the unconstrained slope was negative:
    steps did not fall as B grew). ``e_min = s_min * b_noise`` makes E = E_min (1 + B /
    B_noise) the same fit in samples. ``rel_errors[i]`` = fitted / measured - 1 for each
    reached batch size in ``batch_sizes``.
    """

    s_min: float
    b_noise: float
    e_min: float
    at_bound: bool
    batch_sizes: list[int]
    rel_errors: list[float]

    @property
    def max_rel_error(self) -> float:
        return max(abs(e) for e in self.rel_errors)

    def steps(self, b: float) -> float:
        return self.s_min * (1 + self.b_noise / b)

    def samples(self, b: float) -> float:
        return b * self.steps(b)


@dataclass
class NoiseScale:
    """B_simple = tr(Sigma) / |G|^2 from per-sample gradients, at points of a training path.

    ``steps[i]`` is the number of full-batch updates taken before point i; ``loss[i]``
    the full-data loss there. Sigma is the covariance of the N per-sample gradients (the
    data is the population SGD samples from: divided by N); G their mean, the exact
    full-batch gradient.
    """

    steps: list[int]
    loss: list[float]
    b_simple: list[float]
    trace_sigma: list[float]
    grad_norm_sq: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.b_simple)


@dataclass
class Sweep:
    """Steps and samples to reach a target loss for each batch size, the fit, and B_simple."""

    config: dict
    points: list[SweepPoint]
    fit: NoiseFit | None
    noise: NoiseScale

    def to_dict(self) -> dict:
        return {
            "config": dict(self.config),
            "points": [{**asdict(p), "steps_by_lr": {str(k): v for k, v in p.steps_by_lr.items()}}
                       for p in self.points],
            "fit": None if self.fit is None else {**asdict(self.fit), "max_rel_error": self.fit.max_rel_error},
            "noise": {**asdict(self.noise), "mean": self.noise.mean},
        }


@contextlib.contextmanager
def _one_cpu_thread(device: str | torch.device) -> Iterator[None]:
    """torch's intra-op threads set to 1 for the duration (CPU only), then restored.

    The sweep's tensors are tiny (N x lrs x classes); splitting its ops over threads only
    adds synchronisation, which on a busy machine made each step 10 to 100 times slower.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _linear_params(init: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    layers = [m for m in init.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 1:
        raise TypeError(f"the sweep trains the tutorial's single Linear layer, got {init!r}")
    return layers[0].weight.detach(), layers[0].bias.detach()


def steps_to_target(X: torch.Tensor, y: torch.Tensor, init: nn.Module, *, batch_size: int, lrs: Sequence[float],
                    target_loss: float, max_steps: int, seed: int, device: str | torch.device = "cpu",
                    stop_at_first: bool = False) -> tuple[list[int | None], list[int | None]]:
    """Optimizer steps and samples until the full-data loss first falls to ``target_loss``.

    Mini-batch SGD (plain, as ``torch.optim.SGD(lr)``) of the tutorial's model
    (``Linear``, weights from ``init``) with cross-entropy, one run per learning rate in
    ``lrs``, all fed the same batches: a fresh permutation of the data each epoch (from a
    generator seeded with ``seed``), batches of ``batch_size``, the last one short when
    ``batch_size`` does not divide N. The runs are stacked into one model (one Linear per
    learning rate, one SGD parameter group each) trained by batchfeed's one loop, so the
    learning rates share the batches and the Python cost. The full-data loss is evaluated after every step.
    Returns ``(steps, samples)`` per learning rate; None where the target was not reached
    within ``max_steps`` (or the run diverged), or, with ``stop_at_first``, not by the step
    at which the first learning rate reached it (training stops there).
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("max_steps", max_steps)
    n = int(y.shape[0])
    if batch_size > n:
        raise ValueError(f"batch_size must be at most N={n}, got {batch_size}")
    dev = torch.device(device)
    X, y = X.to(dev), y.to(dev)
    model = _Stacked(init, len(lrs)).to(dev)
    # One SGD parameter group per learning rate: each stacked model is updated by its own lr.
    opt = torch.optim.SGD([{"params": lin.parameters(), "lr": float(v)} for lin, v in zip(model.layers, lrs)])
    g = torch.Generator().manual_seed(int(seed))

    def epoch_batches(_epoch: int) -> Iterable:
        perm = torch.randperm(n, generator=g).to(dev)  # a fresh permutation each epoch
        return ((X[i], y[i]) for i in perm.split(batch_size))

    reached = _TargetWatch(model, X, y, target_loss, stop_at_first)
    train(model, epoch_batches, optimizer=opt, loss_fn=_stacked_loss, device=dev, budget=Budget(steps=max_steps),
          on_step=reached, check_finite=False)
    return reached.steps, reached.samples


class _Stacked(nn.Module):
    """``k`` copies of the tutorial's Linear layer (weights from ``init``) fed the same batch:
    output ``(B, k, classes)``."""

    def __init__(self, init: nn.Module, k: int) -> None:
        super().__init__()
        w0, b0 = _linear_params(init)
        self.layers = nn.ModuleList(nn.Linear(w0.shape[1], w0.shape[0], device="meta") for _ in range(k))
        self.layers.to_empty(device=w0.device)
        with torch.no_grad():
            for lin in self.layers:
                lin.weight.copy_(w0)
                lin.bias.copy_(b0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([lin(x) for lin in self.layers], dim=1)


def _per_model_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each stacked model's mean cross-entropy on ``(out, y)``: shape ``(k,)``."""
    k = out.shape[1]
    return F.cross_entropy(out.reshape(-1, out.shape[2]), y.repeat_interleave(k), reduction="none").view(-1, k).mean(0)


def _stacked_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum of the stacked models' mean losses: each model gets exactly its own gradient."""
    return _per_model_loss(out, y).sum()


class _TargetWatch:
    """An ``on_step`` hook: after each step, each stacked model's full-data loss; records the step
    and samples at which each first reaches the target, and stops when nothing is left to learn."""

    def __init__(self, model: _Stacked, X: torch.Tensor, y: torch.Tensor, target: float, stop_at_first: bool) -> None:
        self.model, self.X, self.y, self.target, self.first = model, X, y, target, stop_at_first
        k = len(model.layers)
        self.steps: list[int | None] = [None] * k
        self.samples: list[int | None] = [None] * k
        self.seen = 0
        self.done = torch.zeros(k, dtype=torch.bool, device=X.device)

    def __call__(self, info: StepInfo) -> None:
        self.seen += info.samples
        with torch.no_grad():
            full = _per_model_loss(self.model(self.X), self.y)
        new = (full <= self.target) & ~self.done
        dead = ~torch.isfinite(full)
        for i in torch.nonzero(new).flatten().tolist():
            self.steps[i], self.samples[i] = info.global_step, self.seen
        self.done |= new
        if bool((self.done | dead).all()) or (self.first and bool(self.done.any())):
            raise Stop


def gradient_noise_scale(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """``(B_simple, tr(Sigma), |G|^2)`` of the cross-entropy loss at ``model``'s weights.

    Per-sample gradients by ``torch.func`` (vmap of grad); G is their mean (the exact
    full-batch gradient), Sigma their covariance over the N samples (divided by N).
    Computed in float64 from float32 gradients. B_simple is inf where G = 0.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}
    dev = next(iter(params.values())).device
    X, y = X.to(dev), y.to(dev)

    def loss_one(p: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (x.unsqueeze(0),)), t.unsqueeze(0))

    per = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, X, y)
    n = int(y.shape[0])
    flat = torch.cat([v.reshape(n, -1) for v in per.values()], dim=1).double()
    G = flat.mean(0)
    tr = float(((flat - G) ** 2).sum(1).mean())
    gsq = float(G @ G)
    return (tr / gsq if gsq > 0 else math.inf), tr, gsq


def _noise_along_path(X: torch.Tensor, y: torch.Tensor, init: nn.Module, *, lr: float, steps: int, points: int,
                      device: str | torch.device) -> NoiseScale:
    """B_simple along full-batch GD from ``init``: at ``points`` evenly spaced updates 0..steps."""
    dev = torch.device(device)
    model = copy.deepcopy(init).to(dev)
    Xd, yd = X.to(dev), y.to(dev)
    at = {round(i * steps / max(points - 1, 1)) for i in range(points)}
    out = NoiseScale([], [], [], [], [])

    def measure(done: int) -> None:
        if done in at:
            bs, tr, gsq = gradient_noise_scale(model, Xd, yd)
            with torch.no_grad():
                loss = float(F.cross_entropy(model(Xd), yd))
            for lst, v in ((out.steps, done), (out.loss, loss), (out.b_simple, bs), (out.trace_sigma, tr),
                           (out.grad_norm_sq, gsq)):
                lst.append(v)

    measure(0)
    if steps:  # full-batch GD: one update per epoch, measured after the updates in ``at``
        train(model, [(Xd, yd)], epochs=steps, lr=lr, method="full-batch", check_finite=False,
              on_epoch=lambda h: measure(h.total_steps))
    return out


def fit_noise_model(batch_sizes: Sequence[int], steps: Sequence[float]) -> NoiseFit:
    """Fit S = S_min (1 + B_noise / B) to measured steps (see :class:`NoiseFit`).

    S is linear in 1/B: S = S_min + (S_min B_noise) / B. Needs at least two distinct
    batch sizes. Raises ValueError otherwise or for a non-positive step count.
    """
    bs, ss = [int(b) for b in batch_sizes], [float(s) for s in steps]
    if len(bs) != len(ss) or len(set(bs)) < 2:
        raise ValueError(f"fit_noise_model needs steps for at least two distinct batch sizes, got {bs} and {ss}")
    if any(s <= 0 for s in ss):
        raise ValueError(f"fit_noise_model needs positive step counts, got {ss}")
    xs = [1.0 / b for b in bs]
    ws = [1.0 / s ** 2 for s in ss]

    def sse(a: float, c: float) -> float:
        return sum(w * (a + c * x - s) ** 2 for w, x, s in zip(ws, xs, ss))

    # Non-negative least squares in (S_min, S_min * B_noise): the unconstrained optimum if
    # feasible, else the better of the two edges (B_noise = 0, or S_min = 0).
    sw = sum(ws)
    mx, my = sum(w * x for w, x in zip(ws, xs)) / sw, sum(w * s for w, s in zip(ws, ss)) / sw
    slope = sum(w * (x - mx) * (s - my) for w, x, s in zip(ws, xs, ss)) / sum(w * (x - mx) ** 2 for w, x in zip(ws, xs))
    intercept, at_bound = my - slope * mx, False
    if slope < 0 or intercept <= 0:
        edges = [(my, 0.0), (0.0, sum(w * x * s for w, x, s in zip(ws, xs, ss)) / sum(w * x * x for w, x in zip(ws, xs)))]
        intercept, slope = min(edges, key=lambda e: sse(*e))
        at_bound = True
    fit = NoiseFit(s_min=intercept, b_noise=slope / intercept if intercept > 0 else math.inf, e_min=slope,
                   at_bound=at_bound, batch_sizes=bs, rel_errors=[])
    fit.rel_errors = [(intercept + slope / b) / s - 1 for b, s in zip(bs, ss)]
    return fit


def batch_size_sweep(
    batch_sizes: Sequence[int],
    *,
    n: int = 1000,
    features: int = 3,
    lrs: Sequence[float] = (0.1,),
    seed: int = 0,
    target_loss: float | None = None,
    reference_lr: float = 0.1,
    reference_updates: int = 160,
    target_factor: float = 1.1,
    max_steps: int = 10_000,
    noise_points: int = 11,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> Sweep:
    """Steps S(B) and samples E(B) to reach a target full-data loss, for each batch size.

    Same data, initial weights and shuffling seed as :func:`compare`. For each B the
    learning rates ``lrs`` are tried (:func:`steps_to_target`) and the fewest steps kept:
    one learning rate is the tutorial's fixed-lr SGD; several tune it per B, as
    McCandlish et al. do. The target, unless given, is ``target_factor`` times the
    full-data loss full-batch GD reaches after ``reference_updates`` updates at
    ``reference_lr`` (by default: 1.1 x its loss after the 160 updates mini-batch takes in
    the tutorial's 5 epochs). Then :func:`fit_noise_model` over the batch sizes that
    reached the target, and B_simple (:func:`gradient_noise_scale`) at ``noise_points``
    points along full-batch GD (at the learning rate that did best for the largest B) from
    the initial weights to the target. Deterministic for a seed on one device.
    """
    bss = sorted({int(b) for b in batch_sizes})
    if not bss:
        raise ValueError("batch_sizes must name at least one batch size")
    for b in bss:
        check_positive_int("batch size", b)
        if b > n:
            raise ValueError(f"batch size {b} exceeds N={n}")
    lrs = [float(v) for v in lrs]
    if not lrs or any(not (math.isfinite(v) and v > 0) for v in lrs):
        raise ValueError(f"lrs must be positive finite numbers, got {lrs}")
    with _one_cpu_thread(device):
        sweep = _sweep(bss, n=n, features=features, lrs=lrs, seed=seed, target_loss=target_loss,
                       reference_lr=reference_lr, reference_updates=reference_updates, target_factor=target_factor,
                       max_steps=max_steps, noise_points=noise_points, device=device, progress=progress)
    return sweep


def _sweep(bss: list[int], *, n: int, features: int, lrs: list[float], seed: int, target_loss: float | None,
           reference_lr: float, reference_updates: int, target_factor: float, max_steps: int, noise_points: int,
           device: str | torch.device, progress: Callable[[int], None] | None) -> Sweep:
    X, y, init, _ = build(n=n, features=features, seed=seed)
    target_rule = "given"
    if target_loss is None:
        ref = train_full_batch(copy.deepcopy(init), X, y, epochs=reference_updates, lr=reference_lr, device=device)
        target_loss = target_factor * ref.final_loss
        target_rule = (f"{target_factor} x the full-data loss of full-batch GD after {reference_updates} updates "
                       f"at lr {reference_lr} ({ref.final_loss:.4f})")
    points = []
    for b in bss:
        steps, samples = steps_to_target(X, y, init, batch_size=b, lrs=lrs, target_loss=target_loss,
                                         max_steps=max_steps, seed=seed, device=device, stop_at_first=True)
        reached = [i for i, s in enumerate(steps) if s is not None]
        best = min(reached, key=lambda i: (steps[i], i)) if reached else None
        points.append(SweepPoint(
            batch_size=b, steps=None if best is None else steps[best], samples=None if best is None else samples[best],
            lr=None if best is None else lrs[best], steps_by_lr=dict(zip(lrs, steps)),
        ))
        if progress is not None:
            progress(1)
    ok = [p for p in points if p.reached]
    fit = fit_noise_model([p.batch_size for p in ok], [p.steps for p in ok]) if len(ok) >= 2 else None  # type: ignore[misc]
    # B_simple along full-batch GD at the learning rate that did best for the largest B,
    # from the initial weights to the target.
    path_lr = points[-1].lr if points[-1].lr is not None else lrs[0]
    path_steps = steps_to_target(X, y, init, batch_size=n, lrs=[path_lr], target_loss=target_loss,
                                 max_steps=max_steps, seed=seed, device=device)[0][0]
    noise = _noise_along_path(X, y, init, lr=path_lr, steps=path_steps if path_steps is not None else max_steps,
                              points=noise_points, device=device)
    if progress is not None:
        progress(1)
    config = dict(batch_sizes=bss, n=n, features=features, lrs=lrs, seed=seed, target_loss=target_loss,
                  target_rule=target_rule, max_steps=max_steps, device=str(device), noise_lr=path_lr)
    return Sweep(config=config, points=points, fit=fit, noise=noise)


# --- the whole report -----------------------------------------------------------------------

@dataclass
class CompareRun:
    """Everything ``batchfeed compare`` reports: one :class:`Comparison` per seed (each with
    equal-updates and equal-wall-time runs), their summary, the claims decided from them,
    each method's peak memory (None when skipped), and the batch-size sweep (None unless asked).
    """

    config: dict
    seeds: list[int]
    runs: list[Comparison]
    summary: dict
    claims: dict[str, ClaimResult]
    memory: dict | None = None
    sweep: Sweep | None = None

    def to_dict(self) -> dict:
        mem = None
        if self.memory is not None:
            mem = {m: {"peak_rss": p.peak_rss, "start_rss": p.start_rss, "rss_increase": p.rss_increase,
                       "cuda_max_allocated": p.cuda_max_allocated, "final_loss": p.value}
                   for m, p in self.memory.items()}
        return {
            "config": dict(self.config),
            "seeds": list(self.seeds),
            "runs": [{"seed": s, **r.to_dict()} for s, r in zip(self.seeds, self.runs)],
            "summary": self.summary,
            "claims": {k: v.to_dict() for k, v in self.claims.items()},
            "memory": mem,
            "sweep": None if self.sweep is None else self.sweep.to_dict(),
        }


def total_work(repeats: int, memory: bool, batch_sizes: Sequence[int] | None) -> int:
    """Units of work :func:`run_compare` reports through ``progress``."""
    return 1 + repeats + (2 if memory else 0) + (len(set(batch_sizes)) + 1 if batch_sizes else 0)


def run_compare(
    *,
    n: int = 1000,
    features: int = 3,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    seed: int = 0,
    repeats: int = 1,
    shuffle: bool = True,
    device: str = "cpu",
    memory: bool = True,
    batch_sizes: Sequence[int] | None = None,
    sweep_lrs: Sequence[float] | None = None,
    target_loss: float | None = None,
    max_steps: int = 10_000,
    progress: Callable[[int], None] | None = None,
    loader: str = DEFAULT_LOADER,
) -> CompareRun:
    """The report of ``batchfeed compare``; ``loader`` (``module:callable``) feeds mini-batch GD.

    1. A warm-up (one short untimed comparison) pays one-time start-up costs, so that the
       first timed method is not charged for them.
    2. :func:`compare` with equal updates and equal wall time for seeds ``seed`` ..
       ``seed + repeats - 1``, then :func:`summarize` and :func:`claim_results`.
    3. Unless ``memory`` is False, :func:`measure_memory` for the first seed (after the
       timed runs, so that the measuring processes do not disturb the timings).
    4. With ``batch_sizes``, :func:`batch_size_sweep` for the first seed, at ``sweep_lrs``
       (default: ``[lr]``), with the target computed from ``lr`` and the mini-batch run's
       updates unless ``target_loss`` is given.
    """
    check_positive_int("repeats", repeats)
    tick = progress or (lambda _k: None)
    factory = resolve(loader)
    compare(n=min(n, 2 * batch_size), features=features, batch_size=batch_size, epochs=1, lr=lr, seed=seed,
            shuffle=shuffle, device=device, equal_time=True, loader_factory=factory)
    tick(1)
    seeds = list(range(seed, seed + repeats))
    runs = []
    for s in seeds:
        runs.append(compare(n=n, features=features, batch_size=batch_size, epochs=epochs, lr=lr, seed=s,
                            shuffle=shuffle, device=device, equal_time=True, loader_factory=factory))
        tick(1)
    config = dict(runs[0].config, repeats=repeats, threads=torch.get_num_threads(), loader=loader)
    mem = None
    if memory:
        mem = measure_memory(runs[0].config)
        tick(2)
    sweep = None
    if batch_sizes:
        sweep = batch_size_sweep(batch_sizes, n=n, features=features, lrs=sweep_lrs or [lr], seed=seed,
                                 target_loss=target_loss, reference_lr=lr, reference_updates=runs[0].mini.total_steps,
                                 max_steps=max_steps, device=device, progress=tick)
    return CompareRun(config=config, seeds=seeds, runs=runs, summary=summarize(runs), claims=claim_results(runs),
                      memory=mem, sweep=sweep)


# --- C11 ----------------------------------------------------------------------------------------

def order_pattern_experiment(
    *,
    shuffle: bool,
    n: int = 1000,
    features: int = 3,
    batch_size: int = 32,
    epochs: int = 5,
    lr: float = 0.1,
    seed: int = 0,
    loader_factory: LoaderFactory = DataLoader,
) -> History:
    """Mini-batch training on label-sorted data, with or without shuffling (claim C11)."""
    s = build(n=n, features=features, seed=seed, batch_size=batch_size, shuffle=shuffle, loader_factory=loader_factory,
              sort_labels=True)
    return train_minibatch(s.model, s.loader, s.X, s.y, epochs=epochs, lr=lr)
