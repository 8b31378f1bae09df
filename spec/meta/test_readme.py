"""The README's short list of verdicts agrees with the generated ledger, docs/claims.md, which states the code's rules."""

import re
from pathlib import Path

import pytest

from batchfeed import claims
from spec.promises import kind, table_verdicts

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("verdict", "expected"), [("holds", "holds"), ("holds: because", "holds"),
                                                   ("holds only when x", "holds only"), ("refuted: y", "refuted")])
def test_kind(verdict, expected):
    """Verdicts are classified by their first words."""
    assert kind(verdict) == expected


def test_readme_verdicts_match_the_generated_ledger():
    """Every claim's verdict in README.md starts as docs/claims.md's does (same holds / refuted / condition)."""
    readme, ledger = ROOT / "README.md", ROOT / "docs" / "claims.md"
    if not readme.exists() or not ledger.exists():
        pytest.skip("README.md or docs/claims.md is not in this checkout")
    short = table_verdicts(readme.read_text(), 2)
    generated = table_verdicts(ledger.read_text(), 2)
    assert set(short) == set(generated) == set(claims.CLAIMS)
    for cid, verdict in short.items():
        core = verdict.split(" (")[0]
        assert kind(verdict) == kind(generated[cid]) and generated[cid].startswith(core), (
            f"{cid}: README says {verdict!r}, docs/claims.md says {generated[cid]!r}"
        )


def test_generated_ledger_states_the_claims_and_rules_of_the_code():
    """docs/claims.md quotes every claim and states every verdict rule word for word as batchfeed.claims has them."""
    ledger = ROOT / "docs" / "claims.md"
    if not ledger.exists():
        pytest.skip("docs/claims.md is not in this checkout")
    text = ledger.read_text()
    rules = dict(re.findall(r"^- \*\*(C\d+)\*\*: (.*)$", text, flags=re.M))
    quotes = table_verdicts(text, 1)
    assert rules == {cid: c.rule for cid, c in claims.CLAIMS.items()}, (
        "a rule changed in batchfeed.claims: regenerate docs/claims.md (pytest spec/ --claims-report=docs/claims.md)")
    assert quotes == {cid: c.quote for cid, c in claims.CLAIMS.items()}


def test_every_name_the_docs_import_still_imports():
    """Each `from batchfeed... import (...)` in README.md and docs/*.md names something that imports today."""
    import importlib

    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for path in texts:
        for module, names in re.findall(r"from (batchfeed[\w.]*) import \(?([\w,\s]+?)\)?\n(?!\s+\w)", path.read_text()):
            found += [(path.name, module, n.strip()) for n in names.replace("\n", " ").split(",") if n.strip()]
    assert len(found) >= 10, f"the docs' imports were not found: {found}"
    missing = [f"{doc}: {module}.{name}" for doc, module, name in found
               if not hasattr(importlib.import_module(module), name)]
    assert not missing, f"the docs import names that no longer exist: {missing}"
