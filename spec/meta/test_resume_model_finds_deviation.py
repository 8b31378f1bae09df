"""The model-based resume spec finds what it is for.

spec/conformance/test_resume_model.py runs in-process (pytester) against a loader, with
the "meta" hypothesis profile (15 examples, no shrinking): it must fail with
``ResumeDiverged`` against torchdata's StatefulDataLoader (its shared-generator
deviation, found on its own) and against each broken resumable loader of
spec/meta/broken_loaders.py, and pass against batchfeed's TensorLoader.
"""

import importlib.util
from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[1]
MODULE = str(SPEC / "conformance" / "test_resume_model.py")

BROKEN = ["resume_restarts_the_epoch", "resume_ignores_the_generator_state", "state_dict_is_live"]


def run_model(pytester: pytest.Pytester, loader: str):
    """(passed, failed) reports of the state-machine module run against ``loader``."""
    reprec = pytester.inline_run(
        MODULE, f"--loader={loader}", "--hypothesis-profile=meta",
        "-p", "no:cacheprovider", "-q", "--rootdir", str(SPEC.parent),
    )
    passed, skipped, failed = reprec.listoutcomes()
    assert not skipped, f"{loader}: skipped: {[str(r.longrepr) for r in skipped]}"
    return passed, failed


def assert_diverged(loader: str, passed, failed) -> None:
    __tracebackhide__ = True
    assert not passed and len(failed) == 1, f"{loader}: expected the state machine to fail, passed {len(passed)}"
    text = str(failed[0].longrepr)
    assert "ResumeDiverged" in text, f"{loader}: failed, but not with ResumeDiverged:\n{text[-3000:]}"


@pytest.mark.uses_global_rng
def test_state_machine_finds_torchdatas_shared_generator_deviation(pytester):
    """Against StatefulDataLoader(shuffle=True, generator=g) it fails with ResumeDiverged: epochs after a restore differ."""
    if importlib.util.find_spec("torchdata") is None:
        pytest.skip("torchdata is not installed (pip install 'batchfeed[test]')")
    loader = "torchdata.stateful_dataloader:StatefulDataLoader"
    passed, failed = run_model(pytester, loader)
    assert_diverged(loader, passed, failed)
    text = str(failed[0].longrepr)
    assert "shuffle=True" in text, f"the deviation needs shuffle=True, but the failing case was:\n{text[-3000:]}"


@pytest.mark.uses_global_rng
def test_state_machine_passes_tensorloader(pytester):
    """batchfeed's TensorLoader passes the state machine."""
    passed, failed = run_model(pytester, "batchfeed:TensorLoader")
    assert not failed, f"TensorLoader failed the state machine:\n{str(failed[0].longrepr)[-3000:]}"
    assert len(passed) == 1


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("broken", BROKEN)
def test_state_machine_catches_broken_resume(pytester, broken):
    """A TensorLoader with one defect in state_dict / load_state_dict fails with ResumeDiverged."""
    loader = f"spec.meta.broken_loaders:{broken}"
    assert_diverged(loader, *run_model(pytester, loader))
