"""spec/meta's inner pytest sessions (pytester) are isolated from the plugins installed around
them: entry-point autoloading is off, and they load only the plugins the spec itself needs
(hypothesis, pytest-benchmark for the repo's addopts). pytest-randomly, pytest-xdist or any
other plugin of the outer environment cannot change what an inner session reports; a meta test
that means to test one loads it with ``-p`` itself."""

import pytest

INNER_PLUGINS = ("_hypothesis_pytestplugin", "pytest_benchmark.plugin")


@pytest.fixture(autouse=True)
def _isolated_inner_sessions(request, monkeypatch):
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # first: pytester clears PYTEST_ADDOPTS when it starts
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        monkeypatch.setenv("PYTEST_ADDOPTS", " ".join(f"-p {p}" for p in INNER_PLUGINS))
    yield
