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


def test_embedding_example_runs(monkeypatch, capsys) -> None:
    """The python block of docs/embedding.md, executed as written (from the repo root)."""
    text = (ROOT / "docs" / "embedding.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "docs/embedding.md", "exec"), {"__name__": "embedding_example"})
    assert capsys.readouterr().out.strip() == "0.010"
