"""The claims ledger in a pytest run: ``@pytest.mark.claim("Cn")`` ties a test to a tutorial
claim, the ``claim_figures`` fixture records what it measured, the verdicts are decided at the
end by :mod:`batchfeed.claims`' rules and printed as a "claims" section; ``--claims-report``
writes them as Markdown or JSON. Loaded by :mod:`batchfeed.pytest_plugin`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch

from . import claims as ledger
from .plugin_loader import device_option, loader_under_test

_figures_key = pytest.StashKey[dict[str, dict[str, float]]]()
_tests_key = pytest.StashKey[dict[str, dict[str, str]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("batchfeed", "batchfeed specification").addoption(
        "--claims-report", default=None, metavar="PATH",
        help="write the claims ledger to PATH: Markdown, or JSON if PATH ends in .json")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_figures_key] = defaultdict(dict)
    config.stash[_tests_key] = defaultdict(dict)
    config.pluginmanager.register(_OutcomeRecorder(config), "batchfeed-claim-outcomes")


FIGURE = "batchfeed-claim-figure"
CLAIM = "batchfeed-claim"


class ClaimFigures:
    """Records the figures a claim's verdict rule reads (see :mod:`batchfeed.claims`).

    Figures travel with the test's reports (``user_properties``), so the ledger is filled
    wherever reports arrive: in this process, or in pytest-xdist's controller.
    """

    def __init__(self, node: pytest.Item, default: str | None) -> None:
        self._node = node
        self._default = default

    def record(self, key: str, value: float, *, claim: str | None = None) -> None:
        cid = claim or self._default
        nodeid = self._node.nodeid
        if cid is None:
            raise ValueError(f"{nodeid}: record({key!r}) needs claim=... or a @pytest.mark.claim marker")
        if cid not in ledger.CLAIMS:
            raise ValueError(f"{nodeid}: unknown claim id {cid!r}; known: {', '.join(ledger.CLAIMS)}")
        self._node.user_properties.append((FIGURE, {"claim": cid, "key": key, "value": float(value)}))


@pytest.fixture
def claim_figures(request: pytest.FixtureRequest) -> ClaimFigures:
    """Record a measured figure for the test's claim: ``claim_figures.record("seeds", 30)``."""
    marker = request.node.get_closest_marker("claim")
    default = marker.args[0] if marker and marker.args else None
    return ClaimFigures(request.node, default)


# --- the ledger: outcomes, summary, report ----------------------------------------------

def _claim_ids(item: pytest.Item) -> list[str]:
    ids = []
    for m in item.iter_markers("claim"):
        if not m.args or m.args[0] not in ledger.CLAIMS:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.claim needs a known claim id, got {m.args!r}")
        ids.append(m.args[0])
    return ids


def pytest_collection_finish(session: pytest.Session) -> None:
    """Register the claim tests this run will execute (after -m/-k deselection); each test's
    claims also travel with its reports, for a pytest-xdist controller that collects nothing."""
    for item in session.items:
        for cid in _claim_ids(item):
            session.config.stash[_tests_key][cid][item.nodeid] = "not run"
            item.user_properties.append((CLAIM, cid))


class _OutcomeRecorder:
    """Keeps each claim test's outcome for the ledger (registered in pytest_configure)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        tests = self.config.stash[_tests_key]
        for name, value in report.user_properties:
            if name == CLAIM:
                tests[value].setdefault(report.nodeid, "not run")
            elif name == FIGURE and report.when == "teardown":  # the last report holds every figure
                self.config.stash[_figures_key][value["claim"]][value["key"]] = value["value"]
        if report.failed:
            outcome = "failed"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = "passed"
        else:
            return
        for entries in self.config.stash[_tests_key].values():
            if report.nodeid in entries and entries[report.nodeid] != "failed":
                entries[report.nodeid] = outcome


def ledger_rows(config: pytest.Config) -> list[dict[str, Any]]:
    """The claims ledger of this run: one dict per claim."""
    figures = config.stash[_figures_key]
    tests = config.stash[_tests_key]
    rows = []
    for cid, claim in ledger.CLAIMS.items():
        verdict, text = ledger.decide(cid, figures.get(cid))
        outcomes = tests.get(cid, {})
        if any(o == "failed" for o in outcomes.values()):
            verdict = f"undecided: a test of this claim failed ({verdict})"
        rows.append({
            "id": cid, "claim": claim.quote, "verdict": verdict, "figure": text, "rule": claim.rule,
            "figures": dict(figures.get(cid, {})),
            "tests": {nodeid: outcome for nodeid, outcome in sorted(outcomes.items())},
        })
    return rows


def render_markdown(rows: list[dict[str, Any]], header: str = "") -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    out = ["# The tutorial's claims, measured", ""]
    if header:
        out += [header, ""]
    out += ["| id | claim | verdict | figure | tests |", "|---|---|---|---|---|"]
    for r in rows:
        tests = "<br>".join(f"`{n.split('::', 1)[-1]}` {o}" for n, o in r["tests"].items()) or "none"
        out.append(f"| {r['id']} | {cell(r['claim'])} | **{cell(r['verdict'])}** | {cell(r['figure'])} | {tests} |")
    out += ["", "## Verdict rules", ""]
    out += [f"- **{r['id']}**: {r['rule']}" for r in rows]
    return "\n".join(out) + "\n"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _figures_key not in config.stash:
        return
    rows = ledger_rows(config)
    tr = terminalreporter
    tr.write_sep("=", "claims")
    for r in rows:
        tr.write_line(f"{r['id']:<4} {r['verdict']}")
        tr.write_line(f"     claim:  {r['claim']}")
        if r["figures"]:
            tr.write_line(f"     figure: {r['figure']}")
        if r["tests"]:
            tr.write_line("     tests:  " + ", ".join(f"{n.split('::', 1)[-1]} [{o}]" for n, o in r["tests"].items()))
    disturbed = [r["id"] for r in rows if r["verdict"].startswith(ledger.DISTURBED)]
    tr.write_line(f"disturbed runs: {len(disturbed)} claim(s) undecided" + (
        f" ({', '.join(disturbed)}): their timings failed a disturbance check (other processes had the cores); "
        "rerun them on a quieter machine" if disturbed else ""))
    path = config.getoption("--claims-report")
    if path:
        header = (f"Generated by `pytest spec/ --claims-report={path}` with loader `{loader_under_test(config).spec}`, "
                  f"torch {torch.__version__}, device {device_option(config)}. Do not edit by hand.")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".json":
            p.write_text(json.dumps({"header": header, "claims": rows}, indent=2) + "\n")
        else:
            p.write_text(render_markdown(rows, header))
        tr.write_line(f"claims report written to {p}")
