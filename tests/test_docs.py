"""Docs that are generated must not go stale."""

from pathlib import Path

from engine.cli import reason_codes_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_reason_codes_doc_is_current() -> None:
    doc = ROOT / "docs" / "reason-codes.md"
    assert doc.read_text() == reason_codes_markdown(), "run: ep4 docs reason-codes > docs/reason-codes.md"


def test_gate_variables_doc_is_current() -> None:
    from engine.activation import variables_markdown

    doc = ROOT / "docs" / "gate-variables.md"
    assert doc.read_text() == variables_markdown(), "run: ep4 docs gate-variables > docs/gate-variables.md"
