"""What the wheel holds: every package of batchfeed, and the conformance suite as batchfeed_spec."""

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="Python < 3.11 has no tomllib to read pyproject.toml with")

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_under_src_is_listed_for_the_wheel():
    """pyproject's explicit package list names every package under src/ and the two of batchfeed_spec."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    under_src = {".".join(p.parent.relative_to(ROOT / "src").parts) for p in (ROOT / "src").rglob("__init__.py")}
    assert under_src <= listed, f"packages missing from pyproject.toml's list: {sorted(under_src - listed)}"
    assert {"batchfeed_spec", "batchfeed_spec.conformance"} <= listed
    assert config["package-dir"]["batchfeed_spec"] == "spec"
