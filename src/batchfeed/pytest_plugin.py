"""The spec's pytest machinery, in one plugin module.

* ``--loader=module:callable`` (env ``BATCHFEED_LOADER``): the DataLoader-compatible
  loader the loader-facing tests run against, through the ``make_loader`` fixture.
* ``--device=cpu|cuda[:N]`` (env ``BATCHFEED_DEVICE``): where models and batches go.
* ``--loader-xfails=PATH``: known deviations of the loader under test, one test id
  (or id prefix) per line with ``# reason``, turned into strict xfails.
* ``@pytest.mark.claim("Cn")`` and the ``claim_figures`` fixture feed the claims ledger
  (:mod:`batchfeed.claims`); ``pytest`` ends with a "claims" section and
  ``--claims-report=PATH`` writes it as Markdown, or JSON for a ``.json`` PATH.

The repo's conftest.py loads it with ``pytest_plugins``; elsewhere ``pytest -p
batchfeed.pytest_plugin`` does.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch

from . import claims as ledger

DEFAULT_LOADER = "torch.utils.data:DataLoader"

_loader_key = pytest.StashKey[tuple[str, Any]]()
_figures_key = pytest.StashKey[dict[str, dict[str, float]]]()
_tests_key = pytest.StashKey[dict[str, dict[str, str]]]()


# --- options ----------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("batchfeed", "batchfeed specification")
    group.addoption("--loader", default=None, metavar="MODULE:CALLABLE",
                    help=f"loader under test, called with DataLoader's keywords (env BATCHFEED_LOADER; default {DEFAULT_LOADER})")
    group.addoption("--device", default=None, metavar="DEVICE",
                    help="device for models and batches: cpu or cuda[:N] (env BATCHFEED_DEVICE; default cpu)")
    group.addoption("--claims-report", default=None, metavar="PATH",
                    help="write the claims ledger to PATH: Markdown, or JSON if PATH ends in .json")
    group.addoption("--loader-xfails", default=None, metavar="PATH",
                    help="file of known deviations of the loader under test: '<test id prefix>  # reason' per line")


def resolve_loader(spec: str) -> Any:
    """Import ``module:callable``; a bad value raises ``pytest.UsageError`` naming it."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise pytest.UsageError(f"--loader={spec!r}: expected MODULE:CALLABLE, e.g. {DEFAULT_LOADER}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise pytest.UsageError(f"--loader={spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise pytest.UsageError(f"--loader={spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise pytest.UsageError(f"--loader={spec!r}: {attr!r} is not callable")
    return obj


def _device_option(config: pytest.Config) -> str:
    return config.getoption("--device") or os.environ.get("BATCHFEED_DEVICE") or "cpu"


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--loader") or os.environ.get("BATCHFEED_LOADER") or DEFAULT_LOADER
    config.stash[_loader_key] = (spec, resolve_loader(spec))
    dev = _device_option(config)
    try:
        torch.device(dev)
    except RuntimeError as exc:
        raise pytest.UsageError(f"--device={dev!r}: not a torch device: {exc}") from exc
    config.stash[_figures_key] = defaultdict(dict)
    config.stash[_tests_key] = defaultdict(dict)
    config.pluginmanager.register(_OutcomeRecorder(config), "batchfeed-claim-outcomes")


def pytest_report_header(config: pytest.Config) -> list[str]:
    spec, _ = config.stash[_loader_key]
    try:
        from hypothesis import settings
        profile = settings.get_current_profile_name()
    except Exception:  # hypothesis missing or too old to name its profile
        profile = "?"
    dev = _device_option(config)
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"batchfeed: loader under test: {spec}",
        f"batchfeed: torch {torch.__version__}, device {dev}, CUDA device: {cuda}, "
        f"threads {torch.get_num_threads()}, python {platform.python_version()}, hypothesis profile {profile}",
    ]


# --- markers: cuda skips and known deviations, decided centrally ------------------------

def _read_xfails(path: str) -> list[tuple[str, str]]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise pytest.UsageError(f"--loader-xfails={path!r}: cannot read: {exc}") from exc
    out = []
    for n, line in enumerate(lines, 1):
        ident, _, reason = line.partition("#")
        ident = ident.strip()
        if not ident:
            continue
        if not reason.strip():
            raise pytest.UsageError(f"{path} line {n}: every known deviation needs a '# reason'")
        out.append((ident, reason.strip()))
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_cuda = None if torch.cuda.is_available() else pytest.mark.skip(reason="no CUDA device: torch.cuda.is_available() is False")
    xfails = _read_xfails(config.getoption("--loader-xfails")) if config.getoption("--loader-xfails") else []
    for item in items:
        if skip_cuda is not None and "cuda" in item.keywords:
            item.add_marker(skip_cuda)
        for ident, reason in xfails:
            if item.nodeid.startswith(ident) or item.nodeid.endswith(ident):
                item.add_marker(pytest.mark.xfail(reason=f"known deviation: {reason}", strict=True))


# --- fixtures ----------------------------------------------------------------------------

def _accepted_keywords(factory: Any) -> set[str] | None:
    """Keyword names ``factory`` accepts, or None if it takes ``**kwargs``."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    names = set()
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            names.add(p.name)
    return names


class LoaderFactory:
    """Builds loaders under test; a keyword the loader cannot take skips the test.

    A keyword missing from the loader's signature, or a ``TypeError`` at construction that
    names the keyword or the dataset (how batchfeed's own loaders refuse an option or a
    dataset they cannot serve), skips with that reason. Anything else propagates: a ``ValueError`` for bad values is
    part of the specification.
    """

    def __init__(self, spec: str, factory: Any) -> None:
        self.spec = spec
        self.factory = factory
        self.accepted = _accepted_keywords(factory)

    def __call__(self, dataset: Any, **kwargs: Any) -> Any:
        if self.accepted is not None:
            missing = sorted(k for k in kwargs if k not in self.accepted)
            if missing:
                pytest.skip(f"{self.spec} does not accept keyword(s) {', '.join(missing)}")
        try:
            return self.factory(dataset, **kwargs)
        except TypeError as exc:
            named = [k for k in kwargs if k in str(exc)]
            if named:
                pytest.skip(f"{self.spec} cannot honour {', '.join(f'{k}={kwargs[k]!r}' for k in named)}: {exc}")
            if "dataset" in str(exc):
                pytest.skip(f"{self.spec} cannot serve {type(dataset).__name__}: {exc}")
            raise

    def require(self, feature: str) -> None:
        """placeholder; the lead's version replaces it"""


@pytest.fixture(scope="session")
def loader_factory(pytestconfig: pytest.Config) -> LoaderFactory:
    """The loader under test (``--loader``), wrapped so unsupported keywords skip."""
    spec, factory = pytestconfig.stash[_loader_key]
    return LoaderFactory(spec, factory)


@pytest.fixture(scope="session")
def make_loader(loader_factory: LoaderFactory) -> LoaderFactory:
    """``make_loader(dataset, **DataLoader_keywords)`` builds the loader under test."""
    return loader_factory


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device chosen with ``--device``; CUDA without a CUDA device skips with the reason."""
    dev = torch.device(_device_option(pytestconfig))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device={dev}: no CUDA device (torch.cuda.is_available() is False)")
    if dev.type == "cuda" and dev.index is None:
        # Tensors report cuda:0, never bare cuda: name the device they will compare equal to.
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class ClaimFigures:
    """Records the figures a claim's verdict rule reads (see :mod:`batchfeed.claims`)."""

    def __init__(self, store: dict[str, dict[str, float]], default: str | None, nodeid: str) -> None:
        self._store = store
        self._default = default
        self._nodeid = nodeid

    def record(self, key: str, value: float, *, claim: str | None = None) -> None:
        cid = claim or self._default
        if cid is None:
            raise ValueError(f"{self._nodeid}: record({key!r}) needs claim=... or a @pytest.mark.claim marker")
        if cid not in ledger.CLAIMS:
            raise ValueError(f"{self._nodeid}: unknown claim id {cid!r}; known: {', '.join(ledger.CLAIMS)}")
        self._store[cid][key] = float(value)


@pytest.fixture
def claim_figures(request: pytest.FixtureRequest) -> ClaimFigures:
    """Record a measured figure for the test's claim: ``claim_figures.record("seeds", 30)``."""
    marker = request.node.get_closest_marker("claim")
    default = marker.args[0] if marker and marker.args else None
    return ClaimFigures(request.config.stash[_figures_key], default, request.node.nodeid)


# --- the ledger: outcomes, summary, report ----------------------------------------------

def _claim_ids(item: pytest.Item) -> list[str]:
    ids = []
    for m in item.iter_markers("claim"):
        if not m.args or m.args[0] not in ledger.CLAIMS:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.claim needs a known claim id, got {m.args!r}")
        ids.append(m.args[0])
    return ids


def pytest_collection_finish(session: pytest.Session) -> None:
    """Register the claim tests this run will execute (after -m/-k deselection)."""
    for item in session.items:
        for cid in _claim_ids(item):
            session.config.stash[_tests_key][cid][item.nodeid] = "not run"


class _OutcomeRecorder:
    """Keeps each claim test's outcome for the ledger (registered in pytest_configure)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
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
    path = config.getoption("--claims-report")
    if path:
        spec, _ = config.stash[_loader_key]
        header = (f"Generated by `pytest spec/ --claims-report={path}` with loader `{spec}`, "
                  f"torch {torch.__version__}, device {_device_option(config)}. Do not edit by hand.")
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".json":
            p.write_text(json.dumps({"header": header, "claims": rows}, indent=2) + "\n")
        else:
            p.write_text(render_markdown(rows, header))
        tr.write_line(f"claims report written to {p}")
