"""The ``batchfeed`` command: the tutorial's experiment as a table, and one-line errors."""

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from batchfeed import compare
from batchfeed.cli import main


def table_rows(out: str) -> list[list[str]]:
    """The numeric rows of the per-epoch table."""
    return [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]


def test_compare_prints_both_methods_per_epoch(capsys):
    """`batchfeed compare` prints, per epoch, each method's full-data loss and updates so far, from compare()."""
    assert main(["compare", "--n", "300", "--epochs", "3", "--batch-size", "50", "--seed", "4"]) == 0
    rows = table_rows(capsys.readouterr().out)
    expected = compare(n=300, epochs=3, batch_size=50, seed=4)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    for e, r in enumerate(rows):
        assert float(r[1]) == pytest.approx(expected.full.epoch_loss[e], abs=5e-5)
        assert int(r[2]) == e
        assert float(r[3]) == pytest.approx(expected.mini.epoch_loss[e], abs=5e-5)
        assert int(r[4]) == 6 * e


def test_compare_defaults_are_the_tutorials(capsys):
    """With no options the experiment is the tutorial's: N=1000, batch 32, lr 0.1, 5 epochs, 32 updates per epoch."""
    assert main(["compare"]) == 0
    out = capsys.readouterr().out
    assert "N=1000" in out and "batch size 32" in out and "lr 0.1" in out and "5 epochs" in out
    assert [int(r[4]) for r in table_rows(out)] == [0, 32, 64, 96, 128, 160]


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "x"], "--batch-size"),
        (["--lr", "-0.1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--n", "0"], "--n"),
        (["--epochs", "0"], "--epochs"),
        (["--seed", "-1"], "--seed"),
        (["--device", "tpu9"], "--device"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, argument):
    """A bad argument exits with status 2 and a one-line message naming it."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argument in err, f"stderr was {err!r}"


def test_cuda_without_a_gpu_says_so(capsys):
    """`--device cuda` without CUDA exits 2 saying torch sees no CUDA device."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_console_script_and_module_entry_point():
    """`batchfeed` is an installed console script and `python -m batchfeed` runs the same CLI."""
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("batchfeed") == "batchfeed.cli:main"
    proc = subprocess.run([sys.executable, "-m", "batchfeed", "compare", "--n", "64", "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(table_rows(proc.stdout)) == 2
