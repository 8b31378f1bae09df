"""spec/meta's set-up: the promises check (test_promises.py) runs after every other test."""

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move spec/meta/test_promises.py's tests to the end: they read the ledger the other tests filled."""
    last = [item for item in items if item.path.name == "test_promises.py" and item.path.parent.name == "meta"]
    if last:
        items[:] = [item for item in items if item not in last] + last
