"""The claims ledger's verdict rules (batchfeed.claims), every branch driven from synthetic figures.

Each rule is pinned at its thresholds: a case exactly at the threshold and one just past
it. Figures compared directly step past with ``math.nextafter``; fractions of seeds step
past with k/1000 (0.001 from the threshold), while k/30 hits 0.9, 0.6, 0.5 and 0.1 exactly.
A flipped comparison, a moved constant or a dropped condition therefore changes a verdict
here. Expected verdicts and figure texts are derived from the rule texts (docs/claims.md,
"Verdict rules") and the figures docs/claims.md reports, not copied from running the rules.

The last part checks ``experiments.claim_figures`` against a comparison trained and
counted by hand in the test.
"""

import math
import statistics
from collections.abc import Mapping

import pytest
import torch
from torch import nn

from batchfeed import claims, compare, experiments, make_model, make_seed_data


def below(x: float) -> float:
    """The largest float smaller than ``x``."""
    return math.nextafter(x, -math.inf)


def above(x: float) -> float:
    """The smallest float larger than ``x``."""
    return math.nextafter(x, math.inf)


def verdict(cid: str, base: dict, **changes: float) -> str:
    """The rule's verdict for ``base`` with ``changes`` applied."""
    return claims.decide(cid, {**base, **changes})[0]


def figure_text(cid: str, figures: dict) -> str:
    return claims.decide(cid, figures)[1]


MIB = 2**20

# --- the figures docs/claims.md reports, one full set per claim ------------------------------

DOCS = {
    "C1": dict(data_bytes_per_sample=4104, full_bytes_per_sample=4128, minibatch_bytes_per_sample=75,
               accumulated_bytes_per_sample=0),
    "C2": dict(seeds=30, epochs=5, updates=160, epoch_wins=30, equal_update_wins=15, equal_update_loss_ratio=0.9999),
    "C3": dict(seeds=30, updates=160, mini_roughness=1.0, full_roughness=1.0, mini_smoother=0, mini_monotone=30,
               full_monotone=30, batch_loss_roughness=10.38),
    "C4": dict(seeds=30, epochs=5, full_behind_per_epoch=30, full_loss_increases=0, full_updates=4950),
    "C5": dict(pairs=6, pairs_ok=6),
    "C6": dict(indices_checked=2000, mismatches=0),
    "C7": dict(sources=5, sources_ok=5, bad_inputs=26, bad_inputs_refused=26),
    "C8": dict(norm_mean_abs_max=9.1e-10, norm_std_err_max=1.8e-9, norm_tolerance=1e-5, augment_epochs=5,
               augment_reproduced=5, stored_data_changed=0),
    "C9": dict(minibatch_bytes_per_sample=75, data_bytes_per_sample=4104, memmap_rss_bytes_per_sample=4097,
               max_n=16384),
    "C10": dict(budget_bytes=8 * MIB, data_bytes=32 * MIB, minibatch_within_budget=1, accumulated_within_budget=1,
                full_batch_out_of_memory=1, pread_rss_fraction=0.038, memmap_rss_fraction=1.05,
                accumulated_bytes_per_sample=0, data_bytes_per_sample=4104, accum_rel_error=6.0e-7,
                naive_rel_error=2.2e-3, gradient_seeds=20),
    "C11": dict(seeds=30, epochs=5, shuffle_wins=30, acc_shuffled=0.991, acc_unshuffled=0.968),
    "C12": dict(latency_ms=10, latency_n=96, latency_speedup_w2=1.54, memory_n=1000, memory_speedup_w2=0.03, cores=2,
                rounds=3, disturbed=0),
    "C13": dict(steps=313, out_of_order=0, n=10_000, batch_size=32, dataloader_loop_samples_per_s=0.224e6,
                permute_slice_loop_samples_per_s=0.4e6, dataloader_samples_per_s=0.39e6,
                permute_slice_samples_per_s=13.0e6, disturbed=0),
    "C14": dict(seeds=5, max_weight_diff=0.0, tolerance=1e-6),
    "C15": dict(seeds=30, full_behind_per_epoch=30, full_behind_per_update=15),
}

# --- the verdicts the rules can give, as claims.py words them -----------------------------------

HOLDS, REFUTED = "holds", "refuted"
C1_HOLDS_ACCUMULATED = ("holds: processing small batches is what saves the memory, and full-batch GD can process "
                        "small batches too (accumulated gradients, the same update)")
C2_UPDATES_ONLY = ("holds only when progress is counted per epoch: at equal updates full-batch does as well, "
                   "so the gain is the number of updates, not better updates")
C2_PARTIAL_EDGE = "holds only when progress is counted per epoch; per update mini-batch keeps a partial edge"
C3_SOME = "holds only in some seeds"
C4_PER_EPOCH = "holds only when 'slow' means per epoch; full-batch GD was never unstable"
C7_WELL_FORMED = "holds only for well-formed input"
C10_NAIVE = ("holds only against naive full-batch training: loading everything at once overflows, but "
             "full-batch GD that accumulates micro-batch gradients fits the same budget")
C11_SOME = "holds only in some seeds"
C12_REAL_WORK = ("holds only when __getitem__ costs real work (I/O, decoding); on in-memory tensors like the "
                 "tutorial's, workers slow training down")
C13_REFUTED = "refuted: batches left the sampler's order"
C13_PER_SAMPLE = ("holds only when per-sample work dominates: batches come in order, but on in-memory tensors "
                  "DataLoader's per-sample __getitem__ and collate cost more than the training step itself")
C13_STEP = ("holds for the tutorial's training step: batches come in order and DataLoader keeps the loop at half the "
            "slice-fed step rate or more, though the feed alone runs far below the bound")
C14_REFUTED = "refuted: DataLoader is a convenience, not a requirement, for mini-batch GD"
C15_PER_PASS = "holds only when learning is measured per pass over the data, not per update"


def test_docs_figures_give_the_docs_verdicts():
    """The figures docs/claims.md reports give the verdicts it reports."""
    expected = {"C1": C1_HOLDS_ACCUMULATED, "C2": C2_UPDATES_ONLY, "C3": REFUTED, "C4": C4_PER_EPOCH, "C5": HOLDS,
                "C6": HOLDS, "C7": HOLDS, "C8": HOLDS, "C9": HOLDS, "C10": C10_NAIVE, "C11": HOLDS,
                "C12": C12_REAL_WORK, "C13": C13_STEP, "C14": C14_REFUTED, "C15": C15_PER_PASS}
    assert set(DOCS) == set(expected) == set(claims.CLAIMS)
    assert {cid: claims.decide(cid, DOCS[cid])[0] for cid in DOCS} == expected


# --- C1 and C9: memory slopes (grows >= 90%, flat <= 10% of a sample's bytes) ---------------------

C1 = dict(data_bytes_per_sample=1000, full_bytes_per_sample=1000, minibatch_bytes_per_sample=50,
          accumulated_bytes_per_sample=20)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, C1_HOLDS_ACCUMULATED, id="grows-flat-accumulated-flat"),
    pytest.param(dict(full_bytes_per_sample=900, minibatch_bytes_per_sample=100, accumulated_bytes_per_sample=100),
                 C1_HOLDS_ACCUMULATED, id="all-exactly-at-90%-and-10%"),
    pytest.param(dict(accumulated_bytes_per_sample=above(100)), HOLDS, id="accumulated-just-over-10%"),
    pytest.param(dict(accumulated_bytes_per_sample=1000), HOLDS, id="accumulated-grows"),
    pytest.param(dict(full_bytes_per_sample=below(900)), REFUTED, id="full-just-under-90%"),
    pytest.param(dict(full_bytes_per_sample=below(900), accumulated_bytes_per_sample=1000), REFUTED,
                 id="full-just-under-90%-accumulated-grows"),
    pytest.param(dict(minibatch_bytes_per_sample=above(100)), REFUTED, id="minibatch-just-over-10%"),
    pytest.param(dict(minibatch_bytes_per_sample=above(100), accumulated_bytes_per_sample=1000), REFUTED,
                 id="minibatch-just-over-10%-accumulated-grows"),
    pytest.param(dict(full_bytes_per_sample=0, minibatch_bytes_per_sample=1000), REFUTED, id="reversed"),
])
def test_c1_rule(changes, expected):
    """C1 holds when full-batch grows >= 90% and lazy mini-batch <= 10% per sample; it says so when accumulation is flat too."""
    assert verdict("C1", C1, **changes) == expected


def test_c1_figure_text():
    """C1's text reports the data's bytes per sample and each method's slope, in bytes."""
    assert figure_text("C1", DOCS["C1"]) == (
        "peak RSS grows per sample (4104 B of data each): full-batch 4128 B, mini-batch from a lazy dataset 75 B, "
        "full-batch gradient accumulated over mini-batches 0 B")


C9 = dict(minibatch_bytes_per_sample=50, data_bytes_per_sample=1000, memmap_rss_bytes_per_sample=1000, max_n=4096)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="flat"),
    pytest.param(dict(minibatch_bytes_per_sample=100), HOLDS, id="exactly-10%"),
    pytest.param(dict(minibatch_bytes_per_sample=above(100)), REFUTED, id="just-over-10%"),
    pytest.param(dict(minibatch_bytes_per_sample=1000), REFUTED, id="grows-like-the-data"),
    pytest.param(dict(memmap_rss_bytes_per_sample=0), HOLDS, id="memmap-slope-only-reported"),
])
def test_c9_rule(changes, expected):
    """C9 holds when a lazy mini-batch epoch's peak RSS grows <= 10% of a sample's bytes per sample; the memmap slope is only reported."""
    assert verdict("C9", C9, **changes) == expected


def test_c9_figure_text():
    """C9's text reports the largest N, both slopes and the data's bytes per sample."""
    assert figure_text("C9", DOCS["C9"]) == (
        "up to N=16384: peak RSS of a lazy mini-batch epoch grew 75 B per sample for 4104 B of data per sample "
        "(reading rows with preadv); read through memory maps it grew 4097 B per sample: the file's pages, mapped in "
        "as clean page cache (reclaimable; not charged by a private-memory budget, see C10)")


# --- C2, C3, C4, C15, C11: fractions of seeds ----------------------------------------------------

C2 = dict(seeds=30, epochs=5, updates=160, epoch_wins=30, equal_update_wins=30, equal_update_loss_ratio=0.9)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="30/30-both"),
    pytest.param(dict(epoch_wins=27, equal_update_wins=27), HOLDS, id="both-exactly-90%"),
    pytest.param(dict(seeds=1000, epoch_wins=1000, equal_update_wins=899), C2_PARTIAL_EDGE, id="updates-just-under-90%"),
    pytest.param(dict(equal_update_wins=19), C2_PARTIAL_EDGE, id="updates-19/30"),
    pytest.param(dict(seeds=1000, epoch_wins=1000, equal_update_wins=601), C2_PARTIAL_EDGE, id="updates-just-over-60%"),
    pytest.param(dict(equal_update_wins=18), C2_UPDATES_ONLY, id="updates-exactly-60%"),
    pytest.param(dict(epoch_wins=27, equal_update_wins=18), C2_UPDATES_ONLY, id="epochs-exactly-90%-updates-60%"),
    pytest.param(dict(epoch_wins=27, equal_update_wins=19), C2_PARTIAL_EDGE, id="epochs-exactly-90%-updates-19/30"),
    pytest.param(dict(equal_update_wins=0), C2_UPDATES_ONLY, id="updates-0/30"),
    pytest.param(dict(seeds=1000, epoch_wins=899, equal_update_wins=1000), REFUTED, id="epochs-just-under-90%"),
    pytest.param(dict(seeds=1000, epoch_wins=899, equal_update_wins=700), REFUTED, id="epochs-just-under-updates-70%"),
    pytest.param(dict(seeds=1000, epoch_wins=899, equal_update_wins=600), REFUTED, id="epochs-just-under-updates-60%"),
    pytest.param(dict(epoch_wins=0, equal_update_wins=0), REFUTED, id="0/30-both"),
])
def test_c2_rule(changes, expected):
    """C2 holds if mini-batch wins in >= 90% of seeds per epoch and at equal updates; per epoch only otherwise, naming whether it wins in <= 60% at equal updates; else refuted."""
    assert verdict("C2", C2, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C2"], "after 5 epochs mini-batch had the lower full-data loss in 30/30 seeds; with equal "
                 "updates (160 each) in 15/30 seeds (median loss ratio mini/full at equal updates 0.9999)", id="docs"),
    pytest.param(dict(seeds=7, epochs=3, updates=96, epoch_wins=6, equal_update_wins=2, equal_update_loss_ratio=1.23456),
                 "after 3 epochs mini-batch had the lower full-data loss in 6/7 seeds; with equal updates (96 each) "
                 "in 2/7 seeds (median loss ratio mini/full at equal updates 1.2346)", id="distinct-figures"),
])
def test_c2_figure_text(figures, text):
    """C2's text reports epochs, updates, both win counts out of the seeds and the median loss ratio."""
    assert figure_text("C2", figures) == text


C3 = dict(seeds=30, updates=160, mini_roughness=1.0, full_roughness=1.5, mini_smoother=30, mini_monotone=30,
          full_monotone=30, batch_loss_roughness=10.0)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="30/30"),
    pytest.param(dict(mini_smoother=27), HOLDS, id="exactly-90%"),
    pytest.param(dict(mini_smoother=27, full_monotone=0, mini_monotone=0), HOLDS, id="exactly-90%-monotonicity-ignored"),
    pytest.param(dict(seeds=1000, mini_smoother=899), C3_SOME, id="just-under-90%"),
    pytest.param(dict(mini_smoother=15), C3_SOME, id="half"),
    pytest.param(dict(seeds=1000, mini_smoother=101), C3_SOME, id="just-over-10%"),
    pytest.param(dict(mini_smoother=3), REFUTED, id="exactly-10%"),
    pytest.param(dict(mini_smoother=0), REFUTED, id="0/30"),
    pytest.param(dict(mini_smoother=0, batch_loss_roughness=1.0), REFUTED, id="0/30-batch-noise-ignored"),
    pytest.param(dict(mini_smoother=30, batch_loss_roughness=50.0), HOLDS, id="30/30-batch-noise-ignored"),
])
def test_c3_rule(changes, expected):
    """C3 compares the full-data loss per update of both methods: holds if mini-batch's is smoother in >= 90% of seeds, refuted if in <= 10%, else some seeds only; per-batch noise does not decide."""
    assert verdict("C3", C3, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C3"], "full-data loss after every one of 160 updates, both methods (roughness = total variation / "
                 "net decrease; 1.0 = it fell at every update): mini-batch median 1.00, full-batch at equal updates "
                 "median 1.00; mini-batch smoother in 0/30 seeds; fell after every update in 30/30 (mini) and 30/30 "
                 "(full) seeds. Per-batch training losses (each on another sample of the data): roughness 10.38, "
                 "noise of the estimate, not of convergence", id="docs"),
    pytest.param(dict(seeds=9, updates=77, mini_roughness=2.345, full_roughness=1.004, mini_smoother=4, mini_monotone=7,
                      full_monotone=8, batch_loss_roughness=3.456),
                 "full-data loss after every one of 77 updates, both methods (roughness = total variation / net "
                 "decrease; 1.0 = it fell at every update): mini-batch median 2.35, full-batch at equal updates median "
                 "1.00; mini-batch smoother in 4/9 seeds; fell after every update in 7/9 (mini) and 8/9 (full) seeds. "
                 "Per-batch training losses (each on another sample of the data): roughness 3.46, noise of the "
                 "estimate, not of convergence", id="distinct-figures"),
])
def test_c3_figure_text(figures, text):
    """C3's text reports the updates, both median roughnesses, the smoother count, both monotone counts and the per-batch noise."""
    assert figure_text("C3", figures) == text


C4 = dict(seeds=30, epochs=5, full_behind_per_epoch=30, full_loss_increases=3, full_updates=4950)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="slow-and-unstable"),
    pytest.param(dict(full_behind_per_epoch=27, full_loss_increases=1), HOLDS, id="exactly-90%-one-rise"),
    pytest.param(dict(full_loss_increases=0), C4_PER_EPOCH, id="slow-never-unstable"),
    pytest.param(dict(full_behind_per_epoch=27, full_loss_increases=0), C4_PER_EPOCH, id="exactly-90%-no-rise"),
    pytest.param(dict(seeds=1000, full_behind_per_epoch=899), REFUTED, id="just-under-90%-unstable"),
    pytest.param(dict(seeds=1000, full_behind_per_epoch=899, full_loss_increases=0), REFUTED,
                 id="just-under-90%-stable"),
    pytest.param(dict(full_behind_per_epoch=0, full_loss_increases=100), REFUTED, id="never-behind"),
])
def test_c4_rule(changes, expected):
    """C4 holds if full-batch is behind in >= 90% of seeds and its loss ever rose; per epoch only if it never rose; else refuted."""
    assert verdict("C4", C4, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C4"], "full-batch behind mini-batch after 5 epochs in 30/30 seeds; full-batch full-data loss "
                 "rose in 0 of 4950 updates", id="docs"),
    pytest.param(dict(seeds=8, epochs=3, full_behind_per_epoch=6, full_loss_increases=2, full_updates=120),
                 "full-batch behind mini-batch after 3 epochs in 6/8 seeds; full-batch full-data loss rose in 2 of "
                 "120 updates", id="distinct-figures"),
])
def test_c4_figure_text(figures, text):
    """C4's text reports epochs, the behind count out of the seeds and the rises out of the updates."""
    assert figure_text("C4", figures) == text


C15 = dict(seeds=30, full_behind_per_epoch=30, full_behind_per_update=30)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="30/30-both"),
    pytest.param(dict(full_behind_per_epoch=27, full_behind_per_update=27), HOLDS, id="both-exactly-90%"),
    pytest.param(dict(seeds=1000, full_behind_per_epoch=1000, full_behind_per_update=899), C15_PER_PASS,
                 id="per-update-just-under-90%"),
    pytest.param(dict(full_behind_per_epoch=27, full_behind_per_update=15), C15_PER_PASS,
                 id="per-pass-exactly-90%-per-update-half"),
    pytest.param(dict(seeds=1000, full_behind_per_epoch=899, full_behind_per_update=1000), REFUTED,
                 id="per-pass-just-under-90%"),
    pytest.param(dict(seeds=1000, full_behind_per_epoch=899, full_behind_per_update=899), REFUTED,
                 id="both-just-under-90%"),
    pytest.param(dict(full_behind_per_epoch=0, full_behind_per_update=0), REFUTED, id="0/30-both"),
])
def test_c15_rule(changes, expected):
    """C15 holds if full-batch is behind in >= 90% of seeds per pass and per update; per pass only if just the first; else refuted."""
    assert verdict("C15", C15, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C15"], "per pass over the data (equal samples): full-batch behind in 30/30 seeds; per update: "
                 "full-batch behind in 15/30 seeds", id="docs"),
    pytest.param(dict(seeds=7, full_behind_per_epoch=6, full_behind_per_update=2),
                 "per pass over the data (equal samples): full-batch behind in 6/7 seeds; per update: full-batch "
                 "behind in 2/7 seeds", id="distinct-figures"),
])
def test_c15_figure_text(figures, text):
    """C15's text reports both behind counts out of the seeds."""
    assert figure_text("C15", figures) == text


C11 = dict(seeds=30, epochs=5, shuffle_wins=30, acc_shuffled=0.99, acc_unshuffled=0.97)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="30/30"),
    pytest.param(dict(shuffle_wins=27), HOLDS, id="exactly-90%"),
    pytest.param(dict(seeds=1000, shuffle_wins=899), C11_SOME, id="just-under-90%"),
    pytest.param(dict(seeds=1000, shuffle_wins=501), C11_SOME, id="just-over-50%"),
    pytest.param(dict(shuffle_wins=15), REFUTED, id="exactly-50%"),
    pytest.param(dict(shuffle_wins=0), REFUTED, id="0/30"),
    pytest.param(dict(shuffle_wins=0, acc_shuffled=1.0, acc_unshuffled=0.5), REFUTED, id="accuracy-only-reported"),
])
def test_c11_rule(changes, expected):
    """C11 holds if shuffling wins in >= 90% of seeds; refuted if in <= 50%; else holds only in some seeds."""
    assert verdict("C11", C11, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C11"], "label-sorted data, 5 epochs: shuffle=True reached the lower full-data loss in 30/30 "
                 "seeds; mean accuracy 0.991 shuffled vs 0.968 unshuffled", id="docs"),
    pytest.param(dict(seeds=9, epochs=2, shuffle_wins=7, acc_shuffled=0.8126, acc_unshuffled=0.5),
                 "label-sorted data, 2 epochs: shuffle=True reached the lower full-data loss in 7/9 seeds; mean "
                 "accuracy 0.813 shuffled vs 0.500 unshuffled", id="distinct-figures"),
])
def test_c11_figure_text(figures, text):
    """C11's text reports epochs, the win count out of the seeds and both mean accuracies."""
    assert figure_text("C11", figures) == text


# --- figures reported beside C9 and C11 (block shuffle, issue 15): never deciding ----------------

#: Block shuffle's figures as docs/claims.md reports them: its cold-cache read speed-up (C9), its
#: convergence on C11's data (C11).
BLOCK_READS = dict(block_read_n=20_000, block_read_batch=256, block_read_size=64, block_read_speedup_pread=2.45,
                   block_read_speedup_mmap=0.90)
BLOCK_CONVERGENCE = dict(block_size=64, block_buffer=64, block_seeds=10, block_wins=10, acc_block=0.991)
C12_WAIT = dict(cpu_wait=0.08)
REPORTED = {"C9": BLOCK_READS, "C11": BLOCK_CONVERGENCE, "C12": C12_WAIT}
C9_BLOCK_TEXT = ("block shuffle (issue 15): an epoch of batches of 256 from .npy files (N=20000, page cache dropped) in "
                 "blocks of 64 contiguous rows read x2.45 as fast as in fully shuffled order with preadv, x0.90 through "
                 "a memory map; its convergence cost is under C11")
C11_BLOCK_TEXT = ("block shuffle (issue 15) in blocks of 64 contiguous rows, shuffle buffer 64, same data: lower full-data "
                  "loss than no shuffle in 10/10 seeds, mean accuracy 0.991; its cold-cache speed-up is under C9")

#: Every figure set the C9 and C11 rule tests above drive, each branch and threshold.
RULE_CASES = [("C9", {**C9, **c}) for c in (
    {}, dict(minibatch_bytes_per_sample=100), dict(minibatch_bytes_per_sample=above(100)),
    dict(minibatch_bytes_per_sample=1000), dict(memmap_rss_bytes_per_sample=0))] + [("C11", {**C11, **c}) for c in (
    {}, dict(shuffle_wins=27), dict(seeds=1000, shuffle_wins=899), dict(seeds=1000, shuffle_wins=501),
    dict(shuffle_wins=15), dict(shuffle_wins=0))] + [(cid, DOCS[cid]) for cid in REPORTED]


@pytest.mark.parametrize(("cid", "figures"), RULE_CASES)
@pytest.mark.parametrize("reported", [dict(block_read_speedup_pread=0.5, block_read_speedup_mmap=0.5, block_wins=0,
                                           acc_block=0.0),
                                      dict(block_read_speedup_pread=100.0, block_read_speedup_mmap=100.0, block_wins=30,
                                           acc_block=1.0)],
                         ids=["block-slow-and-worst", "block-fast-and-best"])
def test_block_figures_never_change_a_verdict(cid, figures, reported):
    """With block shuffle's figures, at their extremes, each C9 and C11 rule gives the verdict it gives without them."""
    extra = {**BLOCK_READS, **BLOCK_CONVERGENCE, **C12_WAIT, **reported}
    assert verdict(cid, figures, **extra) == verdict(cid, figures)


@pytest.mark.parametrize(("cid", "text"), [("C9", C9_BLOCK_TEXT), ("C11", C11_BLOCK_TEXT)])
def test_block_figures_are_appended_to_the_figure_text(cid, text):
    """Recorded, block shuffle's figures follow the claim's own text after '; '."""
    assert figure_text(cid, {**DOCS[cid], **REPORTED[cid]}) == figure_text(cid, DOCS[cid]) + "; " + text


def test_block_figure_texts_report_every_figure():
    """Distinct figures: each one lands in its place in the text."""
    reads = dict(block_read_n=7, block_read_batch=3, block_read_size=9, block_read_speedup_pread=2.345,
                 block_read_speedup_mmap=0.8765)
    conv = dict(block_size=16, block_buffer=5, block_seeds=11, block_wins=4, acc_block=0.91234)
    assert figure_text("C9", {**DOCS["C9"], **reads}).endswith(
        "; block shuffle (issue 15): an epoch of batches of 3 from .npy files (N=7, page cache dropped) in blocks of 9 "
        "contiguous rows read x2.35 as fast as in fully shuffled order with preadv, x0.88 through a memory map; its "
        "convergence cost is under C11")
    assert figure_text("C11", {**DOCS["C11"], **conv}).endswith(
        "; block shuffle (issue 15) in blocks of 16 contiguous rows, shuffle buffer 5, same data: lower full-data loss "
        "than no shuffle in 4/11 seeds, mean accuracy 0.912; its cold-cache speed-up is under C9")


@pytest.mark.parametrize("cid", list(REPORTED))
def test_block_figures_missing_one_are_left_out_and_never_pending(cid):
    """Without any one of them the block text is left out, and the claim keeps its verdict and own text (not pending)."""
    for key in REPORTED[cid]:
        partial = {**DOCS[cid], **{k: v for k, v in REPORTED[cid].items() if k != key}}
        assert claims.decide(cid, partial) == claims.decide(cid, DOCS[cid]), key


@pytest.mark.parametrize("cid", list(REPORTED))
def test_block_figures_alone_leave_the_claim_pending(cid):
    """Block shuffle's figures without the claim's own: pending, naming the claim's missing figures only."""
    assert claims.decide(cid, REPORTED[cid]) == ("pending", "missing figures: " + ", ".join(claims.CLAIMS[cid].needs))


@pytest.mark.parametrize("cid", list(REPORTED))
def test_reports_read_exactly_their_figures(cid):
    """With its reports' figures recorded, a claim reads its needs and those figures, and no other."""
    figures = _Reads({**DOCS[cid], **REPORTED[cid], "unrelated_figure": 1.0})
    claims.decide(cid, figures)
    assert figures.read == set(claims.CLAIMS[cid].needs) | set(REPORTED[cid])
    assert {k for r in claims.CLAIMS[cid].reports for k in r.needs} == set(REPORTED[cid])
    assert [c for c in claims.CLAIMS if claims.CLAIMS[c].reports] == list(REPORTED)


# --- C5, C6, C7, C8: every case checked --------------------------------------------------------


@pytest.mark.parametrize(("figures", "expected"), [
    pytest.param(dict(pairs=6, pairs_ok=6), HOLDS, id="all-6"),
    pytest.param(dict(pairs=1, pairs_ok=1), HOLDS, id="the-only-one"),
    pytest.param(dict(pairs=6, pairs_ok=5), REFUTED, id="one-short"),
    pytest.param(dict(pairs=6, pairs_ok=0), REFUTED, id="none"),
    pytest.param(dict(pairs=0, pairs_ok=0), REFUTED, id="nothing-tried"),
])
def test_c5_rule(figures, expected):
    """C5 holds only if at least one pairing was tried and every pairing yielded its dataset's samples."""
    assert claims.decide("C5", figures)[0] == expected


def test_c5_figure_text():
    """C5's text reports the good pairings out of those tried."""
    assert figure_text("C5", dict(pairs=6, pairs_ok=4)) == "4/6 dataset x loader pairings yielded every sample of their dataset"


@pytest.mark.parametrize(("figures", "expected"), [
    pytest.param(dict(indices_checked=2000, mismatches=0), HOLDS, id="all-2000"),
    pytest.param(dict(indices_checked=1, mismatches=0), HOLDS, id="the-only-one"),
    pytest.param(dict(indices_checked=2000, mismatches=1), REFUTED, id="one-wrong"),
    pytest.param(dict(indices_checked=2000, mismatches=2000), REFUTED, id="all-wrong"),
    pytest.param(dict(indices_checked=0, mismatches=0), REFUTED, id="nothing-checked"),
])
def test_c6_rule(figures, expected):
    """C6 holds only if at least one index was checked and none returned a wrong pair."""
    assert claims.decide("C6", figures)[0] == expected


def test_c6_figure_text():
    """C6's text reports the indices checked and the wrong pairs."""
    assert figure_text("C6", dict(indices_checked=2000, mismatches=3)) == (
        "2000 indices (positive and negative) checked, 3 returned a wrong pair")


C7 = dict(sources=5, sources_ok=5, bad_inputs=26, bad_inputs_refused=26)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="all-served-all-refused"),
    pytest.param(dict(sources=1, sources_ok=1, bad_inputs=1, bad_inputs_refused=1), HOLDS, id="one-of-each"),
    pytest.param(dict(bad_inputs=0, bad_inputs_refused=0), HOLDS, id="no-bad-input-tried"),
    pytest.param(dict(bad_inputs_refused=25), C7_WELL_FORMED, id="one-bad-input-accepted"),
    pytest.param(dict(bad_inputs_refused=0), C7_WELL_FORMED, id="no-bad-input-refused"),
    pytest.param(dict(sources_ok=4), REFUTED, id="one-source-failed"),
    pytest.param(dict(sources_ok=4, bad_inputs_refused=0), REFUTED, id="one-source-failed-no-bad-input-refused"),
    pytest.param(dict(sources=0, sources_ok=0), REFUTED, id="no-source-tried"),
])
def test_c7_rule(changes, expected):
    """C7 holds if every source served all its samples and every malformed input was refused; only for well-formed input if just the first; else refuted."""
    assert verdict("C7", C7, **changes) == expected


def test_c7_figure_text():
    """C7's text reports sources served and malformed inputs refused, each out of those tried."""
    assert figure_text("C7", dict(sources=5, sources_ok=4, bad_inputs=26, bad_inputs_refused=25)) == (
        "4/5 kinds of source (npy, CSV, image folder, sensor windows, video clips) served every sample through a "
        "DataLoader with 0 and 2 workers; 25/26 malformed inputs refused with an error naming the file")


C8 = dict(norm_mean_abs_max=1e-9, norm_std_err_max=2e-9, norm_tolerance=1e-5, augment_epochs=5, augment_reproduced=5,
          stored_data_changed=0)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="all-good"),
    pytest.param(dict(norm_mean_abs_max=1e-5, norm_std_err_max=1e-5), HOLDS, id="both-exactly-at-tolerance"),
    pytest.param(dict(norm_mean_abs_max=above(1e-5)), REFUTED, id="mean-just-over-tolerance"),
    pytest.param(dict(norm_std_err_max=above(1e-5)), REFUTED, id="std-just-over-tolerance"),
    pytest.param(dict(augment_reproduced=4), REFUTED, id="one-epoch-not-reproduced"),
    pytest.param(dict(augment_reproduced=6), REFUTED, id="more-reproduced-than-tried"),
    pytest.param(dict(stored_data_changed=1), REFUTED, id="stored-data-changed"),
])
def test_c8_rule(changes, expected):
    """C8 holds only if |mean| and |std - 1| are within the tolerance, every epoch reproduced and the stored data is unchanged."""
    assert verdict("C8", C8, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C8"], "one transform= argument: normalized features had |mean| <= 9.1e-10 and |std - 1| <= "
                 "1.8e-09 (tolerance 1e-05); seeded augmentation reproduced in 5/5 epochs (workers 0 and 2); stored "
                 "data unchanged", id="docs"),
    pytest.param({**C8, "norm_mean_abs_max": 3e-4, "norm_std_err_max": 4e-6, "augment_reproduced": 2,
                  "augment_epochs": 3, "stored_data_changed": 1},
                 "one transform= argument: normalized features had |mean| <= 3.0e-04 and |std - 1| <= 4.0e-06 "
                 "(tolerance 1e-05); seeded augmentation reproduced in 2/3 epochs (workers 0 and 2); stored data "
                 "changed", id="distinct-figures"),
])
def test_c8_figure_text(figures, text):
    """C8's text reports both normalization errors, the tolerance, the epochs reproduced and whether the data changed."""
    assert figure_text("C8", figures) == text


# --- C10: a budget smaller than the data --------------------------------------------------------

C10 = dict(DOCS["C10"], data_bytes_per_sample=1000, accumulated_bytes_per_sample=20)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, C10_NAIVE, id="accumulation-fits"),
    pytest.param(dict(data_bytes=16 * MIB), C10_NAIVE, id="budget-exactly-2x-smaller"),
    pytest.param(dict(data_bytes=below(16 * MIB)), REFUTED, id="budget-just-under-2x-smaller"),
    pytest.param(dict(minibatch_within_budget=0), REFUTED, id="minibatch-failed"),
    pytest.param(dict(full_batch_out_of_memory=0), REFUTED, id="full-batch-fit"),
    pytest.param(dict(minibatch_within_budget=0, accumulated_within_budget=0), REFUTED,
                 id="minibatch-and-accumulation-failed"),
    pytest.param(dict(accumulated_within_budget=0), HOLDS, id="accumulation-failed"),
    pytest.param(dict(accumulated_bytes_per_sample=100), C10_NAIVE, id="accumulation-exactly-10%"),
    pytest.param(dict(accumulated_bytes_per_sample=above(100)), HOLDS, id="accumulation-just-over-10%"),
    pytest.param(dict(accum_rel_error=below(1e-5)), C10_NAIVE, id="rel-error-just-under-1e-5"),
    pytest.param(dict(accum_rel_error=1e-5), HOLDS, id="rel-error-exactly-1e-5"),
    pytest.param(dict(naive_rel_error=0.0, pread_rss_fraction=0.9, memmap_rss_fraction=0.0), C10_NAIVE,
                 id="reported-only-figures"),
])
def test_c10_rule(changes, expected):
    """C10 holds if mini-batch fits a budget >= 2x smaller than the data and full-batch does not; only against naive full-batch if exact accumulation fits too."""
    assert verdict("C10", C10, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C10"], "32 MiB of data, 8 MiB private-memory budget (4x smaller): a mini-batch epoch from a lazy "
                 "dataset completed, peak RSS up 3.8% of the data size (preadv; 105% through memmaps, reclaimable page "
                 "cache); full-batch raised MemoryError. Full-batch GD's exact gradient accumulated over micro-batches "
                 "weighted by size/N (rel. error 6.0e-07; naive averaging off by >= 2.2e-03 in 20 seeds) completed "
                 "within the same budget, its peak RSS growing 0 B/sample", id="docs"),
    pytest.param({**DOCS["C10"], "data_bytes": 48 * MIB, "budget_bytes": 16 * MIB, "minibatch_within_budget": 0,
                  "full_batch_out_of_memory": 0, "accumulated_within_budget": 0, "pread_rss_fraction": 0.1234,
                  "memmap_rss_fraction": 0.5, "accum_rel_error": 3e-3, "naive_rel_error": 4e-2, "gradient_seeds": 7,
                  "accumulated_bytes_per_sample": 2048},
                 "48 MiB of data, 16 MiB private-memory budget (3x smaller): a mini-batch epoch from a lazy dataset "
                 "failed, peak RSS up 12.3% of the data size (preadv; 50% through memmaps, reclaimable page cache); "
                 "full-batch fit. Full-batch GD's exact gradient accumulated over micro-batches weighted by size/N "
                 "(rel. error 3.0e-03; naive averaging off by >= 4.0e-02 in 7 seeds) failed within the same budget, "
                 "its peak RSS growing 2048 B/sample", id="distinct-figures"),
])
def test_c10_figure_text(figures, text):
    """C10's text reports data and budget in MiB, their ratio, each run's outcome, the RSS fractions and the gradient errors."""
    assert figure_text("C10", figures) == text


# --- C12, C13: speed ------------------------------------------------------------------------------

C12 = dict(latency_ms=10, latency_n=96, latency_speedup_w2=1.8, memory_n=1000, memory_speedup_w2=1.2, cores=2,
           rounds=3, disturbed=0)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="both-faster"),
    pytest.param(dict(latency_speedup_w2=1.3, memory_speedup_w2=1.0), HOLDS, id="exactly-1.3-and-1.0"),
    pytest.param(dict(memory_speedup_w2=below(1.0)), C12_REAL_WORK, id="memory-just-under-1.0"),
    pytest.param(dict(latency_speedup_w2=1.3, memory_speedup_w2=0.1), C12_REAL_WORK, id="exactly-1.3-memory-slower"),
    pytest.param(dict(latency_speedup_w2=below(1.3)), REFUTED, id="latency-just-under-1.3"),
    pytest.param(dict(latency_speedup_w2=below(1.3), memory_speedup_w2=0.1), REFUTED,
                 id="latency-just-under-1.3-memory-slower"),
    pytest.param(dict(latency_speedup_w2=0.5, memory_speedup_w2=3.0), REFUTED, id="only-memory-faster"),
    pytest.param(dict(disturbed=1), f"undecided: disturbed run (the figures would say: {HOLDS})", id="disturbed-holds"),
    pytest.param(dict(disturbed=2, latency_speedup_w2=below(1.3)), f"undecided: disturbed run (the figures would say: "
                 f"{REFUTED})", id="disturbed-refuted"),
    pytest.param(dict(rounds=8, memory_speedup_w2=0.1), C12_REAL_WORK, id="eight-rounds-clean"),
])
def test_c12_rule(changes, expected):
    """C12 holds if 2 workers give >= 1.3x on expensive samples and >= 1.0x in memory; only for expensive samples if < 1.0x in memory; else refuted."""
    assert verdict("C12", C12, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param({**DOCS["C12"], **C12_WAIT}, "training epoch with 2 workers vs none: x1.54 when every sample costs "
                 "10 ms of waiting (simulated with time.sleep, N=96); x0.03 on the tutorial's in-memory tensors "
                 "(N=1000); worker start-up counted, 2 CPU cores; fastest epoch of 3 interleaved rounds; its cleanest "
                 "epochs waited 8% of their time for a CPU", id="docs"),
    pytest.param(dict(latency_ms=2.5, latency_n=64, latency_speedup_w2=1.234, memory_n=500, memory_speedup_w2=0.987,
                      cores=16, rounds=7, disturbed=0, cpu_wait=0.1234),
                 "training epoch with 2 workers vs none: x1.23 when every sample costs 2.5 ms of waiting (simulated "
                 "with time.sleep, N=64); x0.99 on the tutorial's in-memory tensors (N=500); worker start-up counted, "
                 "16 CPU cores; fastest epoch of 7 interleaved rounds; its cleanest epochs waited 12% of their time for "
                 "a CPU", id="distinct-figures"),
    pytest.param({**DOCS["C12"], "disturbed": 2, "cpu_wait": 0.25},
                 "training epoch with 2 workers vs none: x1.54 when every sample costs 10 ms of waiting "
                 "(simulated with time.sleep, N=96); x0.03 on the tutorial's in-memory tensors (N=1000); worker "
                 "start-up counted, 2 CPU cores; fastest epoch of 3 interleaved rounds; its cleanest epochs waited 25% "
                 "of their time for a CPU; disturbed run: 2 disturbance check(s) failed, figures not trusted",
                 id="disturbed"),
])
def test_c12_figure_text(figures, text):
    """C12's text reports both speed-ups, the latency, both sizes and the cores."""
    assert figure_text("C12", figures) == text


C13 = dict(steps=313, out_of_order=0, n=10_000, batch_size=32, dataloader_loop_samples_per_s=1.5e6,
           permute_slice_loop_samples_per_s=2e6, dataloader_samples_per_s=1.5e6, permute_slice_samples_per_s=2e6,
           disturbed=0)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, HOLDS, id="step-75%-feed-75%"),
    pytest.param(dict(dataloader_loop_samples_per_s=1e6), HOLDS, id="step-exactly-50%"),
    pytest.param(dict(dataloader_samples_per_s=1e6), HOLDS, id="feed-exactly-50%"),
    pytest.param(dict(dataloader_samples_per_s=below(1e6)), C13_STEP, id="feed-just-under-50%"),
    pytest.param(dict(dataloader_samples_per_s=0.05e6), C13_STEP, id="feed-2.5%-step-75%"),
    pytest.param(dict(dataloader_loop_samples_per_s=below(1e6)), C13_PER_SAMPLE, id="step-just-under-50%"),
    pytest.param(dict(dataloader_loop_samples_per_s=0.1e6, dataloader_samples_per_s=1.9e6), C13_PER_SAMPLE,
                 id="step-5%-feed-fast"),
    pytest.param(dict(out_of_order=1), C13_REFUTED, id="one-batch-out-of-order"),
    pytest.param(dict(out_of_order=313, dataloader_loop_samples_per_s=0.05e6), C13_REFUTED, id="out-of-order-and-slow"),
    pytest.param(dict(disturbed=1, dataloader_loop_samples_per_s=below(1e6)),
                 f"undecided: disturbed run (the figures would say: {C13_PER_SAMPLE})", id="disturbed-step-under-50%"),
    pytest.param(dict(disturbed=1, out_of_order=1), f"undecided: disturbed run (the figures would say: {C13_REFUTED})",
                 id="disturbed-out-of-order"),
])
def test_c13_rule(changes, expected):
    """C13 is refuted if any batch left the sampler's order; else the training loop's step rate decides (>= 50% of the slice-fed loop holds), and the feed alone only words the verdict."""
    assert verdict("C13", C13, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C13"], "313 training steps each got the sampler's next batch (0 out of order); the tutorial's "
                 "training loop (N=10000, F=3, B=32) fed by torch's DataLoader ran 56% of the steps per CPU second of the "
                 "same loop fed by permuting once and slicing (median step, the two loops stepping in turn); the feed alone, without the model: "
                 "DataLoader 3.0% of the permute-and-slice bound (13.0 M samples/s)", id="docs"),
    # Rates just past a rounding edge in millions (4.050002): a divisor other than 1e6 shows.
    pytest.param(dict(steps=40, out_of_order=3, n=5000, batch_size=128, dataloader_loop_samples_per_s=3_215_002,
                      permute_slice_loop_samples_per_s=4_050_002, dataloader_samples_per_s=1e6,
                      permute_slice_samples_per_s=4_050_002, disturbed=0),
                 "40 training steps each got the sampler's next batch (3 out of order); the tutorial's training loop "
                 "(N=5000, F=3, B=128) fed by torch's DataLoader ran 79% of the steps per CPU second of the same loop fed "
                 "by permuting once and slicing (median step, the two loops stepping in turn); the feed alone, without the model: DataLoader 24.7% of "
                 "the permute-and-slice bound (4.1 M samples/s)", id="distinct-figures"),
])
def test_c13_figure_text(figures, text):
    """C13's text reports steps, batches out of order, N and B, the step-rate ratio and the feed-only ratio with the bound's rate."""
    assert figure_text("C13", figures) == text


# --- C14: DataLoader is not needed -------------------------------------------------------------

C14 = dict(seeds=5, max_weight_diff=0.0, tolerance=1e-6)


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({}, C14_REFUTED, id="bitwise-equal"),
    pytest.param(dict(max_weight_diff=1e-6), C14_REFUTED, id="exactly-at-tolerance"),
    pytest.param(dict(max_weight_diff=above(1e-6)), HOLDS, id="just-over-tolerance"),
    pytest.param(dict(max_weight_diff=0.5), HOLDS, id="far-off"),
])
def test_c14_rule(changes, expected):
    """C14 is refuted when training without a DataLoader lands within the tolerance of DataLoader-fed training; else it holds."""
    assert verdict("C14", C14, **changes) == expected


@pytest.mark.parametrize(("figures", "text"), [
    pytest.param(DOCS["C14"], "mini-batch GD fed by a plain loop of tensor slices (no DataLoader) ended 0.0e+00 away "
                 "(max abs weight difference) from DataLoader-fed training over the same batches, in 5 seeds", id="docs"),
    pytest.param(dict(seeds=3, max_weight_diff=2.46e-3, tolerance=1e-6),
                 "mini-batch GD fed by a plain loop of tensor slices (no DataLoader) ended 2.5e-03 away (max abs "
                 "weight difference) from DataLoader-fed training over the same batches, in 3 seeds",
                 id="distinct-figures"),
])
def test_c14_figure_text(figures, text):
    """C14's text reports the largest weight difference and the seeds."""
    assert figure_text("C14", figures) == text


# --- disturbed runs: timed claims undecided ---------------------------------------------------

def test_only_the_timed_claims_can_be_disturbed():
    """C12 and C13, the claims decided by timings, need the disturbance count; other claims ignore a 'disturbed' figure."""
    assert [cid for cid, c in claims.CLAIMS.items() if "disturbed" in c.needs] == ["C12", "C13"]
    assert claims.decide("C5", {**DOCS["C5"], "disturbed": 1}) == claims.decide("C5", DOCS["C5"])


def test_a_disturbed_run_names_the_failed_checks_after_the_figures():
    """Disturbed, the verdict is 'undecided: disturbed run (the figures would say: ...)' and the text ends with the count."""
    v, text = claims.decide("C13", {**DOCS["C13"], "disturbed": 3})
    assert v == claims.DISTURBED + f" (the figures would say: {C13_STEP})"
    assert text == figure_text("C13", DOCS["C13"]) + "; disturbed run: 3 disturbance check(s) failed, figures not trusted"


# --- decide: pending, unknown ids, the figures each rule reads ---------------------------------


@pytest.mark.parametrize("cid", list(claims.CLAIMS))
@pytest.mark.parametrize("figures", [None, {}], ids=["None", "empty"])
def test_claim_with_no_figures_is_pending(cid, figures):
    """A claim with no figures this run is pending, 'not measured in this run'."""
    assert claims.decide(cid, figures) == ("pending", "not measured in this run")


@pytest.mark.parametrize("cid", list(claims.CLAIMS))
def test_claim_missing_a_figure_is_pending_naming_it(cid):
    """Without any one of the figures its rule needs, a claim is pending and the text names the missing figure."""
    for key in claims.CLAIMS[cid].needs:
        partial = {k: v for k, v in DOCS[cid].items() if k != key}
        assert claims.decide(cid, partial) == ("pending", f"missing figures: {key}"), key


def test_missing_figures_are_named_in_the_order_the_claim_needs_them():
    """Several missing figures are listed, comma-separated, in the order of the claim's needs."""
    assert claims.decide("C2", {"seeds": 30, "updates": 160}) == (
        "pending", "missing figures: epochs, epoch_wins, equal_update_wins, equal_update_loss_ratio")


class _Reads(Mapping):
    """A mapping that remembers which keys were read (``in`` checks, as decide's for missing figures, do not count)."""

    def __init__(self, data: dict) -> None:
        self.data, self.read = data, set()

    def __getitem__(self, key):
        self.read.add(key)
        return self.data[key]

    def __contains__(self, key):
        return key in self.data

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


@pytest.mark.parametrize("cid", list(claims.CLAIMS))
def test_rule_reads_exactly_the_figures_it_needs(cid):
    """Each rule reads every figure listed in its needs and no other (so a missing one is pending, never a KeyError)."""
    figures = _Reads({**DOCS[cid], "unrelated_figure": 1.0})
    claims.decide(cid, figures)
    assert figures.read == set(claims.CLAIMS[cid].needs)
    assert set(DOCS[cid]) == set(claims.CLAIMS[cid].needs)


def test_unknown_claim_id_raises_key_error():
    """decide refuses an id that is not in the ledger."""
    with pytest.raises(KeyError):
        claims.decide("C16", {"seeds": 1})
    with pytest.raises(KeyError):
        claims.decide("c2", DOCS["C2"])


def test_ledger_lists_fifteen_claims_in_order():
    """The ledger holds C1 ... C15 in order, each under its own id, with its quote and rule."""
    assert list(claims.CLAIMS) == [f"C{i}" for i in range(1, 16)]
    assert all(c.id == cid and c.quote and c.rule for cid, c in claims.CLAIMS.items())


# --- claim_figures against a comparison trained and counted by hand -------------------------------

# A large step size, so that in 6 seeds each count lands strictly between 0 and 6 and full-batch's
# loss sometimes rises: every count below can be off in either direction.
N, B, EPOCHS, LR, SEEDS = 48, 16, 4, 50.0, range(6)


def _hand_data(seed):
    """The tutorial's data, drawn here: X ~ N(0, 1), y = 1 where the features sum above 0."""
    X = torch.randn(N, 3, generator=torch.Generator().manual_seed(seed))
    return X, (X.sum(1) > 0).long()


def _hand_model(seed):
    """Linear(3, 2) with U(-1/sqrt(3), 1/sqrt(3)) weights then bias, from a generator seeded with ``seed``."""
    g, bound = torch.Generator().manual_seed(seed), 1 / math.sqrt(3)
    model = nn.utils.skip_init(nn.Linear, 3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.empty(2, 3).uniform_(-bound, bound, generator=g))
        model.bias.copy_(torch.empty(2).uniform_(-bound, bound, generator=g))
    return model


def _perms(seed):
    return [torch.randperm(N, generator=torch.Generator().manual_seed(100 * seed + e)) for e in range(EPOCHS)]


class _Slices:
    """A loader: each epoch the next precomputed permutation, cut into batches of B."""

    def __init__(self, X, y, perms):
        self.X, self.y, self.perms, self.epoch = X, y, perms, 0

    def __iter__(self):
        order = self.perms[self.epoch]
        self.epoch += 1
        return ((self.X[i], self.y[i]) for i in order.split(B))


def _train(model, batches_per_epoch, X, y):
    """SGD(lr) on CrossEntropyLoss: (per-update losses, full-data loss before training and after each epoch,
    full-data loss before training and after each update)."""
    loss_fn, opt = nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=LR)
    with torch.no_grad():
        updates, epochs = [], [float(loss_fn(model(X), y))]
    path = [epochs[0]]
    for batches in batches_per_epoch:
        for xb, yb in batches:
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            updates.append(float(loss.detach()))
            with torch.no_grad():
                path.append(float(loss_fn(model(X), y)))
        with torch.no_grad():
            epochs.append(float(loss_fn(model(X), y)))
    return updates, epochs, path


def _hand_figures(seed):
    X, y = _hand_data(seed)
    full = _train(_hand_model(seed), [[(X, y)]] * EPOCHS, X, y)
    perms = _perms(seed)
    mini = _train(_hand_model(seed), [[(X[i], y[i]) for i in p.split(B)] for p in perms], X, y)
    full_eq = _train(_hand_model(seed), [[(X, y)]] * len(mini[0]), X, y)
    return full, mini, full_eq


def _rough(losses):
    """Total variation over net decrease; a path that did not decrease divides by 1e-12 (as rough as it gets)."""
    return sum(abs(losses[i + 1] - losses[i]) for i in range(len(losses) - 1)) / max(losses[0] - losses[-1], 1e-12)


def test_seed_data_and_model_are_the_tutorials():
    """make_seed_data and make_model give the data and initial weights drawn here by hand."""
    for seed in SEEDS:
        X, y = make_seed_data(N, 3, seed)
        hx, hy = _hand_data(seed)
        assert torch.equal(X, hx) and torch.equal(y, hy)
        model, hand = make_model(3, 2, seed), _hand_model(seed)
        assert torch.equal(model[0].weight, hand.weight) and torch.equal(model[0].bias, hand.bias)


def test_claim_figures_match_a_comparison_counted_by_hand():
    """claim_figures of compare() runs equals the C2, C3, C4 and C15 figures computed here from hand-trained runs."""
    runs = [compare(n=N, batch_size=B, epochs=EPOCHS, lr=LR, seed=s,
                    loader_factory=lambda ds, seed=s, **kw: _Slices(ds.X, ds.y, _perms(seed))) for s in SEEDS]
    got = experiments.claim_figures(runs)
    hand = [_hand_figures(s) for s in SEEDS]
    for r, (full, mini, full_eq) in zip(runs, hand):
        assert r.full.epoch_loss == pytest.approx(full[1], rel=1e-6)
        assert r.mini.update_losses == pytest.approx(mini[0], rel=1e-6)
        assert r.full_equal_updates.update_losses == pytest.approx(full_eq[0], rel=1e-6)
    seeds, updates = len(SEEDS), EPOCHS * N // B
    assert all(len(m[0]) == updates and len(fe[0]) == updates for _, m, fe in hand)
    end = {k: [h[i][1][-1] for h in hand] for i, k in enumerate(("full", "mini", "full_eq"))}
    mini_wins = sum(m < f for m, f in zip(end["mini"], end["full"]))
    eq_wins = sum(m < f for m, f in zip(end["mini"], end["full_eq"]))
    mini_rough = [_rough(m[2]) for _, m, _ in hand]
    full_rough = [_rough(fe[2]) for _, _, fe in hand]
    falls = lambda losses: all(b < a for a, b in zip(losses, losses[1:]))  # noqa: E731
    rises = sum(b > a for f, _, fe in hand for h in (f, fe) for a, b in zip(h[1], h[1][1:]))
    expected = {
        "C2": dict(seeds=seeds, epochs=EPOCHS, updates=updates, epoch_wins=mini_wins, equal_update_wins=eq_wins,
                   equal_update_loss_ratio=statistics.median(m / f for m, f in zip(end["mini"], end["full_eq"]))),
        "C3": dict(seeds=seeds, updates=updates, mini_roughness=statistics.median(mini_rough),
                   full_roughness=statistics.median(full_rough),
                   mini_smoother=sum(m < f - 1e-9 for m, f in zip(mini_rough, full_rough)),
                   mini_monotone=sum(falls(m[2]) for _, m, _ in hand),
                   full_monotone=sum(falls(fe[2]) for _, _, fe in hand),
                   batch_loss_roughness=statistics.median(_rough(m[0]) for _, m, _ in hand)),
        "C4": dict(seeds=seeds, epochs=EPOCHS, full_behind_per_epoch=sum(f > m for f, m in zip(end["full"], end["mini"])),
                   full_loss_increases=rises, full_updates=seeds * (EPOCHS + updates)),
        "C15": dict(seeds=seeds, full_behind_per_epoch=sum(f > m for f, m in zip(end["full"], end["mini"])),
                    full_behind_per_update=sum(f > m for f, m in zip(end["full_eq"], end["mini"]))),
    }
    assert set(got) == set(expected)
    for cid, figures in expected.items():
        assert set(got[cid]) == set(figures) == set(claims.CLAIMS[cid].needs), cid
        for key, value in figures.items():
            assert got[cid][key] == pytest.approx(value, rel=1e-5), f"{cid} {key}: {got[cid][key]} != {value}"
    counts = [expected[c][k] for c, k in [("C2", "epoch_wins"), ("C2", "equal_update_wins"), ("C3", "mini_smoother"),
                                          ("C3", "mini_monotone"), ("C3", "full_monotone"),
                                          ("C4", "full_behind_per_epoch"), ("C15", "full_behind_per_update")]]
    assert all(0 < c < seeds for c in counts) and rises > 0, f"a count at 0 or {seeds} checks one direction only: {expected}"
