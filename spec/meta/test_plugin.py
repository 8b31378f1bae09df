"""The pytest machinery: loader selection, declared features, known deviations, and verdicts computed from figures."""

import json
import textwrap

import pytest
import torch

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


MINIMAL_LOADER = "def make(dataset, batch_size=1):\n    return [dataset[i:i + batch_size] for i in range(0, len(dataset), batch_size)]\n"
NEEDS_WORKERS = "def test_needs_workers(make_loader):\n    make_loader([1, 2, 3], batch_size=1, num_workers=2)\n"


def _run_minimal(pytester, *args):
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(minimal_loader=MINIMAL_LOADER, test_x=NEEDS_WORKERS)
    return pytester.runpytest_inprocess("--loader=minimal_loader:make", "-p", "no:cacheprovider", "-rs",
                                        "--rootdir", str(pytester.path), "-o", "pythonpath=.", *args)


def test_an_undeclared_unsupported_keyword_fails(pytester):
    """A loader that cannot take a keyword it did not declare unsupported fails, and is told how to declare it."""
    result = _run_minimal(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TypeError*num_workers*", "*declare it in its deviations file*"])


def test_a_declared_unsupported_keyword_skips_naming_the_declaration(pytester):
    """A feature the loader's file declares unsupported skips the tests that need it, naming the declaration; the header and the summary count it."""
    (pytester.path / "minimal.txt").write_text("unsupported: num_workers, map-datasets  # single process only\n")
    result = _run_minimal(pytester, "--loader-deviations=minimal.txt")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([
        "batchfeed: declared unsupported: map-datasets, num_workers (minimal.txt); known deviations: 0",
        "*batchfeed: skips by cause*", "*1  declared unsupported: num_workers",
        "*declared unsupported: num_workers: single process only (minimal.txt line 1)*",
    ])


def test_a_keyword_at_its_default_value_needs_no_declaration(pytester):
    """num_workers=0, pin_memory=False ...: DataLoader's defaults ask nothing of the loader, so nothing skips."""
    from torch.utils.data import TensorDataset

    from batchfeed.pytest_plugin import features_needed

    ds = TensorDataset(torch.zeros(3))
    assert features_needed(ds, dict(num_workers=0, pin_memory=False, shuffle=False, batch_size=1)) == []
    assert features_needed(ds, dict(num_workers=2, shuffle=True, batch_size=4)) == ["num_workers", "shuffle", "batch_size"]
    assert features_needed([1, 2], {}) == ["map-datasets"]

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(range(3))

    assert features_needed(Stream(), {}) == ["iterable-datasets"]


@pytest.mark.parametrize(("text", "message"), [
    ("unsupported: wormholes  # nope\n", "unknown feature 'wormholes'"),
    ("unsupported: num_workers\n", "needs a '# reason'"),
    ("test_broken  # no path\n", "is not a test id"),
    ("test_x.py::test_broken typo=1  # bad option\n", "expected '<test id>"),
    ("test_x.py::test_renamed  # the test was renamed\n", "known deviation 'test_x.py::test_renamed' matches no test"),
    ("test_x.py::test_broken raises=NoSuchError  # bad type\n", "raises=NoSuchError is not an exception type"),
])
def test_a_bad_deviations_file_is_a_usage_error_naming_the_line(pytester, text, message):
    """Unknown features, missing reasons, ids that match no collected test and unknown exception types stop the run, naming the entry."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x="def test_broken():\n    assert False\n")
    (pytester.path / "dev.txt").write_text(text)
    result = pytester.runpytest_inprocess("--loader-deviations=dev.txt", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*dev.txt line 1*{message}*"])


def test_report_header_names_loader_and_torch(pytester):
    """The report header names the loader under test, torch's version and the device."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["batchfeed: loader under test: torch.utils.data:DataLoader",
                                 "batchfeed: torch *, device cpu*"])


def test_known_deviations_are_strict_xfails_matched_exactly(pytester):
    """Listed ids become strict xfails: exact ids only (parameters included), raises= pins the deviation's type."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x=(
        "import pytest\n\nclass Deviates(AssertionError):\n    pass\n\n"
        "@pytest.mark.parametrize('k', [1, 2])\ndef test_broken(k):\n    raise Deviates(k)\n\n"
        "def test_other_error():\n    raise KeyError('not the known deviation')\n\n"
        "def test_fine():\n    pass\n"))
    (pytester.path / "dev.txt").write_text(
        "test_x.py::test_broken[1] raises=Deviates  # known upstream bug\n"
        "test_x.py::test_other_error raises=AssertionError  # typed deviation\n")
    result = pytester.runpytest_inprocess("--loader-deviations=dev.txt", "-p", "no:cacheprovider")
    # test_broken[2] is not listed (no prefix matching); test_other_error raised another type.
    result.assert_outcomes(passed=1, xfailed=1, failed=2)
    result.stdout.fnmatch_lines(["*FAILED test_x.py::test_broken[[]2[]]*", "*FAILED test_x.py::test_other_error*"])


def test_a_deviation_of_a_module_outside_the_run_is_ignored(pytester):
    """Running one module with the loader's whole file is fine: ids of modules not collected are not checked."""
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]')
    pytester.makepyfile(test_x="def test_fine():\n    pass\n", test_y="def test_broken():\n    assert False\n")
    (pytester.path / "dev.txt").write_text("test_y.py::test_broken  # known\n")
    pytester.runpytest_inprocess("test_x.py", "--loader-deviations=dev.txt", "-p", "no:cacheprovider").assert_outcomes(passed=1)


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
