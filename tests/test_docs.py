"""Docs that are generated must not go stale."""

from pathlib import Path

from engine.cli import reason_codes_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_reason_codes_doc_is_current() -> None:
    doc = ROOT / "docs" / "reason-codes.md"
    assert doc.read_text() == reason_codes_markdown(), "run: ep4 reason-codes --markdown > docs/reason-codes.md"
