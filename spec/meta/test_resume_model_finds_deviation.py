"""The model-based resume spec finds what it is for.

spec/conformance/test_resume_model.py runs in-process (pytester) against a loader, with
the "meta" hypothesis profile (15 examples, no shrinking): it must fail with
``ResumeDiverged`` against torchdata's StatefulDataLoader (its shared-generator
deviation, found on its own) and against each broken resumable loader of
spec/meta/broken_loaders.py (``SavedStateChanged`` for the one whose state changes after
it was returned), and pass against batchfeed's TensorLoader and against StatefulDataLoader
with the work-around (the sampler's own generator), which pins the failure on the shared
generator.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

SPEC = Path(__file__).resolve().parents[1]
MODULE = str(SPEC / "conformance" / "test_resume_model.py")

BROKEN = {
    "resume_restarts_the_epoch": "ResumeDiverged",
    "resume_ignores_the_generator_state": "ResumeDiverged",
    "state_dict_is_live": "SavedStateChanged",
}


def statefuldataloader_own_sampler_generator(dataset, shuffle=False, generator=None, **kw):
    """StatefulDataLoader with the work-around of docs/parallel.md: when shuffling, the sampler
    gets a generator of its own (seeded with ``generator``'s seed) and the loader another."""
    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import RandomSampler

    if shuffle:
        seed = generator.initial_seed() if generator is not None else 0
        kw["sampler"] = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        generator = torch.Generator().manual_seed(seed + 1)
    return StatefulDataLoader(dataset, generator=generator, **kw)


def needs_torchdata() -> None:
    if importlib.util.find_spec("torchdata") is None:
        pytest.skip("torchdata is not installed (pip install 'batchfeed[test]')")


def run_model(pytester: pytest.Pytester, loader: str):
    """(passed, failed) reports of the state-machine module run against ``loader``."""
    reprec = pytester.inline_run(
        MODULE, f"--loader={loader}", "--hypothesis-profile=meta",
        "-p", "no:cacheprovider", "-q", "--rootdir", str(SPEC.parent),
    )
    passed, skipped, failed = reprec.listoutcomes()
    assert not skipped, f"{loader}: skipped: {[str(r.longrepr) for r in skipped]}"
    return passed, failed


def assert_fails_with(loader: str, passed, failed, exception: str = "ResumeDiverged") -> None:
    __tracebackhide__ = True
    assert not passed and len(failed) == 1, f"{loader}: expected the state machine to fail, passed {len(passed)}"
    text = str(failed[0].longrepr)
    assert f"test_resume_model.{exception}: " in text, f"{loader}: failed, but not with {exception}:\n{text[-3000:]}"


@pytest.mark.uses_global_rng
def test_state_machine_finds_torchdatas_shared_generator_deviation(pytester):
    """Against StatefulDataLoader(shuffle=True, generator=g) it fails with ResumeDiverged: epochs after a restore differ."""
    needs_torchdata()
    loader = "torchdata.stateful_dataloader:StatefulDataLoader"
    passed, failed = run_model(pytester, loader)
    assert_fails_with(loader, passed, failed)
    text = str(failed[0].longrepr)
    assert "shuffle=True" in text, f"the deviation needs shuffle=True, but the failing case was:\n{text[-3000:]}"


@pytest.mark.uses_global_rng
def test_state_machine_passes_statefuldataloader_with_its_own_sampler_generator(pytester):
    """With the work-around (the sampler's own generator) StatefulDataLoader passes: the failure is the shared generator."""
    needs_torchdata()
    passed, failed = run_model(pytester, f"{__name__}:statefuldataloader_own_sampler_generator")
    assert not failed, f"the work-around failed the state machine:\n{str(failed[0].longrepr)[-3000:]}"
    assert len(passed) == 1


@pytest.mark.uses_global_rng
def test_state_machine_passes_tensorloader(pytester):
    """batchfeed's TensorLoader passes the state machine."""
    passed, failed = run_model(pytester, "batchfeed:TensorLoader")
    assert not failed, f"TensorLoader failed the state machine:\n{str(failed[0].longrepr)[-3000:]}"
    assert len(passed) == 1


@pytest.mark.uses_global_rng
@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_state_machine_catches_broken_resume(pytester, broken):
    """A TensorLoader with one defect in state_dict / load_state_dict fails, with ResumeDiverged or SavedStateChanged."""
    loader = f"spec.meta.broken_loaders:{broken}"
    assert_fails_with(loader, *run_model(pytester, loader), BROKEN[broken])
