"""Issue 15, "10 GB for real": the scale experiment end to end on a tiny file (the real run, a
dataset 4x the private-memory budget, is in docs/benchmarks.md): every figure is produced, the
one training loop fed every row exactly once, each method took its number of steps, and the data
is deleted after."""

from __future__ import annotations

import json

import pytest

from batchfeed.bench import main as bench_main
from batchfeed.outofcore_scale import METHODS, format_scale, scale_experiment


def test_the_scale_experiment_trains_on_every_row_once_and_reports_the_figures(tmp_path):
    runs = scale_experiment(tmp_path, gib=2 / 1024, budget=64 << 20, features=8, batch_size=100, count_rows=True)
    n = runs[0].n
    assert n == 2 * 2**20 // (4 * 8 + 8) + 1 and runs[0].data_bytes >= n * 40
    assert [(r.backend, r.method) for r in runs] == [(b, m) for b in ("memmap", "preadv") for m in METHODS]
    for r in runs:
        res = r.result
        assert r.error is None and res is not None, r
        assert res["samples"] == n and res["rows_once"] is True, (r.backend, r.method, res)
        assert res["steps"] == (1 if METHODS[r.method] else -(-n // 100)), (r.method, res["steps"])
        assert r.samples_per_s > 0 and r.peak_rss >= r.start_rss > 0
        assert res["peak_anon"] >= res["start_anon"] > 0 and res["peak_file"] > 0
        assert 0.0 <= r.resident_before <= 1.0
    table = format_scale(runs)
    assert "peak private" in table and "accumulated full-batch" in table and table.count("yes") == 4
    assert not (tmp_path / "batchfeed-scale").exists(), "the data was not deleted"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"gib": 0}, r"gib must be a positive number of GiB, got 0"),
    ({"gib": float("nan")}, r"gib must be a positive number"),
    ({"budget": 0}, r"budget must be a positive integer"),
    ({"backends": ("disk",)}, r"backends must be some of memmap, preadv, got \('disk',\)"),
    ({"gib": 1e9}, r"directory \(--dir\) .* GiB free, the data needs"),
])
def test_bad_scale_arguments_are_refused_naming_them(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        scale_experiment(tmp_path, **kwargs)


def test_bench_scale_prints_the_table_and_writes_the_runs(tmp_path, capsys, monkeypatch):
    """The command line end to end, the preadv back end only (the experiment itself is checked above)."""
    import batchfeed.outofcore_scale as scale

    experiment = scale.scale_experiment
    monkeypatch.setattr(scale, "scale_experiment", lambda *a, **kw: experiment(*a, backends=("preadv",), **kw))
    out = tmp_path / "scale.json"
    assert bench_main(["--out-of-core", "--scale", "0.001", "--budget", "64", "--features", "4", "--batch-size", "64",
                       "--dir", str(tmp_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--scale 0.001" in text and "peak RSS" in text and "load average at end" in text
    runs = json.loads(out.read_text())["scale"]
    assert len(runs) == 2 and all(r["error"] is None and r["samples_per_s"] > 0 for r in runs)
    with pytest.raises(SystemExit):
        bench_main(["--scale", "1"])
    assert "--scale: only with --out-of-core" in capsys.readouterr().err
