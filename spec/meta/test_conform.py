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
      <testcase classname="spec.conformance.test_batching" name="test_a"/>
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
        ("spec/conformance/test_batching.py::test_a", "batching", "pass"),
        ("spec/conformance/test_batching.py::test_b[x]", "batching", "fail"),
        ("spec/conformance/test_workers.py::test_c", "workers", "unsupported"),
        ("spec/conformance/test_resume.py::test_d", "resume", "known deviation"),
        ("spec/conformance/test_devices.py::test_e", "devices", "skipped")]
    assert rows[1]["reason"] == "AssertionError: boom" and rows[3]["reason"] == "later epochs differ"
    md = conform.render("m:L", rows, {"torch": "1", "m": "2"}, tmp_path / "r.md", 1)
    assert "| batching | 1 | 0 | 0 | 0 | 1 |" in md and "Versions: torch 1, m 2" in md
    assert "**does not conform: 1 failed** (exit 1)" in md
    data = json.loads(conform.render("m:L", rows, {}, tmp_path / "r.json"))
    assert data["counts"] == {"pass": 1, "fail": 1, "unsupported": 1, "known deviation": 1, "skipped": 1}


def test_the_verdict_counts_declared_deviations_and_unsupported_features():
    """A green run reads 'conforms, with N declared deviations and M unsupported features', naming the features."""
    rows = [{"outcome": "pass", "reason": ""}, {"outcome": "known deviation", "reason": "r"},
            {"outcome": "known deviation", "reason": "r"},
            {"outcome": "unsupported", "reason": "declared unsupported: resume: none (f line 1)"},
            {"outcome": "unsupported", "reason": "declared unsupported: resume: none (f line 1)"},
            {"outcome": "unsupported", "reason": "declared unsupported: num_workers: main process (f line 2)"}]
    assert conform.verdict(0, rows) == ("conforms, with 2 declared deviations and 2 unsupported features "
                                        "(num_workers, resume: 3 tests skipped)")
    assert conform.verdict(0, rows[:1]) == "conforms, with 0 declared deviations and 0 unsupported features"
    assert conform.verdict(5, []) == "no verdict: pytest exited 5 without running a test"


def test_versions_name_the_library_an_adapter_wraps():
    """The versions line names torchdata for the adapter that builds torchdata's loader, not only batchfeed."""
    vers = conform.versions("batchfeed.adapters:torchdata_nodes")
    assert list(vers)[:2] == ["torch", "batchfeed"] and "torchdata" in vers, vers


def test_a_missing_dependency_is_one_line_and_exit_2(monkeypatch, capsys):
    """Without a module the suite needs, conform prints one line naming it and the install command, and exits 2."""
    monkeypatch.setattr(conform, "NEEDS", {"pytest": "pytest", "no_such_module_for_batchfeed": "hypothesis"})
    assert conform.main(["batchfeed:TensorLoader"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "needs hypothesis" in err and 'pip install "batchfeed[conform]"' in err, err


#: A user's loaders, in a module of the user's folder (a loader in a package named ``spec`` would
#: clash with the suite's own ``spec/``, which conform refuses).
USER_LOADERS = textwrap.dedent("""\
    from torch.utils.data import DataLoader

    def refuses_when_shuffling(dataset, **kw):
        if kw.get("shuffle"):
            raise RuntimeError("no shuffling")
        return DataLoader(dataset, **kw)

    def drops_partial_last_batch(dataset, **kw):
        return DataLoader(dataset, **{**kw, "drop_last": kw.get("batch_size", 1) is not None})
""")


def _user_folder(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "userloaders.py").write_text(USER_LOADERS)
    return folder


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
    bad = _conform("userloaders:refuses_when_shuffling", "--", "-q", "-x", cwd=_user_folder(tmp_path))
    assert bad.returncode == 1 and "-> exit 1" in bad.stderr, bad.stderr[-2000:]


def test_an_id_copied_from_the_report_declares_the_deviation(tmp_path):
    """The report's ids are the declarations' spelling: a failing id copied into a declarations file makes the run
    conform, with node-id selection after -- and another test of the same module declared."""
    selected = "spec/conformance/test_batching.py::test_len_is_ceil_or_floor_of_n_over_b"
    report, user = tmp_path / "r.json", _user_folder(tmp_path)
    first = _conform("userloaders:drops_partial_last_batch", "--report", str(report), "--", selected, "-q", cwd=user)
    failing = [r["id"] for r in json.loads(report.read_text())["results"] if r["outcome"] == "fail"]
    assert first.returncode == 1 and failing == [selected], first.stderr[-2000:]
    declared = tmp_path / "d.txt"
    declared.write_text(f"{failing[0]}  # drops the partial last batch\n"
                        "spec/conformance/test_batching.py::test_every_batch_but_the_last_is_full  # not selected\n")
    second = _conform("userloaders:drops_partial_last_batch", "--deviations", str(declared),
                      "--report", str(report), "--", selected, "-q", cwd=user)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "conforms, with 1 declared deviation and 0 unsupported features" in second.stderr, second.stderr[-1000:]
    assert json.loads(report.read_text())["results"][0]["id"] == selected


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
    # README's install line, `pip install "torch==2.13.0" "batchfeed[conform]"`, from the built wheel
    subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0", f"{wheel}[conform]"], check=True)
    proc = subprocess.run([str(py), "-m", "batchfeed", "conform", "batchfeed:TensorLoader", "--deviations",
                           "batchfeed-tensorloader", "--", "-q"], cwd=empty, capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, HYPOTHESIS_PROFILE="ci"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "-> exit 0: conforms, with 0 declared deviations and " in proc.stderr and list(empty.iterdir()) == []
