"""The batch-size sweep: steps and samples to a target loss per batch size, McCandlish et al.'s
fit, and the gradient noise scale B_simple along full-batch GD."""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._checks import check_positive_int
from ..setup import build
from ..training import (
    Budget,
    StepInfo,
    Stop,
    train,
    train_full_batch,
)

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
