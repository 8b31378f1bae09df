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
