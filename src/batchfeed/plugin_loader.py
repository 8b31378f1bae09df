"""The loader under test: which loader the conformance spec runs against (``--loader``),
what it declares it does not support and its known deviations (``--loader-deviations``),
the device (``--device``), the ``make_loader`` and ``device`` fixtures, and the skips of the
run counted by cause. Loaded by :mod:`batchfeed.pytest_plugin`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import torch

from .loaders import DEFAULT_LOADER, resolve

_loader_key = pytest.StashKey[tuple[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("batchfeed", "batchfeed specification")
    group.addoption("--loader", default=None, metavar="MODULE:CALLABLE",
                    help=f"loader under test, called with DataLoader's keywords (env BATCHFEED_LOADER; default {DEFAULT_LOADER})")
    group.addoption("--device", default=None, metavar="DEVICE",
                    help="device for models and batches: cpu or cuda[:N] (env BATCHFEED_DEVICE; default cpu)")
    group.addoption("--loader-deviations", "--loader-xfails", dest="loader_deviations", default=None, metavar="PATH",
                    help="what the loader under test declares: 'unsupported: FEATURE, ...  # reason' and "
                         "'<exact test id> [raises=Exception]  # reason' (strict xfails), one per line")


def resolve_loader(spec: str) -> Any:
    """Import ``module:callable``; a bad value raises ``pytest.UsageError`` naming it."""
    try:
        return resolve(spec)
    except ValueError as exc:
        raise pytest.UsageError(f"--loader={exc}") from None


def device_option(config: pytest.Config) -> str:
    """The device the run asked for: ``--device``, else ``BATCHFEED_DEVICE``, else ``cpu``."""
    return config.getoption("--device") or os.environ.get("BATCHFEED_DEVICE") or "cpu"


def pytest_configure(config: pytest.Config) -> None:
    spec = config.getoption("--loader") or os.environ.get("BATCHFEED_LOADER") or DEFAULT_LOADER
    config.stash[_loader_key] = (spec, resolve_loader(spec))
    path = config.getoption("loader_deviations")
    if path:
        config.stash[_declarations_key] = Declarations.read(path)
    else:
        config.stash[_declarations_key] = Declarations(
            "built in" if spec in BUILTIN_DECLARATIONS else "no --loader-deviations file",
            BUILTIN_DECLARATIONS.get(spec))
    config.stash[_skips_key] = defaultdict(int)
    config.stash[_under_test_key] = LoaderUnderTest(spec, config.stash[_loader_key][1], config.stash[_declarations_key])
    dev = device_option(config)
    try:
        torch.device(dev)
    except RuntimeError as exc:
        raise pytest.UsageError(f"--device={dev!r}: not a torch device: {exc}") from exc
    config.pluginmanager.register(_SkipCounter(config), "batchfeed-skip-causes")


def pytest_report_header(config: pytest.Config) -> list[str]:
    spec, _ = config.stash[_loader_key]
    try:
        from hypothesis import settings
        profile = settings.get_current_profile_name()
    except Exception:  # hypothesis missing or too old to name its profile
        profile = "?"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        f"batchfeed: loader under test: {spec}",
        f"batchfeed: torch {torch.__version__}, device {device_option(config)}, CUDA device: {cuda}, "
        f"threads {torch.get_num_threads()}, python {platform.python_version()}, hypothesis profile {profile}",
        config.stash[_declarations_key].header(),
    ]


# --- the loader's declarations: what it does not support, and its known deviations ------

#: Capabilities a test can need besides DataLoader's keywords. A keyword of DataLoader is
#: needed when a test passes it with a value other than DataLoader's default.
CAPABILITIES = {
    "resume": "state_dict() / load_state_dict() (resume mid-epoch)",
    "map-datasets": "map-style datasets other than TensorDataset and PairDataset (any __getitem__ / __len__)",
    "iterable-datasets": "torch.utils.data.IterableDataset",
}
#: What the default loader, torch's DataLoader, declares without a file.
BUILTIN_DECLARATIONS = {
    DEFAULT_LOADER: {"resume": "torch.utils.data.DataLoader has no state_dict(); torchdata's StatefulDataLoader adds it"},
}


def _dataloader_defaults() -> dict[str, Any]:
    from torch.utils.data import DataLoader

    return {name: p.default for name, p in inspect.signature(DataLoader.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


_DEFAULTS = _dataloader_defaults()
FEATURES = {**{k: f"DataLoader's {k}= keyword, with a value other than its default ({v!r})" for k, v in _DEFAULTS.items()},
            **CAPABILITIES}


class Deviation:
    """One known deviation: an exact test id, the exception it raises (if typed) and why."""

    def __init__(self, nodeid: str, raises: str | None, reason: str, where: str) -> None:
        self.nodeid, self.raises, self.reason, self.where = nodeid, raises, reason, where


class Declarations:
    """What a loader declares: unsupported features (tests needing them skip) and known deviations.

    File format, one entry per line, each with ``# reason``::

        unsupported: num_workers, resume        # why the loader does not do this
        spec/conformance/test_x.py::test_y[id] raises=TypeError  # why it deviates

    A deviation names an exact test id (parametrized ids included) and runs as a strict
    xfail; ``raises=`` names the exception type (a builtin, a name in the test's module, or
    ``module:Name``).
    """

    def __init__(self, source: str, unsupported: dict[str, str] | None = None,
                 deviations: list[Deviation] | None = None) -> None:
        self.source = source
        self.unsupported = dict(unsupported or {})
        self.deviations = list(deviations or [])

    @classmethod
    def read(cls, path: str) -> Declarations:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise pytest.UsageError(f"--loader-deviations={path!r}: cannot read: {exc}") from exc
        out = cls(path)
        for n, line in enumerate(lines, 1):
            entry, _, reason = line.partition("#")
            entry, reason, where = entry.strip(), reason.strip(), f"{path} line {n}"
            if not entry:
                continue
            if not reason:
                raise pytest.UsageError(f"{where}: every declaration needs a '# reason': {entry!r}")
            if entry.startswith("unsupported:"):
                for feature in (f.strip() for f in entry.removeprefix("unsupported:").split(",")):
                    if feature not in FEATURES:
                        raise pytest.UsageError(f"{where}: unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
                    out.unsupported[feature] = f"{reason} ({where})"
                continue
            nodeid, *rest = entry.split()
            raises = None
            for word in rest:
                if not word.startswith("raises="):
                    raise pytest.UsageError(f"{where}: expected '<test id> [raises=Exception]  # reason', got {entry!r}")
                raises = word.removeprefix("raises=")
            if "::" not in nodeid:
                raise pytest.UsageError(f"{where}: {nodeid!r} is not a test id (path.py::test_name[params])")
            out.deviations.append(Deviation(nodeid, raises, reason, where))
        return out

    def header(self) -> str:
        if not self.unsupported:
            return f"batchfeed: declared unsupported: nothing ({self.source}); known deviations: {len(self.deviations)}"
        return (f"batchfeed: declared unsupported: {', '.join(sorted(self.unsupported))} ({self.source}); "
                f"known deviations: {len(self.deviations)}")


_declarations_key = pytest.StashKey[Declarations]()
_skips_key = pytest.StashKey[dict[str, int]]()
_under_test_key = pytest.StashKey["LoaderUnderTest"]()


def _exception_type(name: str, item: pytest.Item, where: str) -> type[BaseException]:
    import builtins

    module_name, sep, attr = name.rpartition(":")
    if sep:
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise pytest.UsageError(f"{where}: raises={name}: {exc}") from exc
    else:
        obj = getattr(builtins, name, None) or getattr(getattr(item, "module", None), name, None)
    if not (isinstance(obj, type) and issubclass(obj, BaseException)):
        raise pytest.UsageError(f"{where}: raises={name} is not an exception type (builtin, in the test's module, or module:Name)")
    return obj


def canonical_id(nodeid: str) -> str:
    """A test id from ``conformance/`` on (the rest as it is): the same whether the suite runs
    from the repository (``spec/conformance/...``), installed (``.../batchfeed_spec/conformance/...``)
    or by ``batchfeed conform``; a bare ``test_x.py::...`` (the reports of batchfeed 0.1) is read
    as ``conformance/test_x.py::...``."""
    path, sep, rest = nodeid.partition("::")
    i = path.rfind("conformance/")
    if i < 0 and "/" not in path and path.startswith("test_"):
        return "conformance/" + path + sep + rest
    return (path[i:] if i >= 0 else path) + sep + rest


def _partly_selected(config: pytest.Config) -> set[str]:
    """The modules the command line selects tests of by node id (``path.py::test_name``)."""
    return {canonical_id(arg.partition("::")[0]) for arg in config.args if "::" in arg}


def _function_exists(items: list[pytest.Item], nodeid: str) -> bool:
    """Whether the test function a deviation names is in its module (the module partly selected)."""
    canon = canonical_id(nodeid)
    path, _, name = canon.partition("::")
    module = next((getattr(i, "module", None) for i in items if canonical_id(i.nodeid).partition("::")[0] == path), None)
    return module is not None and callable(getattr(module, name.split("::")[0].partition("[")[0], None))


def _module_exists(config: pytest.Config, path: str, items: list[pytest.Item]) -> bool:
    """Whether the test module a deviation names exists, in the repository or beside the collected suite."""
    if (config.rootpath / path).exists():
        return True
    canon = canonical_id(path)
    return any(Path(item.path).parent.joinpath(canon.removeprefix("conformance/")).exists()
               for item in items if canonical_id(item.nodeid).startswith("conformance/"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CUDA skips and the known deviations, matched exactly (ids from ``conformance/`` on), before
    -k/-m deselect anything."""
    skip_cuda = None if torch.cuda.is_available() else pytest.mark.skip(reason="no CUDA device: torch.cuda.is_available() is False")
    by_id = {canonical_id(item.nodeid): item for item in items}
    files = {canonical_id(item.nodeid).partition("::")[0] for item in items}
    partly = _partly_selected(config)
    for item in items:
        if skip_cuda is not None and "cuda" in item.keywords:
            item.add_marker(skip_cuda)
    for dev in config.stash[_declarations_key].deviations:
        item = by_id.get(canonical_id(dev.nodeid))
        if item is None:
            path = dev.nodeid.partition("::")[0]
            if canonical_id(path) in partly and _function_exists(items, dev.nodeid):
                continue  # its test is not among those the node ids select
            if canonical_id(path) in files or not _module_exists(config, path, items):
                raise pytest.UsageError(f"{dev.where}: known deviation {dev.nodeid!r} matches no test of this run "
                                        "(renamed or removed? ids are matched exactly, parameters included)")
            continue  # its module is not part of this run
        raises = _exception_type(dev.raises, item, dev.where) if dev.raises else None
        item.add_marker(pytest.mark.xfail(reason=f"known deviation: {dev.reason}", strict=True, raises=raises))


# --- fixtures ----------------------------------------------------------------------------

def _dataset_feature(dataset: Any) -> str | None:
    """The feature a dataset asks of a loader: none for tensor datasets (``TensorDataset`` and
    the tutorial's ``PairDataset``, which hold their samples as tensors)."""
    from torch.utils.data import IterableDataset, TensorDataset

    from .datasets import PairDataset

    if isinstance(dataset, IterableDataset):
        return "iterable-datasets"
    if isinstance(dataset, (TensorDataset, PairDataset)):
        return None
    return "map-datasets"


def _is_default(value: Any, default: Any) -> bool:
    """``value`` asks no more of a loader than DataLoader's default does (``shuffle=False`` is ``None``)."""
    if value is default or (default is None and value is False):
        return True
    plain = (bool, int, float, str)
    return (type(value) in plain and type(default) in plain and isinstance(value, bool) == isinstance(default, bool)
            and value == default)


def features_needed(dataset: Any, kwargs: dict[str, Any]) -> list[str]:
    """The features a loader call needs: non-default DataLoader keywords and the dataset's kind."""
    needed = [k for k, v in kwargs.items() if not _is_default(v, _DEFAULTS.get(k, inspect.Parameter.empty))]
    kind = _dataset_feature(dataset)
    return needed + ([kind] if kind else [])


SKIP_PREFIX = "declared unsupported: "


class LoaderUnderTest:
    """Builds the loader under test; a test skips only for a feature the loader declared unsupported.

    ``make_loader(dataset, **DataLoader_keywords)`` builds it; ``make_loader.require(feature)``
    skips the test if ``feature`` (e.g. ``"resume"``) is declared unsupported. Anything the
    loader raises is the test's outcome: a failure, or the ``ValueError`` a test expects.
    """

    def __init__(self, spec: str, factory: Any, declarations: Declarations) -> None:
        self.spec = spec
        self.factory = factory
        self.declarations = declarations
        #: Loaders built without a ``generator`` since the last reset: like DataLoader, they
        #: may draw from torch's global RNG (the suite's RNG guard reads this).
        self.built_without_generator = 0

    def require(self, *features: str) -> None:
        for feature in features:
            if feature not in FEATURES:
                raise ValueError(f"unknown feature {feature!r}; known: {', '.join(sorted(FEATURES))}")
            if feature in self.declarations.unsupported:
                pytest.skip(f"{SKIP_PREFIX}{feature}: {self.declarations.unsupported[feature]}")

    def __call__(self, dataset: Any, **kwargs: Any) -> Any:
        self.require(*features_needed(dataset, kwargs))
        if kwargs.get("generator") is None:
            self.built_without_generator += 1
        try:
            return self.factory(dataset, **kwargs)
        except TypeError as exc:
            note = (f"batchfeed: if {self.spec} does not support one of {sorted(kwargs)} or "
                    f"{type(dataset).__name__}, declare it in its deviations file "
                    "('unsupported: <feature>  # reason', --loader-deviations)")
            if hasattr(exc, "add_note"):
                exc.add_note(note)
            else:  # Python 3.10: PEP 678's attribute itself, which pytest prints there too
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
            raise



def loader_under_test(config: pytest.Config) -> LoaderUnderTest:
    """The run's one :class:`LoaderUnderTest` (what the ``make_loader`` fixture returns)."""
    return config.stash[_under_test_key]


@pytest.fixture(scope="session")
def make_loader(pytestconfig: pytest.Config) -> LoaderUnderTest:
    """``make_loader(dataset, **DataLoader_keywords)`` builds the loader under test (``--loader``)."""
    return loader_under_test(pytestconfig)


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    """The device chosen with ``--device``; CUDA without a CUDA device skips with the reason."""
    dev = torch.device(device_option(pytestconfig))
    if dev.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"--device={dev}: no CUDA device (torch.cuda.is_available() is False)")
    if dev.type == "cuda" and dev.index is None:
        # Tensors report cuda:0, never bare cuda: name the device they will compare equal to.
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


# --- skips, counted by cause -------------------------------------------------------------------

def skip_cause(report: pytest.TestReport) -> str:
    """What a skip was for, in a few words: the declared feature, no CUDA, benchmarks, or the reason."""
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if reason.startswith(SKIP_PREFIX):
        return SKIP_PREFIX + reason[len(SKIP_PREFIX):].partition(":")[0]
    if "no CUDA device" in reason:
        return "no CUDA device"
    if reason.startswith("Skipping benchmark"):
        return "benchmarks (pytest --benchmark-only runs them)"
    return reason if len(reason) <= 100 else reason[:97] + "..."


class _SkipCounter:
    """Counts every skip of the run by :func:`skip_cause` (registered in pytest_configure)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.config.stash[_skips_key][skip_cause(report)] += 1


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    skips = config.stash.get(_skips_key, {})
    if skips:
        terminalreporter.write_sep("=", "batchfeed: skips by cause")
        for cause, count in sorted(skips.items(), key=lambda kv: (not kv[0].startswith(SKIP_PREFIX), -kv[1], kv[0])):
            terminalreporter.write_line(f"{count:5d}  {cause}")
