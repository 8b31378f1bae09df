"""The figures the claims ledger decides C2, C3, C4 and C15 from, the verdicts of a run, and
the statistics over repeated seeds."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .. import claims
from ..training import (
    History,
)
from .compare import Comparison

#: The claims ``batchfeed compare`` decides from its own run.
REPORTED_CLAIMS = ("C2", "C3", "C15")


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
        "C3": _c3_figures(runs),
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


def _path(h: History) -> list[float]:
    """The full-data loss before training and after every update."""
    return [h.epoch_loss[0], *h.update_full_losses]


def _c3_figures(runs: list[Comparison]) -> dict[str, float]:
    """C3, like with like: both methods' full-data loss after every update (see claim_figures)."""
    mini_r = [roughness(_path(r.mini)) for r in runs]
    full_r = [roughness(_path(r.full_equal_updates)) for r in runs]
    return {
        "seeds": len(runs),
        "updates": runs[0].mini.total_steps,
        "mini_roughness": statistics.median(mini_r),
        "full_roughness": statistics.median(full_r),
        # smoother by more than rounding: two monotone paths both have roughness 1 up to an ulp
        "mini_smoother": sum(m < f - SMOOTHER_BY for m, f in zip(mini_r, full_r)),
        "mini_monotone": sum(strictly_decreasing(_path(r.mini)) for r in runs),
        "full_monotone": sum(strictly_decreasing(_path(r.full_equal_updates)) for r in runs),
        "batch_loss_roughness": statistics.median(roughness(r.mini.update_losses) for r in runs),
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


@dataclass(frozen=True)
class Series:
    """Per-epoch mean and standard deviation over seeds (sample, n-1; 0 for one seed)."""

    mean: list[float]
    std: list[float]


@dataclass(frozen=True)
class MethodSummary:
    """One method over the seeds: full-data loss, accuracy and cumulative training seconds per
    epoch (index 0 before training), and cumulative updates and samples (the same in every seed)."""

    loss: Series
    accuracy: Series
    time: Series
    updates: list[int]
    samples: list[int]


@dataclass(frozen=True)
class Summary:
    """What ``batchfeed compare`` reports over its seeds. ``equal_updates``: full-batch GD given
    mini-batch's number of updates; ``equal_time``: given its training time; each value a
    ``(mean, std)`` pair, or a count. ``to_dict()`` is the JSON's ``summary``."""

    full: MethodSummary
    mini: MethodSummary
    equal_updates: dict[str, Any] | None = None
    equal_time: dict[str, Any] | None = None

    def method(self, name: str) -> MethodSummary:
        return {"full-batch": self.full, "mini-batch": self.mini}[name]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"full-batch": asdict(self.full), "mini-batch": asdict(self.mini)}
        for key in ("equal_updates", "equal_time"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def _method_summary(hs: list[History]) -> MethodSummary:
    series = {}
    for name, get in (("loss", lambda h: h.epoch_loss), ("accuracy", lambda h: h.epoch_accuracy),
                      ("time", lambda h: [0.0, *h.epoch_time])):
        ms = [_mean_std(c) for c in zip(*(get(h) for h in hs))]
        series[name] = Series([m for m, _ in ms], [d for _, d in ms])
    samples = [0, *[sum(hs[0].samples_per_epoch[:e + 1]) for e in range(hs[0].epochs)]]
    return MethodSummary(series["loss"], series["accuracy"], series["time"], hs[0].updates_so_far, samples)


def summarize(runs: Sequence[Comparison]) -> Summary:
    """Per-epoch mean and standard deviation over the runs of each method, and the equal-updates and
    equal-time comparisons where every run has them (see :class:`Summary`)."""
    runs = list(runs)
    eu = et = None
    if all(r.full_equal_updates.epoch_loss for r in runs):
        eu = {"updates": runs[0].mini.total_steps,
              "full_loss": _mean_std(r.full_equal_updates.final_loss for r in runs),
              "mini_loss": _mean_std(r.mini.final_loss for r in runs)}
    if all(r.full_equal_time is not None for r in runs):
        et = {"seconds": _mean_std(r.mini.wall_time for r in runs),
              "full_updates": _mean_std(r.full_equal_time.total_steps for r in runs),  # type: ignore[union-attr]
              "full_loss": _mean_std(r.full_equal_time.final_loss for r in runs),  # type: ignore[union-attr]
              "mini_updates": runs[0].mini.total_steps,
              "mini_loss": _mean_std(r.mini.final_loss for r in runs)}
    return Summary(_method_summary([r.full for r in runs]), _method_summary([r.mini for r in runs]), eu, et)
