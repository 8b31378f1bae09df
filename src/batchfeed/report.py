"""Rendering of ``batchfeed compare``'s report: the text tables, the picture and the JSON.

Nothing here runs an experiment: every number comes from a
:class:`~batchfeed.experiments.CompareRun`. matplotlib is imported only by :func:`plot`.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from .machine import cpu_name
from .experiments import CompareRun, Sweep

__all__ = ["FIGSIZE", "DPI", "environment", "format_report", "format_sweep", "plot", "plot_size", "to_json",
           "write_json"]

#: Figure size in inches (width, height of one row of panels) and resolution of :func:`plot`.
FIGSIZE = (15.0, 4.5)
DPI = 100

MiB = 1024 * 1024


# --- environment ---------------------------------------------------------------------------

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict:
    """Versions and the device the run used: python, platform, torch, numpy, batchfeed, device name, threads."""
    dev = torch.device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "batchfeed": _version("batchfeed"),
        "device": str(dev),
        "device_name": name,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
    }


# --- text ------------------------------------------------------------------------------------

def _pm(mean: float, std: float, fmt: str, k: int) -> str:
    return f"{mean:{fmt}}" if k == 1 else f"{mean:{fmt}}±{std:{fmt}}"


def _header(run: CompareRun) -> str:
    c = run.config
    seeds = f"seed {c['seed']}" if len(run.seeds) == 1 else (
        f"seeds {run.seeds[0]}-{run.seeds[-1]} ({len(run.seeds)} repeats: mean±std over seeds)")
    return (f"batchfeed compare: N={c['n']}, features={c['features']}, batch size {c['batch_size']}, lr {c['lr']}, "
            f"{c['epochs']} epochs, {seeds}, {'shuffled' if c['shuffle'] else 'unshuffled'}, "
            f"loader {c.get('loader', 'torch.utils.data:DataLoader')}, device {c['device']}"
            + (f" ({c['threads']} torch thread{'s' if c['threads'] != 1 else ''}, --threads)"
               if "threads" in c and torch.device(c["device"]).type == "cpu" else ""))


def _table(run: CompareRun) -> list[str]:
    k = len(run.seeds)
    s = run.summary
    cols = [("loss", ".4f"), ("acc", ".3f"), ("updates", "d"), ("samples", "d"), ("time ms", ".1f")]
    rows: list[list[str]] = []
    for e in range(len(s.full.loss.mean)):
        row = [str(e)]
        for b in (s.full, s.mini):
            row += [
                _pm(b.loss.mean[e], b.loss.std[e], ".4f", k),
                _pm(b.accuracy.mean[e], b.accuracy.std[e], ".3f", k),
                str(b.updates[e]),
                str(b.samples[e]),
                _pm(1e3 * b.time.mean[e], 1e3 * b.time.std[e], ".1f", k),
            ]
        rows.append(row)
    names = ["epoch"] + [c for c, _ in cols] * 2
    widths = [max(len(names[i]), *(len(r[i]) for r in rows)) for i in range(len(names))]
    half = sum(widths[1:6]) + 2 * 5

    def line(cells: list[str]) -> str:
        out = f"{cells[0]:>{widths[0]}}"
        for i in range(1, len(cells)):
            out += ("    " if i == 6 else "  ") + f"{cells[i]:>{widths[i]}}"
        return out

    r0 = run.runs[0]
    per_epoch_mini = r0.mini.steps_per_epoch[0] if r0.mini.steps_per_epoch else 0
    full_title = "full-batch GD (1 update per epoch)"
    mini_title = (f"mini-batch GD (B={run.config['batch_size']}, {per_epoch_mini} "
                  f"update{'s' if per_epoch_mini != 1 else ''} per epoch)")
    title = " " * widths[0] + f"{full_title:^{half}}" + "  " + f"{mini_title:^{half}}"
    return [title.rstrip(), line(names), *(line(r) for r in rows)]


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if abs(n) >= MiB else f"{n / 1024:.0f} KiB"


def _memory_lines(run: CompareRun) -> list[str]:
    if run.memory is None:
        return ["peak memory: not measured (--no-memory)"]
    parts = []
    for m in ("full-batch", "mini-batch"):
        p = run.memory[m]
        txt = f"{m} {p.peak_rss / MiB:.1f} MiB (+{_size(p.rss_increase)} during the run)"
        if p.cuda_max_allocated is not None:
            txt += f", CUDA max allocated {p.cuda_max_allocated / MiB:.2f} MiB"
        parts.append(txt)
    return [f"peak memory (peak RSS of each method's whole run, seed {run.seeds[0]}, each in a fresh process after a "
            "warm-up; Python and torch included):", "  " + "; ".join(parts)]


def _comparison_lines(run: CompareRun) -> list[str]:
    k = len(run.seeds)
    s = run.summary
    out = []
    eu = s.equal_updates
    if eu:
        ratio = eu["mini_loss"][0] / eu["full_loss"][0]
        out.append(
            f"equal updates: full-batch GD given the {eu['updates']} updates mini-batch took reaches full-data loss "
            f"{_pm(*eu['full_loss'], '.4f', k)}; mini-batch {_pm(*eu['mini_loss'], '.4f', k)} (mini/full {ratio:.4f})")
    et = s.equal_time
    if et:
        out.append(
            f"equal wall time: in the {_pm(1e3 * et['seconds'][0], 1e3 * et['seconds'][1], '.1f', k)} ms of training "
            f"mini-batch took, full-batch GD makes {_pm(*et['full_updates'], '.0f', k)} updates and reaches "
            f"{_pm(*et['full_loss'], '.4f', k)}; mini-batch: {et['mini_updates']} updates, "
            f"{_pm(*et['mini_loss'], '.4f', k)}")
    return out


def _claim_lines(run: CompareRun) -> list[str]:
    k = len(run.seeds)
    out = [f"verdicts from this run ({k} seed{'s' if k > 1 else ''}; rules in batchfeed.claims, as in docs/claims.md):"]
    for cid, r in run.claims.items():
        agree = f" [this verdict in {r.seeds_agreeing}/{k} seeds taken alone]" if k > 1 else ""
        out.append(f"  {cid:<4}{r.verdict}{agree}")
        out.append(f"      {r.text}")
    return out


def format_sweep(sweep: Sweep) -> str:
    """The sweep's table, the McCandlish fit and the B_simple estimate, as text."""
    c = sweep.config
    lrs = ", ".join(f"{v:g}" for v in c["lrs"])
    tuned = len(c["lrs"]) > 1
    lines = [
        f"batch-size sweep (seed {c['seed']}, SGD lr {'best of ' + lrs if tuned else lrs}, same data and initial "
        f"weights): steps to reach full-data loss <= {c['target_loss']:.4f}",
        f"  target: {c['target_rule']}; at most {c['max_steps']} steps",
    ]
    fit = sweep.fit
    head = ["B", "steps", "samples", "epochs"] + (["lr"] if tuned else []) + (["fit S", "fit err"] if fit else [])
    rows = []
    for p in sweep.points:
        if p.reached:
            row = [str(p.batch_size), str(p.steps), str(p.samples), f"{p.samples / c['n']:.2f}"]  # type: ignore[operator]
        else:
            row = [str(p.batch_size), "not reached", "-", "-"]
        if tuned:
            row.append(f"{p.lr:g}" if p.lr is not None else "-")
        if fit:
            row.append(f"{fit.steps(p.batch_size):.1f}" if math.isfinite(fit.steps(p.batch_size)) else "inf")
            row.append(f"{fit.rel_errors[fit.batch_sizes.index(p.batch_size)]:+.1%}" if p.reached else "-")
        rows.append(row)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    lines.append("  " + "  ".join(f"{h:>{w}}" for h, w in zip(head, widths)))
    lines += ["  " + "  ".join(f"{v:>{w}}" for v, w in zip(r, widths)) for r in rows]
    if fit is None:
        lines.append("McCandlish et al. 2018 fit: needs at least two batch sizes that reached the target")
    else:
        bound = " (at its bound: steps did not fall as B grew)" if fit.at_bound and fit.b_noise == 0 else (
            " (at a bound)" if fit.at_bound else "")
        lines.append(
            f"McCandlish et al. 2018, S = S_min (1 + B_noise/B), E = E_min (1 + B/B_noise): S_min = {fit.s_min:.1f} "
            f"steps, B_noise = {fit.b_noise:.2f}{bound}, E_min = S_min B_noise = {fit.e_min:.1f} samples; "
            f"fitted steps within {fit.max_rel_error:.1%} of the measured at every B")
    nz = sweep.noise
    lines.append(
        f"gradient noise scale B_simple = tr(Sigma)/|G|^2 from the per-sample gradients of all {c['n']} samples, "
        f"along full-batch GD (lr {c['noise_lr']:g}) from the initial weights ({nz.b_simple[0]:.1f}) to the target "
        f"({nz.b_simple[-1]:.1f} after {nz.steps[-1]} updates): mean {nz.mean:.1f}")
    if fit is not None:
        lines.append(f"B_noise from the fit / mean B_simple = {fit.b_noise / nz.mean:.2f}")
    return "\n".join(lines)


def format_report(run: CompareRun) -> str:
    """The whole text report of ``batchfeed compare``."""
    lines = [_header(run), "", *_table(run), "", *_memory_lines(run), "", *_comparison_lines(run), "",
             *_claim_lines(run)]
    if run.sweep is not None:
        lines += ["", format_sweep(run.sweep)]
    return "\n".join(lines)


# --- JSON ------------------------------------------------------------------------------------

def _finite(obj: Any) -> Any:
    """JSON has no inf or NaN: they become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(run: CompareRun, argv: list[str] | None = None) -> dict:
    """Everything in the report, machine-readable, with the versions and the device."""
    env = environment(run.config["device"])
    env["torch_threads"] = run.config.get("threads", env["torch_threads"])  # what the run used
    return _finite({"command": ["batchfeed", *(argv or [])], "environment": env, **run.to_dict()})


def write_json(run: CompareRun, path: str | os.PathLike, argv: list[str] | None = None) -> None:
    Path(path).write_text(json.dumps(to_json(run, argv), indent=1, allow_nan=False) + "\n")


# --- the picture -------------------------------------------------------------------------------

def plot_size(sweep: bool) -> tuple[int, int]:
    """``(width, height)`` in pixels of :func:`plot`'s PNG: one row of panels, two with the sweep."""
    return round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI * (2 if sweep else 1))


def _band(values: list[float], window: int) -> tuple[list[float], list[float]]:
    lo, hi = [], []
    for i in range(len(values)):
        w = values[max(0, i - window + 1):i + 1]
        lo.append(min(w))
        hi.append(max(w))
    return lo, hi


def plot(run: CompareRun, path: str | os.PathLike) -> None:
    """Loss vs epoch, vs updates and vs wall time for both methods (+ the sweep when run), as a PNG.

    The mini-batch panels show the per-batch training loss as a band (running min..max
    over a quarter epoch of updates) behind the full-data loss. The per-update panel shows
    the full-data loss after every update of both methods. With repeats, the per-epoch and
    per-update panels show the mean ± one standard deviation over seeds; the per-batch band
    and the wall-time panel show the first seed, and say so. The PNG is :func:`plot_size` pixels.
    """
    from matplotlib.figure import (
        Figure,  # no pyplot: no global state, no GUI backend; PNG is drawn by Agg
    )

    sweep = run.sweep
    nrows = 2 if sweep is not None else 1
    fig = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] * nrows), dpi=DPI)
    axes = fig.subplots(nrows, 3, squeeze=False)
    band = _Band(run.runs[0])
    _plot_per_epoch(axes[0][0], run, band)
    _plot_per_update(axes[0][1], run, band)
    _plot_per_time(axes[0][2], run, band)
    for ax in axes[0]:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if sweep is not None:
        _plot_sweep(axes[1], sweep)
    c = run.config
    fig.suptitle(f"batchfeed compare: N={c['n']}, B={c['batch_size']}, lr {c['lr']}, seed "
                 f"{run.seeds[0] if len(run.seeds) == 1 else f'{run.seeds[0]}-{run.seeds[-1]}'}, {c['device']}")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)  # the format follows the suffix (the CLI checks it is one matplotlib writes)


FULL_C, MINI_C = "tab:blue", "tab:orange"


class _Band:
    """Mini-batch's per-batch training loss of the first seed, as a running min..max band over a
    quarter epoch of updates (``lo``, ``hi`` at updates 1..``len(upd)``)."""

    def __init__(self, r0: Any) -> None:
        self.spe = max(r0.mini.steps_per_epoch[0], 1) if r0.mini.steps_per_epoch else 1
        self.lo, self.hi = _band(r0.mini.update_losses, max(1, self.spe // 4))
        self.upd = list(range(1, len(r0.mini.update_losses) + 1))


def _mean_std_band(ax: Any, xs: list, mean: list[float], std: list[float], color: str) -> None:
    ax.fill_between(xs, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)], color=color,
                    alpha=0.2, linewidth=0)


def _plot_per_epoch(ax: Any, run: CompareRun, band: _Band) -> None:
    s = run.summary
    epochs = list(range(len(s.full.loss.mean)))
    for m, c in (("full-batch", FULL_C), ("mini-batch", MINI_C)):
        mean, std = s.method(m).loss.mean, s.method(m).loss.std
        ax.plot(epochs, mean, "o-", color=c, label=f"{m}, full-data loss" + (" (mean±std)" if len(run.seeds) > 1 else ""))
        if len(run.seeds) > 1:
            _mean_std_band(ax, epochs, mean, std, c)
    ax.fill_between([u / band.spe for u in band.upd], band.lo, band.hi, color=MINI_C, alpha=0.2, linewidth=0,
                    label="mini-batch, per-batch loss")
    ax.set(xlabel="epoch (passes over the data)", ylabel="loss", title="per epoch")


def _plot_per_update(ax: Any, run: CompareRun, band: _Band) -> None:
    """The full-data loss after every update, both methods (mean ± std over seeds with --repeats)."""
    k = len(run.runs)
    for name, pick, c in (("full-batch", lambda r: r.full_equal_updates, FULL_C), ("mini-batch", lambda r: r.mini, MINI_C)):
        paths = [[pick(r).epoch_loss[0], *pick(r).update_full_losses] for r in run.runs]
        mean = [statistics.fmean(col) for col in zip(*paths)]
        ax.plot(range(len(mean)), mean, "-", color=c, label=f"{name}, full-data loss after each update")
        if k > 1:
            _mean_std_band(ax, list(range(len(mean))), mean, [statistics.pstdev(col) for col in zip(*paths)], c)
    ax.fill_between(band.upd, band.lo, band.hi, color=MINI_C, alpha=0.15, linewidth=0,
                    label=f"mini-batch, per-batch loss (seed {run.seeds[0]})")
    ax.set(xlabel="updates (optimizer steps)", ylabel="full-data loss",
           title="per update" + (f" (mean ± std over {k} seeds)" if k > 1 else f" (seed {run.seeds[0]})"))


def _plot_per_time(ax: Any, run: CompareRun, band: _Band) -> None:
    r0 = run.runs[0]
    ft = r0.full_equal_time
    if ft is not None:
        ax.plot([0.0, *(1e3 * t for t in ft.epoch_time)], ft.epoch_loss, "-", color=FULL_C,
                label=f"full-batch, {ft.total_steps} updates")
    ax.plot([0.0, *(1e3 * t for t in r0.full.epoch_time)], r0.full.epoch_loss, "o", color=FULL_C,
            label="full-batch, its epochs")
    times = [0.0, *r0.mini.epoch_time]
    ut = []
    for e, n_steps in enumerate(r0.mini.steps_per_epoch):  # updates spread evenly within their epoch
        ut += [1e3 * (times[e] + (times[e + 1] - times[e]) * (i + 1) / n_steps) for i in range(n_steps)]
    ax.fill_between(ut, band.lo, band.hi, color=MINI_C, alpha=0.2, linewidth=0, label="mini-batch, per-batch loss")
    if len(r0.mini.update_full_losses) == len(ut):
        ax.plot([0.0, *ut], [r0.mini.epoch_loss[0], *r0.mini.update_full_losses], "-", color=MINI_C,
                label="mini-batch, full-data loss after each update")
    ax.plot([1e3 * t for t in times], r0.mini.epoch_loss, "s", color=MINI_C, label="mini-batch, its epochs")
    ax.axvline(1e3 * r0.mini.wall_time, color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="training wall time (ms, evaluation excluded)", ylabel="full-data loss",
           title="per second of training" + (f" (seed {run.seeds[0]})" if len(run.runs) > 1 else ""))


def _plot_sweep(axes: Any, sweep: Sweep) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ok = [p for p in sweep.points if p.reached]
    fit = sweep.fit
    bs = [p.batch_size for p in ok]
    grid = []
    if bs:
        lo_b, hi_b = min(bs), max(bs)
        grid = [lo_b * (hi_b / lo_b) ** (i / 99) for i in range(100)] if hi_b > lo_b else [lo_b]
    for ax, key, label in ((axes[0], "steps", "steps S(B)"), (axes[1], "samples", "samples E(B)")):
        ax.loglog(bs, [getattr(p, key) for p in ok], "o", color="tab:green", label="measured")
        if fit is not None and math.isfinite(fit.b_noise):
            ax.loglog(grid, [getattr(fit, key)(b) for b in grid], "-", color="black",
                      label=f"fit: B_noise={fit.b_noise:.2f}")
        vals = [getattr(p, key) for p in ok]
        if vals and max(vals) < 10 * min(vals):  # at least a decade, so that flat looks flat
            mid = math.sqrt(min(vals) * max(vals))
            ax.set_ylim(mid / 10 ** 0.5, mid * 10 ** 0.5)
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter() if vals and max(vals) < 10 * min(vals) else NullFormatter())
        ax.set(xlabel="batch size B", ylabel=label, title=f"{label} to loss <= {sweep.config['target_loss']:.3f}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    ax = axes[2]
    nz = sweep.noise
    ax.plot(nz.steps, nz.b_simple, "o-", color="tab:purple", label="B_simple = tr(Σ)/|G|²")
    if fit is not None and math.isfinite(fit.b_noise):
        ax.axhline(fit.b_noise, color="black", linestyle="--", label=f"B_noise from the fit ({fit.b_noise:.2f})")
    ax.set(xlabel=f"full-batch GD updates (lr {sweep.config['noise_lr']:g})", ylabel="noise scale",
           title="gradient noise scale along training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
