# ruff: noqa: F822  (the public names are imported lazily by __getattr__ below)
"""The spec's pytest machinery: two plugins, loaded together by this module.

* :mod:`batchfeed.plugin_loader`: ``--loader=module:callable`` (env ``BATCHFEED_LOADER``), the
  loader the conformance spec runs against through the ``make_loader`` fixture;
  ``--loader-deviations=PATH`` (alias ``--loader-xfails``), what it declares
  (``unsupported: FEATURE, ...``: only tests needing those skip) and its known deviations
  (exact test ids, strict xfails, optionally ``raises=``), each with ``# reason``;
  ``--device=cpu|cuda[:N]`` (env ``BATCHFEED_DEVICE``) and the ``device`` fixture; skips
  counted by cause.
* :mod:`batchfeed.plugin_ledger`: ``@pytest.mark.claim("Cn")`` and the ``claim_figures``
  fixture feed the claims ledger (:mod:`batchfeed.claims`); the run ends with a "claims"
  section and ``--claims-report=PATH`` writes it as Markdown, or JSON for a ``.json`` PATH.

The repo's conftest.py loads it with ``pytest_plugins``; elsewhere ``pytest -p
batchfeed.pytest_plugin`` does.
"""

pytest_plugins = ["batchfeed.plugin_loader", "batchfeed.plugin_ledger"]

__all__ = [
    "BUILTIN_DECLARATIONS",
    "CAPABILITIES",
    "FEATURES",
    "ClaimFigures",
    "Declarations",
    "LoaderUnderTest",
    "device_option",
    "features_needed",
    "ledger_rows",
    "loader_under_test",
    "render_markdown",
    "resolve_loader",
    "skip_cause",
]

_FROM = {"ClaimFigures": "plugin_ledger", "ledger_rows": "plugin_ledger", "render_markdown": "plugin_ledger"}


def __getattr__(name: str):
    """The names above, imported on first use: importing them here would import the two
    plugins before pytest registers them (and warn that it cannot rewrite their asserts)."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"batchfeed.{_FROM.get(name, 'plugin_loader')}"), name)
