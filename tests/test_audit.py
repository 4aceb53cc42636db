"""The audit log: hash chain, fsync'd appends, and tamper detection with the ledger anchor."""

from __future__ import annotations

import json
from pathlib import Path

from engine.audit import AuditLog, verify_log
from engine.ledger import Ledger


def _log(tmp_path: Path, n: int = 4) -> tuple[Path, Ledger]:
    ledger = Ledger(tmp_path)
    log = AuditLog(tmp_path / "audit.jsonl", ledger)
    for i in range(n):
        log.append({"trace_id": f"t{i}", "policy_decision_id": f"d{i}", "execution_result": "NOOP", "reason_code": "DRY_RUN"})
    return tmp_path / "audit.jsonl", ledger


def test_chain_verifies(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path)
    report = verify_log(path, ledger.audit_anchor())
    assert report.ok and report.records == 4
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4]
    assert all(b["prev_hash"] == a["hash"] for a, b in zip(lines, lines[1:]))


def test_edited_record_is_named(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"NOOP"', '"SUCCESS"')
    path.write_text("".join(lines))
    report = verify_log(path, ledger.audit_anchor())
    assert not report.ok and any("line 2 (seq 2): edited" in p for p in report.problems)


def test_dropped_record(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:1] + lines[2:]))
    report = verify_log(path, ledger.audit_anchor())
    assert any("dropped: expected seq 2, found 3" in p for p in report.problems)


def test_reordered_records(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    problems = verify_log(path, ledger.audit_anchor()).problems
    assert any("expected seq 2, found 3" in p for p in problems) and any("reordered" in p for p in problems)


def test_truncated_tail_detected_with_the_ledger_anchor(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path)
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]))  # a whole record dropped from the end: the chain alone can't tell
    assert verify_log(path).ok
    problems = verify_log(path, ledger.audit_anchor()).problems
    assert any("truncated: the ledger recorded seq 4" in p for p in problems)


def test_partially_written_record(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) - 30])
    problems = verify_log(path, ledger.audit_anchor()).problems
    assert any("line 4" in p and "truncated" in p for p in problems)


def test_appends_continue_the_chain_across_writers(tmp_path: Path) -> None:
    path, ledger = _log(tmp_path, 2)
    AuditLog(path, ledger).append({"trace_id": "again"})
    assert verify_log(path, ledger.audit_anchor()).ok
