"""`batchfeed conform`: the installed conformance suite against a loader, its exit status and report."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchfeed import conform

ROOT = Path(__file__).resolve().parents[2]
JUNIT = textwrap.dedent("""\
    <testsuites><testsuite>
      <testcase classname="conformance.test_batching" name="test_a"/>
      <testcase classname="conformance.test_batching" name="test_b[x]"><failure message="AssertionError: boom&#10;more"/></testcase>
      <testcase classname="conformance.test_workers" name="test_c"><skipped type="pytest.skip" message="declared unsupported: num_workers: r (f line 1)"/></testcase>
      <testcase classname="conformance.test_resume" name="test_d"><skipped type="pytest.xfail" message="known deviation: later epochs differ"/></testcase>
      <testcase classname="conformance.test_devices" name="test_e"><skipped type="pytest.skip" message="no CUDA device"/></testcase>
    </testsuite></testsuites>
""")


def test_outcomes_and_report_name_every_behaviour(tmp_path):
    """Pass, fail, declared unsupported, known deviation and other skips are told apart, by area, in Markdown and JSON."""
    junit = tmp_path / "j.xml"
    junit.write_text(JUNIT)
    rows = conform.outcomes(junit)
    assert [(r["id"], r["area"], r["outcome"]) for r in rows] == [
        ("test_batching.py::test_a", "batching", "pass"), ("test_batching.py::test_b[x]", "batching", "fail"),
        ("test_workers.py::test_c", "workers", "unsupported"), ("test_resume.py::test_d", "resume", "known deviation"),
        ("test_devices.py::test_e", "devices", "skipped")]
    assert rows[1]["reason"] == "AssertionError: boom" and rows[3]["reason"] == "later epochs differ"
    md = conform.render("m:L", rows, {"torch": "1", "m": "2"}, tmp_path / "r.md")
    assert "| batching | 1 | 0 | 0 | 0 | 1 |" in md and "Versions: torch 1, m 2" in md
    data = json.loads(conform.render("m:L", rows, {}, tmp_path / "r.json"))
    assert data["counts"] == {"pass": 1, "fail": 1, "unsupported": 1, "known deviation": 1, "skipped": 1}


def _conform(*args, cwd=ROOT):
    env = dict(os.environ, HYPOTHESIS_PROFILE="meta", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "batchfeed", "conform", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_declared_loader_conforms_and_a_refusing_one_does_not(tmp_path):
    """Exit 0 for TensorLoader with its shipped declarations (the report says what was unsupported); exit 1 for a loader that refuses shuffling undeclared."""
    report = tmp_path / "r.json"
    ok = _conform("batchfeed:TensorLoader", "--deviations", "batchfeed-tensorloader", "--report", str(report),
                  "--", "-q", "-k", "batching or workers")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    counts = json.loads(report.read_text())["counts"]
    assert counts.get("pass", 0) > 5 and counts.get("unsupported", 0) > 0 and "fail" not in counts
    bad = _conform("spec.meta.broken_loaders:refuses_when_shuffling", "--", "-q", "-x")
    assert bad.returncode == 1 and "-> exit 1" in bad.stderr, bad.stderr[-2000:]


def test_a_missing_deviations_file_is_named(tmp_path):
    """--deviations naming neither a file nor a shipped declaration exits 2 and lists the shipped ones."""
    proc = _conform("batchfeed:TensorLoader", "--deviations", "no-such-loader")
    assert proc.returncode == 2 and "no-such-loader" in proc.stderr and "batchfeed-tensorloader" in proc.stderr


@pytest.mark.slow
def test_the_built_wheel_conforms_from_an_empty_folder(tmp_path):
    """The wheel, installed into a fresh virtualenv, runs `batchfeed conform` from an empty folder: no clone needed."""
    wheels, venv, empty = tmp_path / "wheels", tmp_path / "venv", tmp_path / "empty"
    empty.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    wheel = next(wheels.glob("batchfeed-*.whl"))
    subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0", f"{wheel}[test]"], check=True)
    proc = subprocess.run([str(py), "-m", "batchfeed", "conform", "batchfeed:TensorLoader", "--deviations",
                           "batchfeed-tensorloader", "--", "-q"], cwd=empty, capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, HYPOTHESIS_PROFILE="ci"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "(conforms)" in proc.stderr and list(empty.iterdir()) == []
