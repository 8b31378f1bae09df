"""The spec tests itself: run against a broken loader, the tests named for its defect fail.

Each case runs the loader-facing modules in-process (pytester) with
``--loader=spec.meta.broken_loaders:<name>`` and the "meta" hypothesis profile (few
examples, no shrinking), and checks two things: every expected test fails, and the correct
torch DataLoader passes the same selection (so the failures come from the defect).
"""

from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[1]
MODULES = [str(path) for name in ("test_batching.py", "test_shuffling.py") for path in SPEC.rglob(name)]

EXPECTED_FAILURES = {
    "drops_partial_last_batch": ["test_len_is_ceil_or_floor_of_n_over_b", "test_every_batch_but_the_last_is_full",
                                 "test_each_epoch_is_a_permutation_with_labels_aligned"],
    "same_order_every_epoch": ["test_consecutive_epochs_differ"],
    "ignores_generator": ["test_same_seed_reproduces_the_order_across_loaders"],
    # Position marginals stay uniform under replacement, so the chi-square test cannot see it;
    # the permutation tests must.
    "samples_with_replacement": ["test_each_epoch_is_a_permutation_with_labels_aligned",
                                 "test_labels_stay_aligned_when_shuffled"],
    "misaligns_labels": ["test_labels_stay_aligned_when_shuffled", "test_without_shuffle_batches_come_in_dataset_order"],
    "shuffles_within_blocks": ["test_no_block_local_shuffling", "test_shuffling_is_uniform_chi_square"],
}


def run_spec(pytester: pytest.Pytester, loader: str):
    """Failed test names (parameters stripped) when the loader-facing spec runs against ``loader``."""
    reprec = pytester.inline_run(
        *MODULES, f"--loader={loader}", "--hypothesis-profile=meta", "-m", "not claim",
        "-p", "no:cacheprovider", "-q", "--rootdir", str(SPEC.parent),
    )
    passed, skipped, failed = reprec.listoutcomes()
    return {r.nodeid.split("::")[-1].split("[")[0] for r in failed}, len(passed)


@pytest.mark.uses_global_rng
def test_reference_loader_passes_the_selection(pytester):
    """torch's DataLoader passes every test the meta cases expect to fail."""
    failed, passed = run_spec(pytester, "torch.utils.data:DataLoader")
    assert not failed, f"the reference loader failed {sorted(failed)}"
    assert passed > 10


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("broken", sorted(EXPECTED_FAILURES))
def test_spec_catches_broken_loader(pytester, broken):
    """The spec fails a loader with this defect, in the tests named for it."""
    failed, _ = run_spec(pytester, f"spec.meta.broken_loaders:{broken}")
    missing = [t for t in EXPECTED_FAILURES[broken] if t not in failed]
    assert not missing, f"{broken}: expected failures {missing} did not fail (failed: {sorted(failed)})"


REFUSING = ["refuses_every_dataset", "refuses_when_shuffling", "refuses_workers_undeclared", "refuses_generator"]


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("refusing", REFUSING)
def test_a_loader_that_refuses_undeclared_work_fails_the_conformance_run(pytester, refusing):
    """A loader that raises for work it never declared unsupported makes `pytest spec/conformance` exit 1, not skip to green."""
    reprec = pytester.inline_run(
        str(SPEC / "conformance"), f"--loader=spec.meta.broken_loaders:{refusing}", "--hypothesis-profile=meta",
        "-p", "no:cacheprovider", "-q", "-x", "--rootdir", str(SPEC.parent),
    )
    assert reprec.ret == pytest.ExitCode.TESTS_FAILED, f"{refusing}: the conformance run ended with {reprec.ret!r}"
    _, skipped, failed = reprec.listoutcomes()
    assert failed, f"{refusing}: nothing failed"
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        assert "declared unsupported" in reason or "CUDA" in reason, f"{refusing}: {report.nodeid} skipped: {reason}"
