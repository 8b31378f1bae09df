"""The spec catches the deviations real loaders had and an earlier suite missed (issue 20):
a user's collate_fn replaced when batching, a constructor that reseeds torch's global RNG or
rewinds the generator it is given, a loader that waits forever once a worker died.

Each case runs the conformance tests named for the defect in-process (pytester) against the
broken loader of spec/meta/broken_loaders.py, and checks that each of them fails, while
torch's DataLoader passes the same selection (so the failures come from the defect).
"""

from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[1]
CONFORMANCE = SPEC / "conformance"

#: broken loader -> (the selection it runs: module, -k expression), tests that must fail.
CASES = {
    "replaces_collate_fn": (("test_collate.py", "collate_fn"),
                            ["test_collate_fn_makes_every_batch", "test_collate_fn_with_a_batch_sampler_gets_its_batches"]),
    "reseeds_at_construction": (("test_rng.py", "building or shared"),
                                ["test_building_a_loader_takes_nothing_from_its_generator",
                                 "test_building_a_loader_with_a_generator_leaves_the_global_rng_alone",
                                 "test_building_loaders_without_a_generator_never_resets_the_global_rng",
                                 "test_a_generator_shared_by_two_loaders_goes_on_where_the_first_left_it"]),
    # one exit code: the watchdog takes its 12 s for each case of a loader that hangs
    "hangs_when_a_worker_dies": (("test_parallel.py", "dead_worker and exit-1"),
                                 ["test_dead_worker_raises_runtime_error_without_hanging"]),
}


def run_selection(pytester: pytest.Pytester, loader: str, module: str, keyword: str):
    """``(failed test names, parameters stripped; their failure texts; passed count)``."""
    reprec = pytester.inline_run(
        str(CONFORMANCE / module), "-k", keyword, f"--loader={loader}", "--hypothesis-profile=meta",
        "-p", "no:cacheprovider", "-q", "--rootdir", str(SPEC.parent),
    )
    passed, _, failed = reprec.listoutcomes()
    names = {r.nodeid.split("::")[-1].split("[")[0] for r in failed}
    return names, "\n".join(str(r.longrepr) for r in failed), len(passed)


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("broken", sorted(CASES))
def test_reference_loader_passes_the_selection(pytester, broken):
    """torch's DataLoader passes every test the case expects the broken loader to fail."""
    (module, keyword), expected = CASES[broken]
    failed, text, passed = run_selection(pytester, "torch.utils.data:DataLoader", module, keyword)
    assert not failed, f"the reference loader failed {sorted(failed)}:\n{text[:2000]}"
    assert passed >= len(expected)


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("broken", sorted(CASES))
def test_spec_catches_the_deviation(pytester, broken):
    """The spec fails a loader with this defect, in every test named for it."""
    (module, keyword), expected = CASES[broken]
    failed, text, _ = run_selection(pytester, f"spec.meta.broken_loaders:{broken}", module, keyword)
    missing = [t for t in expected if t not in failed]
    assert not missing, f"{broken}: expected failures {missing} did not fail (failed: {sorted(failed)})"
    if broken == "hangs_when_a_worker_dies":
        assert "the loader hung after a worker died" in text, f"the failure does not say the loader hung:\n{text[:2000]}"
