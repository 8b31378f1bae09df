"""`batchfeed bench`'s judgement of a run: targets within the noise margin, impossible ratios
flagged as a disturbed run, and `--check`'s exit status. Synthetic measurements: what is
specified is the judgement, not this machine's speed."""

import pytest

from batchfeed import bench, throughput
from batchfeed.bench import format_table
from batchfeed.targets import NOISE_MARGIN, check_failures, disturbed
from batchfeed.throughput import Measurement

N, F, B = 1000, 3, 32


def _m(rival: str, seconds: float, group: str = "epoch", features: int = F, batch_size: int = B) -> Measurement:
    labels = throughput.TRAINING_RIVALS if group == "training" else throughput.RIVALS
    return Measurement(group, rival, labels[rival], N, features, batch_size, "cpu", N * (features + 2) * 4, N, [seconds])


def _epoch(tensorloader: float, dataloader: float = 1.0, bound: float = 0.01, copy: float = 0.001) -> list[Measurement]:
    return [_m("permute_slice", bound), _m("memcpy", copy), _m("dataloader", dataloader), _m("tensorloader", tensorloader)]


def test_a_dataloader_faster_than_permute_and_slice_marks_the_run_disturbed():
    """DataLoader does strictly more work than permute + slice: faster beyond the margin is impossible, and said so."""
    fine = _epoch(0.01, dataloader=0.01 * (1 + NOISE_MARGIN) ** -1 * 1.01)  # within the margin
    broken = [_m("permute_slice", 0.01, "training"), _m("dataloader", 0.01 / 2.83, "training")]
    assert disturbed(fine) == []
    [line] = disturbed(broken)
    assert "2.83x" in line and "training" in line
    table = format_table(broken)
    assert "DISTURBED RUN" in table and "2.83x" in table
    assert any("disturbed run" in f for f in check_failures(broken))


@pytest.mark.parametrize(("shortfall", "fails"), [(0.0, False), (NOISE_MARGIN * 0.9, False), (NOISE_MARGIN * 1.1, True)])
def test_check_fails_only_beyond_the_noise_margin(shortfall, fails):
    """A target missed by less than the noise margin passes --check (and is labelled so); missed by more, it fails."""
    ratio = 25.0 * (1 - shortfall)  # target: TensorLoader >= 25x DataLoader at F=3, B=32 on CPU
    rows = _epoch(tensorloader=1.0 / ratio, bound=1.0 / ratio)
    failures = [f for f in check_failures(rows) if "DataLoader default" in f]
    assert bool(failures) == fails, failures
    if 0 < shortfall <= NOISE_MARGIN:
        assert "within the noise margin" in format_table(rows)


def test_check_option_sets_the_exit_status(monkeypatch):
    """`batchfeed bench --check` returns 1 when check_failures finds anything, 0 otherwise; without --check, 0."""
    outcomes = {"bad": ["a target missed"], "good": []}
    for name, found in outcomes.items():
        monkeypatch.setattr(bench, "run", lambda args, out=None: [])
        monkeypatch.setattr(bench, "check_failures", lambda rows, found=found: found)
        assert bench.main(["--check"]) == (1 if found else 0), name
        assert bench.main([]) == 0, name


def test_bench_measures_on_one_thread_by_default_and_restores_torch(capsys):
    """Without --threads the measurement runs on 1 torch thread, the header says so, and torch's setting is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert bench.main(["--n", "512", "--features", "3", "--batch-size", "64", "--repeats", "1",
                                "--no-training", "--no-progress", "--rivals", "permute_slice"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "1 torch thread)" in capsys.readouterr().out.splitlines()[0]
