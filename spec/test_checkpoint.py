"""Checkpoints: TensorLoader's state as plain JSON, and training (model + optimizer + loader)
stopped at a step and continued in a new process, bit for bit (batchfeed.checkpoint).

Whether a loader resumes at all is conformance (spec/conformance/test_resume.py, for the
loader under test); this module specifies batchfeed's own pieces.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from batchfeed import TensorLoader
from spec.helpers import IndexedDataset


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_tensorloader_state_survives_a_json_round_trip(shuffle):
    """TensorLoader's state is plain JSON: json.dumps then json.loads resumes exactly where it was saved."""
    def make():
        return TensorLoader(IndexedDataset(23, 2), batch_size=5, shuffle=shuffle, generator=torch.Generator().manual_seed(0))

    expected = [[b[1].tolist() for b in make()]]
    loader = make()
    it = iter(loader)
    head = [next(it)[1].tolist() for _ in range(2)]
    text = json.dumps(loader.state_dict())
    resumed = make()
    resumed.load_state_dict(json.loads(text))
    rest = [b[1].tolist() for b in resumed]
    assert head + rest == expected[0], f"after a JSON round trip: {head} + {rest}, expected {expected[0]}"


# --- training resume: model + optimizer + loader, continued in a new process -------------

TRAIN_STEPS, STOP_AT = 100, 45  # 1000 samples / 32 = 32 batches per epoch: stop in epoch 2, end in epoch 4


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_training_continued_in_a_new_process_ends_bit_identical(tmp_path):
    """Model, optimizer and loader state saved at step 45 and continued in a new process end with exactly the uninterrupted run's weights (TensorLoader and StatefulDataLoader)."""
    from batchfeed.checkpoint import RunConfig, train

    pytest.importorskip("torchdata.stateful_dataloader", reason="torchdata is not installed (pip install 'batchfeed[resume]')")
    loaders = {"batchfeed": "TensorLoader", "torchdata": "StatefulDataLoader"}
    full, args = {}, []
    for loader in loaders:
        config = RunConfig(steps=TRAIN_STEPS, loader=loader)
        model, steps = train(config)
        assert steps == TRAIN_STEPS
        full[loader] = model.state_dict()
        _, stopped = train(config, stop_at=STOP_AT, checkpoint=tmp_path / f"{loader}.pt")
        assert stopped == STOP_AT
        args += [str(tmp_path / f"{loader}.pt"), str(tmp_path / f"{loader}-weights.pt")]
    # One new process continues both runs (python + torch start-up is the cost here).
    script = ("import sys; from batchfeed.checkpoint import main\n"
              "for ckpt, out in zip(sys.argv[1::2], sys.argv[2::2]): main(['--resume', ckpt, '--out', out])")
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"the resuming process failed:\n{proc.stdout}\n{proc.stderr}"
    problems = []
    for loader, name in loaders.items():
        resumed = torch.load(tmp_path / f"{loader}-weights.pt", weights_only=True)
        different = [k for k in full[loader] if not torch.equal(full[loader][k], resumed[k])]
        if different:
            problems.append(f"{name}: {different} differ (max abs diff {_max_diff(full[loader], resumed):.3e})")
    assert not problems, f"resumed at step {STOP_AT} of {TRAIN_STEPS}, not bit-identical: {'; '.join(problems)}"


@pytest.mark.parametrize("forgotten", ["optimizer", "loader"])
def test_a_checkpoint_without_optimizer_or_loader_state_ends_elsewhere(tmp_path, forgotten):
    """Resuming without the optimizer's momentum or without the loader's position does not reproduce the run: both are needed."""
    from batchfeed.checkpoint import RunConfig, train

    config = RunConfig(steps=TRAIN_STEPS, loader="batchfeed")
    full, _ = train(config)
    train(config, stop_at=STOP_AT, checkpoint=tmp_path / "run.pt")
    restore = tuple(p for p in ("model", "optimizer", "loader") if p != forgotten)
    partial, _ = train(resume=tmp_path / "run.pt", restore=restore)
    diff = _max_diff(full.state_dict(), partial.state_dict())
    assert diff > 1e-4, f"resuming without the {forgotten} state ended only {diff:.1e} from the uninterrupted run"
