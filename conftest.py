"""Repo-level pytest setup: the batchfeed plugin (and pytester for spec/meta).

The spec's own set-up (hypothesis profiles, one torch thread, markers, the RNG guard) is in
spec/conftest.py, which also runs when the suite runs as an installed package.
"""

pytest_plugins = ["batchfeed.pytest_plugin", "pytester"]
