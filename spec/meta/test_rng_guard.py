"""The suite's global-RNG guard (spec/conftest.py) catches what it promises to catch."""

from pathlib import Path

import pytest

# spec/conftest.py as a root conftest of the inner session (there it is no package: absolute import)
GUARD = (Path(__file__).resolve().parents[1] / "conftest.py").read_text().replace("from . import profiles, promises", "from spec import profiles, promises")

CASES = {
    "reseeds": "import torch\n\ndef test_x():\n    torch.manual_seed(0)\n",
    "numpy_draw": "import numpy as np\n\ndef test_x():\n    np.random.rand()\n",
    "random_in_module_fixture": (
        "import random\nimport pytest\n\n@pytest.fixture(scope='module')\ndef data():\n    return random.random()\n\n"
        "def test_x(data):\n    pass\n"),
    "loader_with_generator_uses_global": (
        "import torch\n\ndef leaky(dataset, **kw):\n    torch.rand(1)\n    return list(dataset)\n\n"
        "def test_x(make_loader):\n    make_loader(torch.utils.data.TensorDataset(torch.zeros(2)), generator=torch.Generator())\n"),
}


def _run(pytester, body, *args):
    pytester.makeconftest('pytest_plugins = ["batchfeed.pytest_plugin"]\n' + GUARD)
    pytester.makepyfile(test_case=body)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--rootdir", str(pytester.path), "-o", "pythonpath=.",
                                        *args)


def _randomly_available() -> bool:
    try:
        import pytest_randomly  # noqa: F401
    except ImportError:
        return False
    return True


#: The guard must work with pytest-randomly loaded (it reseeds random and numpy before every
#: test phase unless told not to) and without it.
PLUGINS = pytest.mark.parametrize("plugins", [
    pytest.param((), id="plain"),
    pytest.param(("-p", "pytest_randomly"), id="pytest-randomly",
                 marks=pytest.mark.skipif(not _randomly_available(), reason="pytest-randomly is not installed")),
])


@pytest.mark.uses_global_rng
@PLUGINS
@pytest.mark.parametrize("case", sorted(CASES))
def test_guard_catches(pytester, case, plugins):
    """Reseeding, drawing from numpy, a module-scoped fixture's draw and a generator-given loader's global draw all fail the test."""
    result = _run(pytester, CASES[case], "--loader=test_case:leaky" if "leaky" in CASES[case] else "-q", *plugins)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-2000:]
    result.stdout.fnmatch_lines(["*advanced or reseeded the global RNG of*"])


@pytest.mark.uses_global_rng
@PLUGINS
def test_guard_allows_marked_tests_and_dataloader_without_generator(pytester, plugins):
    """A test marked uses_global_rng, and torch's DataLoader built without a generator, pass."""
    body = ("import pytest, torch\n\n@pytest.mark.uses_global_rng\ndef test_marked():\n    torch.manual_seed(1)\n\n"
            "def test_default_loader(make_loader):\n"
            "    list(make_loader(torch.utils.data.TensorDataset(torch.arange(8)), batch_size=2, shuffle=True))\n")
    result = _run(pytester, body, *plugins)
    result.assert_outcomes(passed=2)
