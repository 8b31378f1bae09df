"""The claims ledger: every claim of the tutorial, its words, and the rule that turns
measured figures into a verdict.

A verdict is never typed in: each claim's ``decide`` function reads the figures the spec
recorded in this run (``claim_figures.record(...)`` in a test marked
``@pytest.mark.claim("Cn")``) and returns ``(verdict, figure_text)``. Change the figures
and the verdict changes with them. A claim none of whose figures were recorded in this
run is ``pending``; one whose timed figures failed a disturbance check (figure ``disturbed``
> 0: other processes had the cores) is ``undecided: disturbed run (...)``, never compared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["CLAIMS", "Claim", "DISTURBED", "PENDING", "Report", "decide"]

PENDING, DISTURBED = "pending", "undecided: disturbed run"
Figures = Mapping[str, float]


@dataclass(frozen=True)
class Report:
    """Figures reported beside a claim's verdict that never decide it: ``text(figures)`` is
    appended to the figure text when every one of ``needs`` was recorded, and left out (the
    claim not pending for it) when any is missing."""

    needs: tuple[str, ...]
    text: Callable[[Figures], str]


@dataclass(frozen=True)
class Claim:
    """One claim of the tutorial: ``id`` (``"C1"`` ... ``"C15"``), ``quote`` (the tutorial's own words),
    ``rule`` (in words, exactly what ``decide`` computes), ``needs`` (the figure keys ``decide`` reads;
    any missing means ``pending``), ``decide`` (figures -> ``(verdict, figure text)``) and ``reports``
    (figures shown beside the verdict, never deciding it: :class:`Report`)."""

    id: str
    quote: str
    rule: str
    needs: tuple[str, ...]
    decide: Callable[[Figures], tuple[str, str]]
    reports: tuple[Report, ...] = ()


def _frac(k: float, n: float) -> str:
    return f"{int(k)}/{int(n)}"


# --- verdict rules ------------------------------------------------------------------------

def _by_seeds(fraction: float, *, refuted_at: float, text: str) -> tuple[str, str]:
    """Holds in >= 90% of seeds, refuted at or below ``refuted_at``, else only in some seeds."""
    if fraction >= 0.9:
        return "holds", text
    if fraction <= refuted_at:
        return "refuted", text
    return "holds only in some seeds", text


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
        f"full-data loss after every one of {int(f['updates'])} updates, both methods (roughness = total variation / "
        f"net decrease; 1.0 = it fell at every update): mini-batch median {f['mini_roughness']:.2f}, full-batch at "
        f"equal updates median {f['full_roughness']:.2f}; mini-batch smoother in {_frac(f['mini_smoother'], n)} seeds; "
        f"fell after every update in {_frac(f['mini_monotone'], n)} (mini) and {_frac(f['full_monotone'], n)} (full) "
        f"seeds. Per-batch training losses (each on another sample of the data): roughness "
        f"{f['batch_loss_roughness']:.2f}, noise of the estimate, not of convergence"
    )
    return _by_seeds(f["mini_smoother"] / n, refuted_at=0.1, text=text)


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
    return _by_seeds(f["shuffle_wins"] / n, refuted_at=0.5, text=text)


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
        f"tensors (N={int(f['memory_n'])}); worker start-up counted, {int(f['cores'])} CPU cores; fastest epoch "
        f"of {int(f['rounds'])} interleaved rounds"
    )
    if slow >= 1.3 and memory >= 1.0:
        return "holds", text
    if slow >= 1.3:
        return ("holds only when __getitem__ costs real work (I/O, decoding); on in-memory tensors like the "
                "tutorial's, workers slow training down"), text
    return "refuted", text


def _mib(b: float) -> str:
    return f"{b / 2**20:.0f} MiB"


#: Memory slopes (C1, C9, C10): "grows with the data" is >= 90% of a sample's bytes per sample,
#: "flat" <= 10%. The spec's instrument check imports these, never copies them.
GROWS, FLAT = 0.9, 0.1


def _c1(f: Figures) -> tuple[str, str]:
    d = f["data_bytes_per_sample"]
    full, mini, acc = f["full_bytes_per_sample"], f["minibatch_bytes_per_sample"], f["accumulated_bytes_per_sample"]
    text = (
        f"peak RSS grows per sample ({d:.0f} B of data each): full-batch {full:.0f} B, mini-batch from a lazy "
        f"dataset {mini:.0f} B, full-batch gradient accumulated over mini-batches {acc:.0f} B"
    )
    if full >= GROWS * d and mini <= FLAT * d:
        if acc <= FLAT * d:
            return ("holds: processing small batches is what saves the memory, and full-batch GD can process "
                    "small batches too (accumulated gradients, the same update)"), text
        return "holds", text
    return "refuted", text


def _c7(f: Figures) -> tuple[str, str]:
    text = (
        f"{_frac(f['sources_ok'], f['sources'])} kinds of source (npy, CSV, image folder, sensor windows, video clips) "
        f"served every sample through a DataLoader with 0 and 2 workers; "
        f"{_frac(f['bad_inputs_refused'], f['bad_inputs'])} malformed inputs refused with an error naming the file"
    )
    if f["sources"] > 0 and f["sources_ok"] == f["sources"]:
        if f["bad_inputs_refused"] == f["bad_inputs"]:
            return "holds", text
        return "holds only for well-formed input", text
    return "refuted", text


def _c8(f: Figures) -> tuple[str, str]:
    tol = f["norm_tolerance"]
    text = (
        f"one transform= argument: normalized features had |mean| <= {f['norm_mean_abs_max']:.1e} and "
        f"|std - 1| <= {f['norm_std_err_max']:.1e} (tolerance {tol:.0e}); seeded augmentation reproduced in "
        f"{_frac(f['augment_reproduced'], f['augment_epochs'])} epochs (workers 0 and 2); stored data "
        f"{'changed' if f['stored_data_changed'] else 'unchanged'}"
    )
    ok = (f["norm_mean_abs_max"] <= tol and f["norm_std_err_max"] <= tol
          and f["augment_reproduced"] == f["augment_epochs"] and not f["stored_data_changed"])
    return ("holds" if ok else "refuted"), text


def _c9(f: Figures) -> tuple[str, str]:
    d, mini, mm = f["data_bytes_per_sample"], f["minibatch_bytes_per_sample"], f["memmap_rss_bytes_per_sample"]
    text = (
        f"up to N={int(f['max_n'])}: peak RSS of a lazy mini-batch epoch grew {mini:.0f} B per sample for "
        f"{d:.0f} B of data per sample (reading rows with preadv); read through memory maps it grew {mm:.0f} B "
        f"per sample: the file's pages, mapped in as clean page cache (reclaimable; not charged by a "
        f"private-memory budget, see C10)"
    )
    if mini <= FLAT * d:
        return "holds", text
    return "refuted", text


def _c10(f: Figures) -> tuple[str, str]:
    ratio = f["data_bytes"] / f["budget_bytes"]
    fits, oom = bool(f["minibatch_within_budget"]), bool(f["full_batch_out_of_memory"])
    acc_flat = f["accumulated_bytes_per_sample"] <= FLAT * f["data_bytes_per_sample"]
    acc_fits = bool(f["accumulated_within_budget"])
    exact = f["accum_rel_error"] < 1e-5
    text = (
        f"{_mib(f['data_bytes'])} of data, {_mib(f['budget_bytes'])} private-memory budget ({ratio:.0f}x smaller): "
        f"a mini-batch epoch from a lazy dataset {'completed' if fits else 'failed'}, peak RSS up "
        f"{100 * f['pread_rss_fraction']:.1f}% of the data size (preadv; {100 * f['memmap_rss_fraction']:.0f}% "
        f"through memmaps, reclaimable page cache); full-batch {'raised MemoryError' if oom else 'fit'}. "
        f"Full-batch GD's exact gradient accumulated over micro-batches weighted by size/N (rel. error "
        f"{f['accum_rel_error']:.1e}; naive averaging off by >= {f['naive_rel_error']:.1e} in "
        f"{int(f['gradient_seeds'])} seeds) {'completed' if acc_fits else 'failed'} within the same budget, its peak "
        f"RSS growing {f['accumulated_bytes_per_sample']:.0f} B/sample"
    )
    if fits and oom and ratio >= 2:
        if acc_fits and acc_flat and exact:
            return ("holds only against naive full-batch training: loading everything at once overflows, but "
                    "full-batch GD that accumulates micro-batch gradients fits the same budget"), text
        return "holds", text
    return "refuted", text


def _c13(f: Figures) -> tuple[str, str]:
    step = f["dataloader_loop_samples_per_s"] / f["permute_slice_loop_samples_per_s"]
    feed = f["dataloader_samples_per_s"] / f["permute_slice_samples_per_s"]
    text = (
        f"{int(f['steps'])} training steps each got the sampler's next batch ({int(f['out_of_order'])} out of order); "
        f"the tutorial's training loop (N={int(f['n'])}, F=3, B={int(f['batch_size'])}) fed by torch's DataLoader "
        f"ran {step:.0%} of the steps per CPU second of the same loop fed by permuting once and slicing (median "
        f"step, the two loops stepping in turn); "
        f"the feed alone, without the model: DataLoader {feed:.1%} of the permute-and-slice bound "
        f"({f['permute_slice_samples_per_s'] / 1e6:.1f} M samples/s)"
    )
    if f["out_of_order"] > 0:
        return "refuted: batches left the sampler's order", text
    if step >= 0.5:
        return ("holds for the tutorial's training step: batches come in order and DataLoader keeps the loop at "
                "half the slice-fed step rate or more, though the feed alone runs far below the bound"
                if feed < 0.5 else "holds"), text
    return ("holds only when per-sample work dominates: batches come in order, but on in-memory tensors "
            "DataLoader's per-sample __getitem__ and collate cost more than the training step itself"), text


# --- reported beside verdicts ----------------------------------------------------------

def _block_reads(f: Figures) -> str:
    return (f"block shuffle (issue 15): an epoch of batches of {int(f['block_read_batch'])} from .npy files "
            f"(N={int(f['block_read_n'])}, page cache dropped) in blocks of {int(f['block_read_size'])} contiguous rows "
            f"read x{f['block_read_speedup_pread']:.2f} as fast as in fully shuffled order with preadv, "
            f"x{f['block_read_speedup_mmap']:.2f} through a memory map; its convergence cost is under C11")


def _block_convergence(f: Figures) -> str:
    n = f["block_seeds"]
    return (f"block shuffle (issue 15) in blocks of {int(f['block_size'])} contiguous rows, shuffle buffer "
            f"{int(f['block_buffer'])}, same data: lower full-data loss than no shuffle in "
            f"{_frac(f['block_wins'], n)} seeds, mean accuracy {f['acc_block']:.3f}; its cold-cache speed-up is under C9")


BLOCK_READS = Report(("block_read_n", "block_read_batch", "block_read_size", "block_read_speedup_pread",
                      "block_read_speedup_mmap"), _block_reads)
BLOCK_CONVERGENCE = Report(("block_size", "block_buffer", "block_seeds", "block_wins", "acc_block"), _block_convergence)
CPU_WAIT = Report(("cpu_wait",), lambda f: f"its cleanest epochs waited {f['cpu_wait']:.0%} of their time for a CPU")

CLAIMS: dict[str, Claim] = {c.id: c for c in [
    Claim("C1", "Memory Efficient → Only small batches are processed at a time, not the full dataset.",
          "peak-RSS slopes over N (same B), fitted: holds if full-batch grows >= 90% of a sample's bytes per sample "
          "and mini-batch from a lazy dataset <= 10%; the verdict says so when the accumulated full-batch gradient is "
          "flat too; else refuted",
          ("full_bytes_per_sample", "minibatch_bytes_per_sample", "accumulated_bytes_per_sample",
           "data_bytes_per_sample"), _c1),
    Claim("C2", "Faster & Smoother Convergence → Because weights are updated multiple times per epoch.",
          "holds if mini-batch ends with the lower full-data loss in >= 90% of seeds both per epoch and at equal "
          "updates; holds only per epoch if just the first (saying whether full-batch matches it at equal updates, "
          "i.e. mini-batch wins in <= 60% of seeds there); else refuted",
          ("seeds", "epochs", "updates", "epoch_wins", "equal_update_wins", "equal_update_loss_ratio"), _c2),
    Claim("C3", "Mini-batches allow frequent weight updates, which gives faster and more stable convergence in training.",
          "like with like: the full-data loss after every update, for mini-batch and for full-batch given as many "
          "updates; roughness = its total variation / net decrease (1.0 = it fell at every update). Holds if "
          "mini-batch's is smoother in >= 90% of seeds; refuted if in <= 10%; else holds only in some seeds. The "
          "roughness of mini-batch's per-batch training losses is reported beside it, as the noise it is",
          ("seeds", "updates", "mini_roughness", "full_roughness", "mini_smoother", "mini_monotone", "full_monotone",
           "batch_loss_roughness"), _c3),
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
          "holds if every kind of source serves all its samples through a DataLoader (0 and 2 workers) and every "
          "malformed input is refused naming the file; only for well-formed input if just the first; else refuted",
          ("sources", "sources_ok", "bad_inputs", "bad_inputs_refused"), _c7),
    Claim("C8", "Makes it easy to apply transformations (augmentations, normalization).",
          "holds if fitted normalization gives |mean| and |std - 1| within the tolerance, seeded augmentation "
          "reproduces in every epoch tried, and the stored data is unchanged; else refuted",
          ("norm_mean_abs_max", "norm_std_err_max", "norm_tolerance", "augment_epochs", "augment_reproduced",
           "stored_data_changed"), _c8),
    Claim("C9", "Supports scalability, since data does not need to be loaded in memory all at once.",
          "holds if a lazy mini-batch epoch's peak RSS grows <= 10% of a sample's bytes per sample as N grows; "
          "else refuted (the memory-mapped slope is reported)",
          ("minibatch_bytes_per_sample", "data_bytes_per_sample", "memmap_rss_bytes_per_sample", "max_n"), _c9,
          (BLOCK_READS,)),
    Claim("C10", "Loads data in mini-batches instead of all at once → prevents memory overflow. "
                 "(\"If you have 10GB dataset, you cannot load all of it into GPU memory at once.\")",
          "under a private-memory budget (RLIMIT_DATA) at least 2x smaller than the data: holds if a mini-batch epoch "
          "completes and full-batch raises MemoryError; holds only against naive full-batch training if the exact "
          "full-batch gradient accumulated over micro-batches (rel. error < 1e-5) also completes within the budget "
          "and stays flat over N (<= 10% of a sample's bytes per sample); else refuted",
          ("budget_bytes", "data_bytes", "minibatch_within_budget", "accumulated_within_budget",
           "full_batch_out_of_memory", "pread_rss_fraction",
           "memmap_rss_fraction", "accumulated_bytes_per_sample", "data_bytes_per_sample", "accum_rel_error",
           "naive_rel_error", "gradient_seeds"), _c10),
    Claim("C11", "Shuffles data to prevent the model from learning order patterns.",
          "on label-sorted data: holds if shuffle=True reaches the lower full-data loss in >= 90% of seeds; "
          "refuted if in <= 50%; else holds only in some seeds",
          ("seeds", "epochs", "shuffle_wins", "acc_shuffled", "acc_unshuffled"), _c11, (BLOCK_CONVERGENCE,)),
    Claim("C12", "Enables parallel data loading using workers → speeds up training.",
          "speed-up = time of a training epoch with num_workers=0 / with num_workers=2 (worker start-up "
          "included; main process on 1 torch thread). Expensive samples: 10 ms of simulated waiting "
          "(time.sleep) each; cheap: the tutorial's in-memory tensors. Holds if >= 1.3 for expensive samples "
          "and >= 1.0 in memory (workers never hurt); holds only for expensive samples if >= 1.3 there and "
          "< 1.0 in memory; else refuted. Wall-clock, 0 and 2 workers in interleaved rounds, the fastest epoch of "
          "each; undecided (disturbed run) when every expensive-sample epoch of one of them waited more than 10% of "
          "its time for a CPU, after up to 8 rounds",
          ("latency_ms", "latency_n", "latency_speedup_w2", "memory_n", "memory_speedup_w2", "cores", "rounds",
           "disturbed"), _c12, (CPU_WAIT,)),
    Claim("C13", "Feeds data to the model sequentially & efficiently each training step.",
          "sequential = every step's batch is the sampler's next B indices; efficiency, in the tutorial's words "
          "(each training step) = steps per CPU second (the loop's thread; the median step of 5 epochs run step by "
          "step side by side, one step of each loop in turn) of the tutorial's training loop fed by torch's DataLoader over the same loop fed by permuting once and slicing, "
          "same run. Refuted if not sequential; holds if >= 0.5 (saying so when the feed alone, without the model, "
          "is < 0.5 of the permute-and-slice bound); holds only when per-sample work dominates if < 0.5; undecided "
          "(disturbed run) when DataLoader measured faster than the bound",
          ("steps", "out_of_order", "n", "batch_size", "dataloader_loop_samples_per_s",
           "permute_slice_loop_samples_per_s", "dataloader_samples_per_s", "permute_slice_samples_per_s",
           "disturbed"), _c13),
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
    """The verdict and figure text for ``claim_id`` from this run's figures (with its reports' texts
    appended, those whose figures were all recorded); a disturbed run's verdict is undecided."""
    claim = CLAIMS[claim_id]
    figures = figures or {}
    missing = [k for k in claim.needs if k not in figures]
    if missing:
        return PENDING, "not measured in this run" if not figures else f"missing figures: {', '.join(missing)}"
    verdict, text = claim.decide(figures)
    shown = [r.text(figures) for r in claim.reports if all(k in figures for k in r.needs)]
    if "disturbed" in claim.needs and figures["disturbed"] > 0:
        verdict = f"{DISTURBED} (the figures would say: {verdict})"
        shown.append(f"disturbed run: {int(figures['disturbed'])} disturbance check(s) failed, figures not trusted")
    return verdict, "; ".join([text, *shown])
