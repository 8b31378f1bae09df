"""The claims ledger: every claim of the tutorial, its words, and the rule that turns
measured figures into a verdict.

A verdict is never typed in: each claim's ``decide`` function reads the figures the spec
recorded in this run (``claim_figures.record(...)`` in a test marked
``@pytest.mark.claim("Cn")``) and returns ``(verdict, figure_text)``. Change the figures
and the verdict changes with them. A claim none of whose figures were recorded in this
run is ``pending``; a claim whose evidence lives in an issue not yet done says which.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["CLAIMS", "Claim", "PENDING", "decide"]

PENDING = "pending"
Figures = Mapping[str, float]


@dataclass(frozen=True)
class Claim:
    """One claim of the tutorial.

    Attributes:
        id: ``"C1"`` ... ``"C15"``.
        quote: the tutorial's own words.
        rule: the verdict rule, in words, exactly what ``decide`` computes.
        needs: figure keys ``decide`` reads; any missing means ``pending``.
        decide: figures -> ``(verdict, figure text)``.
        evidence_in: where the evidence will come from while the claim is pending.
    """

    id: str
    quote: str
    rule: str
    needs: tuple[str, ...]
    decide: Callable[[Figures], tuple[str, str]]
    evidence_in: str = ""


def _frac(k: float, n: float) -> str:
    return f"{int(k)}/{int(n)}"


# --- verdict rules ------------------------------------------------------------------------

def _c2(f: Figures) -> tuple[str, str]:
    n = f["seeds"]
    per_epoch, per_update = f["epoch_wins"] / n, f["equal_update_wins"] / n
    text = (
        f"after {int(f['epochs'])} epochs mini-batch had the lower full-data loss in {_frac(f['epoch_wins'], n)} seeds; "
        f"with equal updates ({int(f['updates'])} each) in {_frac(f['equal_update_wins'], n)} seeds "
        f"(median loss ratio mini/full at equal updates {f['equal_update_loss_ratio']:.4f})"
    )
    if per_epoch >= 0.9 and per_update >= 0.9:
        return "holds", text
    if per_epoch >= 0.9 and per_update <= 0.6:
        return ("holds only when progress is counted per epoch: at equal updates full-batch does as well, "
                "so the gain is the number of updates, not better updates"), text
    if per_epoch >= 0.9:
        return "holds only when progress is counted per epoch; per update mini-batch keeps a partial edge", text
    return "refuted", text


def _c3(f: Figures) -> tuple[str, str]:
    n = f["seeds"]
    text = (
        f"per-update loss roughness (total variation / net decrease; 1.0 = monotone): "
        f"mini-batch median {f['mini_roughness']:.2f}, full-batch median {f['full_roughness']:.2f}; "
        f"mini-batch smoother in {_frac(f['mini_smoother'], n)} seeds; "
        f"full-data loss fell every epoch in {_frac(f['mini_monotone'], n)} (mini) and {_frac(f['full_monotone'], n)} (full) seeds"
    )
    if f["mini_smoother"] / n >= 0.9:
        return "holds", text
    if f["mini_smoother"] / n <= 0.1 and f["full_monotone"] >= f["mini_monotone"]:
        return "refuted", text
    return "holds only when smoothness is judged per epoch", text


def _c4(f: Figures) -> tuple[str, str]:
    n = f["seeds"]
    slow = f["full_behind_per_epoch"] / n >= 0.9
    unstable = f["full_loss_increases"] > 0
    text = (
        f"full-batch behind mini-batch after {int(f['epochs'])} epochs in {_frac(f['full_behind_per_epoch'], n)} seeds; "
        f"full-batch full-data loss rose in {int(f['full_loss_increases'])} of {int(f['full_updates'])} updates"
    )
    if slow and unstable:
        return "holds", text
    if slow:
        return "holds only when 'slow' means per epoch; full-batch GD was never unstable", text
    return "refuted", text


def _c5(f: Figures) -> tuple[str, str]:
    text = f"{_frac(f['pairs_ok'], f['pairs'])} dataset x loader pairings yielded every sample of their dataset"
    return ("holds" if f["pairs"] > 0 and f["pairs_ok"] == f["pairs"] else "refuted"), text


def _c6(f: Figures) -> tuple[str, str]:
    text = f"{int(f['indices_checked'])} indices (positive and negative) checked, {int(f['mismatches'])} returned a wrong pair"
    return ("holds" if f["indices_checked"] > 0 and f["mismatches"] == 0 else "refuted"), text


def _c11(f: Figures) -> tuple[str, str]:
    n = f["seeds"]
    text = (
        f"label-sorted data, {int(f['epochs'])} epochs: shuffle=True reached the lower full-data loss in "
        f"{_frac(f['shuffle_wins'], n)} seeds; mean accuracy {f['acc_shuffled']:.3f} shuffled vs "
        f"{f['acc_unshuffled']:.3f} unshuffled"
    )
    if f["shuffle_wins"] / n >= 0.9:
        return "holds", text
    if f["shuffle_wins"] / n <= 0.5:
        return "refuted", text
    return "holds only in some seeds", text


def _c14(f: Figures) -> tuple[str, str]:
    text = (
        f"mini-batch GD fed by a plain loop of tensor slices (no DataLoader) ended "
        f"{f['max_weight_diff']:.1e} away (max abs weight difference) from DataLoader-fed training "
        f"over the same batches, in {int(f['seeds'])} seeds"
    )
    if f["max_weight_diff"] <= f["tolerance"]:
        return "refuted: DataLoader is a convenience, not a requirement, for mini-batch GD", text
    return "holds", text


def _c15(f: Figures) -> tuple[str, str]:
    n = f["seeds"]
    text = (
        f"per pass over the data (equal samples): full-batch behind in {_frac(f['full_behind_per_epoch'], n)} seeds; "
        f"per update: full-batch behind in {_frac(f['full_behind_per_update'], n)} seeds"
    )
    per_pass, per_update = f["full_behind_per_epoch"] / n, f["full_behind_per_update"] / n
    if per_pass >= 0.9 and per_update >= 0.9:
        return "holds", text
    if per_pass >= 0.9:
        return "holds only when learning is measured per pass over the data, not per update", text
    return "refuted", text


def _c12(f: Figures) -> tuple[str, str]:
    slow, memory = f["latency_speedup_w2"], f["memory_speedup_w2"]
    text = (
        f"training epoch with 2 workers vs none: x{slow:.2f} when every sample costs {f['latency_ms']:g} ms of "
        f"waiting (simulated with time.sleep, N={int(f['latency_n'])}); x{memory:.2f} on the tutorial's in-memory "
        f"tensors (N={int(f['memory_n'])}); worker start-up counted, {int(f['cores'])} CPU cores"
    )
    if slow >= 1.3 and memory >= 1.0:
        return "holds", text
    if slow >= 1.3:
        return ("holds only when __getitem__ costs real work (I/O, decoding); on in-memory tensors like the "
                "tutorial's, workers slow training down"), text
    return "refuted", text


def _pending(_: Figures) -> tuple[str, str]:  # pragma: no cover - never called: needs is never met
    return PENDING, ""


CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("C1", "Memory Efficient → Only small batches are processed at a time, not the full dataset.",
          "pending: peak RSS of full-batch vs mini-batch training as N grows", ("_",), _pending, "issue 6"),
    Claim("C2", "Faster & Smoother Convergence → Because weights are updated multiple times per epoch.",
          "holds if mini-batch ends with the lower full-data loss in >= 90% of seeds both per epoch and at equal "
          "updates; holds only per epoch if just the first (saying whether full-batch matches it at equal updates, "
          "i.e. mini-batch wins in <= 60% of seeds there); else refuted",
          ("seeds", "epochs", "updates", "epoch_wins", "equal_update_wins", "equal_update_loss_ratio"), _c2),
    Claim("C3", "Mini-batches allow frequent weight updates, which gives faster and more stable convergence in training.",
          "smoothness = total variation of the per-update loss / its net decrease (1.0 = monotone). Holds if "
          "mini-batch is smoother in >= 90% of seeds; refuted if in <= 10% and full-batch's full-data loss is at "
          "least as monotone per epoch; else holds only per epoch",
          ("seeds", "mini_roughness", "full_roughness", "mini_smoother", "mini_monotone", "full_monotone"), _c3),
    Claim("C4", "Better Training Performance → Avoids slow & unstable full-batch gradient descent.",
          "slow = full-batch behind after the same epochs in >= 90% of seeds; unstable = full-batch's full-data "
          "loss rose at any update. Both: holds; slow only: holds only per epoch; else refuted",
          ("seeds", "epochs", "full_behind_per_epoch", "full_loss_increases", "full_updates"), _c4),
    Claim("C5", "Clean & Modular Code → Dataset + DataLoader neatly separates data storage and data feeding.",
          "holds if every pairing of the datasets and loaders tried yields exactly its dataset's samples",
          ("pairs", "pairs_ok"), _c5),
    Claim("C6", "Allows easy access to any sample using an index (dataset[i]).",
          "holds if every index checked returns its aligned (x, y) pair", ("indices_checked", "mismatches"), _c6),
    Claim("C7", "Helps handle custom data sources (images, sensors, CSV, video frames, etc.)",
          "pending: lazy image, sensor, CSV and video datasets", ("_",), _pending, "issue 6"),
    Claim("C8", "Makes it easy to apply transformations (augmentations, normalization).",
          "pending: composable, reproducible transforms", ("_",), _pending, "issue 6"),
    Claim("C9", "Supports scalability, since data does not need to be loaded in memory all at once.",
          "pending: peak memory of lazy datasets as N grows", ("_",), _pending, "issue 6"),
    Claim("C10", "Loads data in mini-batches instead of all at once → prevents memory overflow. "
                 "(\"If you have 10GB dataset, you cannot load all of it into GPU memory at once.\")",
          "pending: training on data larger than a memory budget", ("_",), _pending, "issue 6"),
    Claim("C11", "Shuffles data to prevent the model from learning order patterns.",
          "on label-sorted data: holds if shuffle=True reaches the lower full-data loss in >= 90% of seeds; "
          "refuted if in <= 50%; else holds only in some seeds",
          ("seeds", "epochs", "shuffle_wins", "acc_shuffled", "acc_unshuffled"), _c11),
    Claim("C12", "Enables parallel data loading using workers → speeds up training.",
          "speed-up = time of a training epoch with num_workers=0 / with num_workers=2 (worker start-up "
          "included). Expensive samples: 10 ms of simulated waiting (time.sleep) each; cheap: the tutorial's "
          "in-memory tensors. Holds if >= 1.3 for expensive samples and >= 1.0 in memory (workers never hurt); "
          "holds only for expensive samples if >= 1.3 there and < 1.0 in memory; else refuted",
          ("latency_ms", "latency_n", "latency_speedup_w2", "memory_n", "memory_speedup_w2", "cores"), _c12),
    Claim("C13", "Feeds data to the model sequentially & efficiently each training step.",
          "pending: throughput against the permute-and-slice bound", ("_",), _pending, "issue 5"),
    Claim("C14", "Essential for mini-batch gradient descent, which improves convergence and training stability.",
          "refuted if mini-batch GD without any DataLoader reproduces DataLoader-fed training within the "
          "tolerance; else holds",
          ("seeds", "max_weight_diff", "tolerance"), _c14),
    Claim("C15", "Also 1 update per full data = slow learning",
          "holds if full-batch is behind both per pass over the data and per update in >= 90% of seeds; holds "
          "only per pass if just the first; else refuted",
          ("seeds", "full_behind_per_epoch", "full_behind_per_update"), _c15),
]}


def decide(claim_id: str, figures: Figures | None) -> tuple[str, str]:
    """The verdict and figure text for ``claim_id`` from this run's figures."""
    claim = CLAIMS[claim_id]
    figures = figures or {}
    missing = [k for k in claim.needs if k not in figures]
    if missing:
        where = f" (evidence in {claim.evidence_in})" if claim.evidence_in else ""
        return PENDING + where, "not measured in this run" if not figures else f"missing figures: {', '.join(missing)}"
    return claim.decide(figures)
