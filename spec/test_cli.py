"""The ``batchfeed`` command: the tutorial's experiment as a report, and one-line errors."""

import io
import json
import subprocess
import sys
from importlib.metadata import entry_points, version

import pytest
import torch

from batchfeed import cli, compare, make_model, make_seed_data, train_full_batch
from batchfeed.cli import main
from batchfeed.experiments import claim_results, run_compare

SMALL = ["--n", "300", "--epochs", "3", "--batch-size", "50", "--seed", "4"]


def table_rows(out: str) -> list[list[str]]:
    """The rows of the per-epoch table: the lines after the `epoch ...` header, up to the first blank line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["epoch"]) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_compare_prints_both_methods_per_epoch(capsys):
    """Per epoch and method the table shows compare()'s full-data loss, accuracy, updates, samples and a time."""
    assert main(["compare", *SMALL, "--no-memory"]) == 0
    rows = table_rows(capsys.readouterr().out)
    expected = compare(n=300, epochs=3, batch_size=50, seed=4)
    assert [int(r[0]) for r in rows] == [0, 1, 2, 3]
    for e, r in enumerate(rows):
        for h, (loss, acc, upd, samples, ms) in ((expected.full, r[1:6]), (expected.mini, r[6:11])):
            assert float(loss) == pytest.approx(h.epoch_loss[e], abs=5e-5), (h.method, e)
            assert float(acc) == pytest.approx(h.epoch_accuracy[e], abs=5e-4), (h.method, e)
            assert int(upd) == h.updates_so_far[e], (h.method, e)
            assert int(samples) == 300 * e, (h.method, e)
            assert float(ms) >= 0.0
        assert int(r[3]) == e and int(r[8]) == 6 * e
    times = [float(r[5]) for r in rows], [float(r[10]) for r in rows]
    assert all(t == sorted(t) for t in times), f"cumulative training times must not decrease: {times}"


def test_compare_defaults_are_the_tutorials(capsys):
    """With no options the experiment is the tutorial's: N=1000, batch 32, lr 0.1, 5 epochs, 32 updates per epoch."""
    assert main(["compare", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "N=1000" in out and "batch size 32" in out and "lr 0.1" in out and "5 epochs" in out
    assert [int(r[8]) for r in table_rows(out)] == [0, 32, 64, 96, 128, 160]
    assert [int(r[3]) for r in table_rows(out)] == [0, 1, 2, 3, 4, 5]


def test_report_has_comparisons_and_verdicts_from_this_run(capsys):
    """After the table come the equal-updates and equal-wall-time lines and the C2, C3, C15 verdicts of this run."""
    assert main(["compare", *SMALL, "--no-memory"]) == 0
    out = capsys.readouterr().out
    expected = compare(n=300, epochs=3, batch_size=50, seed=4)
    assert f"given the 18 updates mini-batch took reaches full-data loss {expected.full_equal_updates.final_loss:.4f}" in out
    assert "equal wall time: in the " in out
    for cid, r in claim_results([expected]).items():
        assert f"  {cid:<4}{r.verdict}\n      {r.text}\n" in out + "\n", cid


def test_repeats_report_mean_std_and_seed_agreement(capsys):
    """--repeats K runs seeds seed..seed+K-1: mean±std over them, and how many seeds agree with each verdict."""
    assert main(["compare", "--n", "200", "--epochs", "2", "--batch-size", "50", "--seed", "7", "--repeats", "3",
                 "--no-memory"]) == 0
    out = capsys.readouterr().out
    runs = [compare(n=200, epochs=2, batch_size=50, seed=s) for s in (7, 8, 9)]
    rows = table_rows(out)
    for e, r in enumerate(rows):
        mean, std = (float(v) for v in r[6].split("±"))
        losses = torch.tensor([x.mini.epoch_loss[e] for x in runs], dtype=torch.float64)
        assert mean == pytest.approx(float(losses.mean()), abs=5e-5)
        assert std == pytest.approx(float(losses.std()), abs=5e-5)
    assert "seeds 7-9 (3 repeats" in out
    for cid, r in claim_results(runs).items():
        assert f"{r.verdict} [this verdict in {r.seeds_agreeing}/3 seeds taken alone]" in out, cid


def test_json_numbers_match_histories_computed_directly(tmp_path, capsys):
    """--json holds each seed's Histories exactly as compare() computes them, the verdicts, versions and device."""
    path = tmp_path / "out.json"
    threads = torch.get_num_threads()
    assert main(["compare", *SMALL, "--repeats", "2", "--no-memory", "--threads", "1", "--json", str(path)]) == 0
    assert torch.get_num_threads() == threads, "--threads must not outlive the command"
    capsys.readouterr()
    data = json.loads(path.read_text())
    assert data["seeds"] == [4, 5]
    runs = [compare(n=300, epochs=3, batch_size=50, seed=s) for s in (4, 5)]
    for got, want in zip(data["runs"], runs):
        for key in ("full", "mini", "full_equal_updates"):
            g, w = dict(got[key]), getattr(want, key).to_dict()
            assert len(g.pop("epoch_time")) == len(w.pop("epoch_time"))
            assert g == w, key
        # Equal wall time: however many updates fitted in the budget, they are full-batch GD's first ones.
        et = got["full_equal_time"]
        k = sum(et["steps_per_epoch"])
        assert et["epoch_time"][-1:] <= [got["mini"]["epoch_time"][-1]]
        X, y = make_seed_data(300, 3, got["seed"])
        direct = train_full_batch(make_model(3, 2, got["seed"]), X, y, epochs=k, lr=0.1)
        assert et["epoch_loss"] == direct.epoch_loss
    for cid, r in claim_results(runs).items():
        assert data["claims"][cid]["verdict"] == r.verdict
        assert data["claims"][cid]["figures"] == r.figures
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["batchfeed"] == version("batchfeed")
    assert env["device"] == "cpu" and env["device_name"] and env["torch_threads"] == 1
    assert data["config"]["n"] == 300 and data["memory"] is None and data["sweep"] is None


def test_peak_memory_is_reported_for_both_methods(capsys):
    """Without --no-memory each method's peak RSS (measured in a fresh process) is reported."""
    run = run_compare(n=200, epochs=1, batch_size=50, memory=True)
    assert set(run.memory) == {"full-batch", "mini-batch"}
    for m, p in run.memory.items():
        assert p.peak_rss > 0 and p.rss_increase >= 0, m
    # The measured run is the same experiment: it ends at the same loss.
    assert run.memory["full-batch"].value == pytest.approx(run.runs[0].full.final_loss)
    assert run.memory["mini-batch"].value == pytest.approx(run.runs[0].mini.final_loss)


@pytest.mark.parametrize(
    ("argv", "argument"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "x"], "--batch-size"),
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--n", "0"], "--n"),
        (["--epochs", "0"], "--epochs"),
        (["--seed", "-1"], "--seed"),
        (["--device", "tpu9"], "--device"),
        (["--repeats", "0"], "--repeats"),
        (["--threads", "0"], "--threads"),
        (["--batch-sizes", ""], "--batch-sizes"),
        (["--batch-sizes", "0,8"], "--batch-sizes"),
        (["--batch-sizes", "a,b"], "--batch-sizes"),
        (["--batch-sizes", "8,,32"], "--batch-sizes"),
        (["--batch-sizes", "8,2000"], "--batch-sizes"),
        (["--n", "100", "--batch-size", "101"], "--batch-size"),
        (["--plot", "out.xyz"], "--plot"),
        (["--sweep-lrs", "0.1,-1"], "--sweep-lrs"),
        (["--target-loss", "0"], "--target-loss"),
        (["--max-steps", "0"], "--max-steps"),
        (["--plot", "/nonexistent-folder/out.png"], "--plot"),
        (["--json", "/nonexistent-folder/out.json"], "--json"),
        (["--bogus"], "--bogus"),
        (["--loader", "no_such_module_xyz:Loader"], "--loader"),
        (["--loader", "DataLoader"], "--loader"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_bad_arguments_exit_2_with_one_line(capsys, argv, argument):
    """A bad argument exits with status 2 and a one-line message naming it."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and argument in err, f"stderr was {err!r}"


@pytest.mark.skipif(sys.platform != "linux", reason="/proc takes no new files on Linux only")
@pytest.mark.parametrize("option", ["--plot", "--json"])
def test_unwritable_output_exits_2_naming_the_path(capsys, option):
    """An output in a folder that takes no new files (even for root) exits 2 naming the option and the path."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", option, "/proc/batchfeed-out"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert option in err and "/proc/batchfeed-out" in err, err


@pytest.mark.skipif(not __import__("os").path.exists("/dev/full"), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("option", ["--plot", "--json"])
def test_output_to_a_full_device_exits_2_before_the_run(capsys, option):
    """/dev/full (every write fails with ENOSPC) is refused before any work, in one line naming the option."""
    with pytest.raises(SystemExit) as exc:
        main(["compare", option, "/dev/full"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and option in err and "/dev/full" in err, err


def test_a_write_that_fails_after_the_run_exits_2_in_one_line(tmp_path, capsys, monkeypatch):
    """If the disk fills up during the run, the report is still printed and the failed write is one line, exit 2."""
    from batchfeed import report

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report, "write_json", full_disk)
    with pytest.raises(SystemExit) as exc:
        main(["compare", *SMALL, "--no-memory", "--quiet", "--json", str(tmp_path / "out.json")])
    captured = capsys.readouterr()
    assert exc.value.code == 2 and captured.err.count("\n") == 1, captured.err
    assert "--json" in captured.err and "No space left on device" in captured.err
    assert len(table_rows(captured.out)) == 4, "the report must be printed before the write fails"


def test_plot_format_follows_the_suffix(tmp_path, capsys):
    """--plot out.svg writes SVG, not PNG bytes under an SVG name."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "out.svg"
    assert main(["compare", *SMALL, "--no-memory", "--quiet", "--plot", str(out)]) == 0
    head = out.read_bytes()[:200]
    assert b"<svg" in head or head.startswith(b"<?xml"), head[:40]


def test_compare_runs_on_one_thread_by_default_and_says_so(capsys):
    """Without --threads the run uses 1 torch thread (restored afterwards) and the header says so."""
    before = torch.get_num_threads()
    assert main(["compare", *SMALL, "--no-memory", "--quiet"]) == 0
    assert torch.get_num_threads() == before
    header = capsys.readouterr().out.splitlines()[0]
    assert "(1 torch thread, --threads)" in header, header


def test_compare_runs_on_the_loader_it_is_given(capsys):
    """--loader batchfeed:TensorLoader feeds mini-batch GD: same batches as DataLoader for the seed, so the same table; the header names the loader."""
    assert main(["compare", *SMALL, "--no-memory", "--quiet"]) == 0
    default = capsys.readouterr().out
    assert main(["compare", *SMALL, "--no-memory", "--quiet", "--loader", "batchfeed:TensorLoader"]) == 0
    tensor = capsys.readouterr().out
    assert "loader torch.utils.data:DataLoader" in default.splitlines()[0]
    assert "loader batchfeed:TensorLoader" in tensor.splitlines()[0]
    strip_time = lambda rows: [r[:5] + r[6:10] for r in rows]  # noqa: E731 - loss, acc, updates, samples
    assert strip_time(table_rows(tensor)) == strip_time(table_rows(default))


def test_cuda_without_a_gpu_says_so(capsys):
    """`--device cuda` without CUDA exits 2 saying torch sees no CUDA device."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--device", "cuda"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--device" in err and "no CUDA device" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "quiet", "shown"), [(True, False, True), (False, False, False), (True, True, False)],
                         ids=["terminal", "pipe", "quiet"])
def test_progress_bar_on_a_terminal_only(monkeypatch, tty, quiet, shown):
    """The progress bar goes to stderr on a terminal, after 2 s; not into a pipe, and never with --quiet."""
    monkeypatch.setattr(sys, "stderr", _Terminal() if tty else io.StringIO())
    bar = cli._progress_bar(10, quiet)
    try:
        assert (bar is not None and not bar.disable) == shown
        if shown:
            assert getattr(bar.fp, "_wrapped", bar.fp) is sys.stderr  # tqdm wraps the stream it writes to
            assert bar.delay == 2.0
    finally:
        if bar is not None:
            bar.close()


def test_console_script_and_module_entry_point():
    """`batchfeed` is an installed console script, `python -m batchfeed` runs the same CLI, and without
    --plot it never imports matplotlib."""
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("batchfeed") == "batchfeed.cli:main"
    code = ("import runpy, sys\n"
            "sys.argv = ['batchfeed', 'compare', '--n', '64', '--epochs', '1', '--no-memory', '--quiet']\n"
            "try:\n    runpy.run_module('batchfeed', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(table_rows(proc.stdout)) == 2
    assert proc.stderr == ""


def test_bench_prints_the_ratio_table(capsys):
    """`batchfeed bench` prints each rival's samples/s and its ratio to DataLoader, from one run."""
    assert main(["bench", "--n", "4096", "--features", "3", "--batch-size", "64", "--repeats", "1",
                 "--no-training", "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = {line.strip().split("  ")[0]: line for line in out.splitlines() if line.startswith("  ")}
    for rival in ("DataLoader (default)", "TensorLoader", "bound: permute once + slice views"):
        assert any(name.startswith(rival) for name in lines), f"no row for {rival!r} in:\n{out}"
    tensor_row = next(line for name, line in lines.items() if name == "TensorLoader")
    ratio_to_dataloader = float(tensor_row.split()[-3])
    assert ratio_to_dataloader > 0, tensor_row


@pytest.mark.parametrize("argv", [["--n", "0"], ["--batch-size", "x"], ["--device", "tpu"], ["--json", "/no/such/dir/out.json"]])
def test_bench_bad_arguments_exit_2_with_one_line(capsys, argv):
    """`batchfeed bench` with a bad value exits 2 with one line naming the argument."""
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and argv[0] in err, err
