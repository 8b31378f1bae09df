"""docs/contract.md and its data (spec/conformance/contract.toml) stay true: every row names
at least one conformance test, every test id it names exists, every quote is in the
installed torch (torchdata for resume), every conformance test belongs to some row, and the
page is what tools/contract.py generates."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "spec" / "conformance"
_spec = importlib.util.spec_from_file_location("contract_tool", ROOT / "tools" / "contract.py")
contract_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(contract_tool)

CONTRACT = contract_tool.load()
ROWS = CONTRACT["row"]
#: Conformance tests that measure or record (the claims ledger) rather than pin a DataLoader promise.
NOT_PROMISES = {
    "spec/conformance/test_feeding.py::test_claim_any_dataset_works_with_any_loader",
    "spec/conformance/test_feeding.py::test_claim_minibatch_gd_needs_no_dataloader",
    "spec/conformance/test_shuffling.py::test_claim_shuffling_prevents_learning_order_patterns",
    "spec/conformance/test_parallel.py::test_claim_workers_speed_up_training_when_samples_cost_work",
    "spec/conformance/test_parallel.py::test_iterator_left_in_a_cycle_by_a_worker_error_shuts_down_slowly",
    "spec/conformance/test_devices.py::test_full_batch_training_moves_model_and_data",
    "spec/conformance/test_devices.py::test_compare_runs_on_the_device",
    "spec/conformance/test_devices.py::test_cuda_results_match_cpu_within_float_tolerance",
}


_collected: dict[str, set[str]] = {}


@pytest.fixture
def conformance_ids(pytester):
    """Every conformance test id, as pytest collects it (parameters included); collected once."""
    if "ids" not in _collected:
        items, _ = pytester.inline_genitems(str(CONFORMANCE), "-p", "no:cacheprovider", "-m", "", "--rootdir", str(ROOT))
        _collected["ids"] = {item.nodeid for item in items}
    ids = _collected["ids"]
    assert len(ids) > 100, f"collected only {len(ids)} conformance tests"
    return ids


def _matches(test: str, ids: set[str]) -> bool:
    if "[" in test:
        return test in ids
    return any(i.partition("[")[0] == test for i in ids)


def test_every_row_names_a_test_and_a_source():
    """Every row has a unique id, a known area, a promise, a source with a quote, and at least one test id."""
    seen = set()
    for row in ROWS:
        assert row["id"] not in seen, f"row id {row['id']!r} appears twice"
        seen.add(row["id"])
        assert row["area"] in contract_tool.AREAS, f"{row['id']}: unknown area {row['area']!r}"
        assert row["promise"].strip() and row["quote"].strip() and row["source"].strip(), f"{row['id']}: empty field"
        assert row["tests"], f"{row['id']}: names no conformance test"


def test_every_test_a_row_names_exists(conformance_ids):
    """Every test id a row names is a conformance test pytest collects (renamed or removed tests fail here)."""
    missing = [(row["id"], t) for row in ROWS for t in row["tests"] if not _matches(t, conformance_ids)]
    assert not missing, f"rows name tests that do not exist: {missing}"


def test_every_conformance_test_is_in_the_contract(conformance_ids):
    """Every conformance test function pins some row of the contract (or is a listed measurement)."""
    named = {t.partition("[")[0] for row in ROWS for t in row["tests"]}
    functions = {i.partition("[")[0] for i in conformance_ids}
    orphans = sorted(functions - named - NOT_PROMISES)
    assert not orphans, f"conformance tests no contract row names: {orphans}"


def test_quotes_are_in_torch_and_the_page_is_current():
    """Every quote is found in the installed torch/torchdata at the versions the contract names, and docs/contract.md is what tools/contract.py generates."""
    wrong = contract_tool.versions(CONTRACT)
    if wrong:
        pytest.skip("; ".join(wrong))
    for row in ROWS:
        assert contract_tool.locate(row["source"], row["quote"]) > 0
    assert contract_tool.DOC.read_text() == contract_tool.render(CONTRACT), (
        "docs/contract.md is not current: run python tools/contract.py")
