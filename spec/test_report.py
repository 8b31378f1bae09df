"""The report's picture and JSON: `batchfeed compare --plot out.png --json out.json`."""

import json
import struct

import pytest

from batchfeed.cli import main
from batchfeed.experiments import batch_size_sweep
from batchfeed.report import DPI, FIGSIZE, plot_size

pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the [plot] extra)")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature and chunk type."""
    __tracebackhide__ = True
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE, f"{path} does not start with the PNG signature: {head[:8]!r}"
    assert head[12:16] == b"IHDR", f"{path}: first chunk is {head[12:16]!r}, expected b'IHDR'"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """One `batchfeed compare` run with a sweep, its picture and JSON written twice (two runs, same seed)."""
    d = tmp_path_factory.mktemp("report")
    argv = ["compare", "--n", "200", "--epochs", "2", "--batch-size", "50", "--seed", "3", "--no-memory", "--quiet",
            "--batch-sizes", "1,10,50,200"]
    paths = []
    for k in (1, 2):
        png, js = d / f"run{k}.png", d / f"run{k}.json"
        assert main([*argv, *(["--plot", str(png)] if k == 1 else []), "--json", str(js)]) == 0
        paths.append((png, js))
    return paths


def test_plot_is_a_png_of_the_expected_size(outputs):
    """--plot with a sweep writes a PNG of figsize x dpi pixels: three panels per row, two rows."""
    png, _ = outputs[0]
    assert png_size(png) == plot_size(True) == (round(FIGSIZE[0] * DPI), round(2 * FIGSIZE[1] * DPI))


def test_plot_without_a_sweep_has_one_row(tmp_path, capsys):
    """Without --batch-sizes the picture is one row of three panels: per epoch, per update, per second."""
    png = tmp_path / "out.png"
    assert main(["compare", "--n", "100", "--epochs", "2", "--no-memory", "--repeats", "2", "--plot", str(png)]) == 0
    assert f"wrote {png}" in capsys.readouterr().err
    assert png_size(png) == plot_size(False) == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))


def test_json_sweep_is_the_sweep_computed_directly_and_reproducible(outputs):
    """The JSON's sweep (steps, samples, fitted B_noise, B_simple) equals batch_size_sweep() for the seed, run after run."""
    first, second = (json.loads(js.read_text()) for _, js in outputs)
    assert first["sweep"] == second["sweep"]
    direct = batch_size_sweep([1, 10, 50, 200], n=200, lrs=[0.1], seed=3, reference_lr=0.1, reference_updates=8)
    want = json.loads(json.dumps(direct.to_dict()))
    assert first["sweep"] == want
    assert first["sweep"]["fit"]["b_noise"] == direct.fit.b_noise
    assert first["sweep"]["noise"]["b_simple"] == direct.noise.b_simple


def test_json_is_strict(outputs):
    """The JSON parses without NaN or Infinity (non-finite numbers are written as null)."""
    _, js = outputs[0]

    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")

    json.loads(js.read_text(), parse_constant=refuse)
