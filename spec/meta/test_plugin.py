"""The pytest machinery: loader selection, keyword skips, and verdicts computed from figures."""

import json
import textwrap

import pytest

from batchfeed import claims

CLAIM_TEST = textwrap.dedent(
    """
    import pytest

    @pytest.mark.claim("C6")
    def test_figure(claim_figures):
        claim_figures.record("indices_checked", 10)
        claim_figures.record("mismatches", {mismatches})
    """
)


@pytest.mark.parametrize(("mismatches", "verdict"), [(0, "holds"), (3, "refuted")])
def test_report_verdict_follows_the_recorded_figure(pytester, mismatches, verdict):
    """The JSON report's verdict is computed from the figure the test recorded, not typed in."""
    pytester.makepyfile(test_c6=CLAIM_TEST.format(mismatches=mismatches))
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    out = pytester.path / "claims.json"
    result = pytester.runpytest_inprocess(f"--claims-report={out}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    rows = {r["id"]: r for r in json.loads(out.read_text())["claims"]}
    assert rows["C6"]["verdict"] == verdict
    assert rows["C6"]["figures"] == {"indices_checked": 10.0, "mismatches": float(mismatches)}
    assert rows["C2"]["verdict"].startswith("pending"), "a claim with no figures this run must be pending"
    result.stdout.fnmatch_lines(["*= claims =*", f"C6*{verdict}*"])


def test_markdown_report(pytester):
    """--claims-report=PATH.md writes a Markdown table with every claim and the rules."""
    pytester.makepyfile(test_c6=CLAIM_TEST.format(mismatches=0))
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    out = pytester.path / "claims.md"
    pytester.runpytest_inprocess(f"--claims-report={out}", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    text = out.read_text()
    assert "| C6 |" in text and "**holds**" in text and "## Verdict rules" in text
    assert all(f"| {cid} |" in text for cid in claims.CLAIMS)


@pytest.mark.parametrize(("value", "message"), [("nocolon", "expected MODULE:CALLABLE"),
                                                ("no_such_module_xyz:f", "cannot import module"),
                                                ("torch.utils.data:NoSuchLoader", "has no attribute")])
def test_bad_loader_option_is_a_usage_error(pytester, value, message):
    """A bad --loader value stops the run with an error naming the value."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess(f"--loader={value}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--loader={value!r}*{message}*"])


def test_unsupported_keyword_skips_with_reason(pytester):
    """A loader without a keyword the test needs is skipped, with the keyword in the reason."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(
        minimal_loader="def make(dataset, batch_size=1):\n    return [dataset[i:i + batch_size] for i in range(0, len(dataset), batch_size)]\n",
        test_x="def test_needs_workers(make_loader):\n    make_loader([1, 2, 3], batch_size=1, num_workers=2)\n",
    )
    result = pytester.runpytest_inprocess("--loader=minimal_loader:make", "-p", "no:cacheprovider", "-rs",
                                          "--rootdir", str(pytester.path), "-o", "pythonpath=.")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*minimal_loader:make does not accept keyword(s) num_workers*"])


def test_report_header_names_loader_and_torch(pytester):
    """The report header names the loader under test, torch's version and the device."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["batchfeed: loader under test: torch.utils.data:DataLoader",
                                 "batchfeed: torch *, device cpu*"])


def test_known_deviation_file_makes_strict_xfails(pytester):
    """--loader-xfails turns listed tests into strict xfails; a line without a reason is an error."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x="def test_broken():\n    assert False\n\ndef test_fine():\n    pass\n")
    good = pytester.path / "xfails.txt"
    good.write_text("test_x.py::test_broken  # known upstream bug\n")
    pytester.runpytest_inprocess(f"--loader-xfails={good}", "-p", "no:cacheprovider").assert_outcomes(passed=1, xfailed=1)
    bad = pytester.path / "bad.txt"
    bad.write_text("test_x.py::test_broken\n")
    result = pytester.runpytest_inprocess(f"--loader-xfails={bad}", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("figures", "verdict"),
    [
        (dict(seeds=30, epochs=5, updates=160, epoch_wins=30, equal_update_wins=30, equal_update_loss_ratio=0.9), "holds"),
        (dict(seeds=30, epochs=5, updates=160, epoch_wins=30, equal_update_wins=15, equal_update_loss_ratio=1.0),
         "holds only when progress is counted per epoch: at equal updates full-batch does as well"),
        (dict(seeds=30, epochs=5, updates=160, epoch_wins=10, equal_update_wins=15, equal_update_loss_ratio=1.0), "refuted"),
    ],
)
def test_c2_rule_reads_the_figures(figures, verdict):
    """C2's verdict changes when its figures change."""
    assert claims.decide("C2", figures)[0].startswith(verdict)


def test_missing_figures_mean_pending():
    """A claim whose figures were not all recorded is pending, naming what is missing."""
    assert claims.decide("C2", None)[0].startswith("pending")
    verdict, text = claims.decide("C2", {"seeds": 30})
    assert verdict.startswith("pending") and "epoch_wins" in text
