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


# --- appends by other processes, seen from the check before a call (CI failure of 2026-11-28) ---
#
# Under the state lock a process checks the log's tail before it sends; another process may at
# that moment be appending its outcome record (outside the state lock) or may have appended and
# not yet moved the ledger's anchor. Neither is damage; both once refused a healthy call.


def test_an_append_in_progress_is_waited_for_not_called_torn(tmp_path: Path) -> None:
    import fcntl
    import threading

    from engine.audit import chained_record_text

    path, ledger = _log(tmp_path, 2)
    last = json.loads(path.read_text().splitlines()[-1])
    _, line = chained_record_text({"seq": 3, "prev_hash": last["hash"], "trace_id": "other-process"})
    data = (line + "\n").encode()
    half_written, checking = threading.Event(), threading.Event()

    def other_process_appending() -> None:  # what AuditLog.append does, slowed down mid-write
        with open(path, "a+b") as f:  # its own open file description: flock sees another owner
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            f.write(data[:40])
            f.flush()
            half_written.set()
            checking.wait(5)
            threading.Event().wait(0.3)  # the check runs now, against the half-written line
            f.write(data[40:])
            f.flush()

    writer = threading.Thread(target=other_process_appending)
    writer.start()
    try:
        assert half_written.wait(5)
        checking.set()
        AuditLog(path, ledger).check_before_sending(ledger.audit_anchor())  # waits for the append; sound after it
    finally:
        writer.join(5)
    assert verify_log(path, ledger.audit_anchor()).ok


def _appended_without_anchor(path: Path, ledger: Ledger, n: int) -> None:
    """``n`` records appended by processes that have not yet moved the ledger's anchor."""
    for i in range(n):
        AuditLog(path, ledger).append({"trace_id": f"late{i}"}, anchor=False)


def test_a_log_several_records_ahead_of_the_anchor_is_sound(tmp_path: Path) -> None:
    from engine.audit import tail_problem

    path, ledger = _log(tmp_path, 3)
    _appended_without_anchor(path, ledger, 3)
    assert ledger.audit_anchor()[0] == 3 and len(path.read_text().splitlines()) == 6
    assert tail_problem(path, ledger.audit_anchor()) is None
    AuditLog(path, ledger).check_before_sending(ledger.audit_anchor())
    assert verify_log(path, ledger.audit_anchor()).ok
    # the same before any process moved the anchor: the records chain back to the start of the log
    fresh = Ledger(tmp_path / "fresh")
    _appended_without_anchor(tmp_path / "fresh" / "audit.jsonl", fresh, 3)
    assert fresh.audit_anchor() is None and tail_problem(tmp_path / "fresh" / "audit.jsonl", None) is None
    lines = (tmp_path / "fresh" / "audit.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "fresh" / "audit.jsonl").write_text("".join(lines[1:]))  # the first record gone
    assert "anchored none" in tail_problem(tmp_path / "fresh" / "audit.jsonl", None)


def test_a_log_ahead_of_the_anchor_must_still_chain_back_to_it(tmp_path: Path) -> None:
    import pytest

    from engine.audit import chained_record_text, tail_problem
    from engine.errors import AuditError

    path, ledger = _log(tmp_path, 3)
    _appended_without_anchor(path, ledger, 3)
    anchor = ledger.audit_anchor()
    good = path.read_text().splitlines(keepends=True)
    # the anchored record replaced by another whole record (hash consistent, but not the anchored one)
    other = json.loads(good[2])
    other["trace_id"] = "rewritten"
    _, rewritten = chained_record_text({k: v for k, v in other.items() if k != "hash"})
    path.write_text("".join(good[:2] + [rewritten + "\n"] + good[3:]))
    assert "does not follow the ledger's anchor" in tail_problem(path, anchor)
    with pytest.raises(AuditError):
        AuditLog(path, ledger).check_before_sending(anchor)
    # the anchored record replaced and every record after it chained anew: whole and chained, but
    # not the log the ledger anchored
    rechained, prev = good[:2], json.loads(good[1])["hash"]
    for i, text in enumerate(good[2:]):
        rec = {k: v for k, v in json.loads(text).items() if k != "hash"}
        rec["prev_hash"] = prev
        if i == 0:
            rec["trace_id"] = "rewritten"
        prev, line = chained_record_text(rec)
        rechained.append(line + "\n")
    path.write_text("".join(rechained))
    assert "does not follow the ledger's anchor" in tail_problem(path, anchor)
    # a record between the anchor and the end edited: its hash no longer matches
    edited = good[:4] + [good[4].replace('"late1"', '"LATE1"')] + good[5:]
    path.write_text("".join(edited))
    assert "does not follow the ledger's anchor" in tail_problem(path, anchor)
    # a record between them dropped: the chain is broken
    path.write_text("".join(good[:4] + good[5:]))
    assert "does not follow the ledger's anchor" in tail_problem(path, anchor)
    path.write_text("".join(good))
    assert tail_problem(path, anchor) is None


def test_lines_read_backwards_are_the_lines_reversed() -> None:
    """The reader the tail check walks back with, over every split of the data across blocks."""
    import io

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.audit import _lines_backwards

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.binary(max_size=9).map(lambda b: b.replace(b"\n", b"")), max_size=8), st.booleans(), st.integers(1, 12))
    def check(lines: list[bytes], final_end: bool, block: int) -> None:
        data = b"\n".join(lines) + (b"\n" if final_end else b"")
        assert list(_lines_backwards(io.BytesIO(data), block)) == list(reversed(data.split(b"\n")))

    check()


def test_space_is_reserved_beyond_the_end_and_nothing_of_it_is_read(tmp_path: Path, monkeypatch) -> None:
    """Issue 6: appends land in space reserved ahead (fallocate, FALLOC_FL_KEEP_SIZE), so an fsync
    need not commit new blocks; the file's size, its bytes and the chain are exactly the records."""
    import os
    import sys

    import pytest

    from engine import audit

    if not sys.platform.startswith("linux") or not audit._libc_fallocate():
        pytest.skip("no fallocate here: appends go on without a reserve")
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    if audit._fallocate is False:  # another test's file system refused it; this one may not
        monkeypatch.setattr(audit, "_fallocate", None)
    log.append({"trace_id": "t0", "execution_result": "NOOP"})
    st = os.stat(path)
    if audit._fallocate is False:
        pytest.skip("this file system does not reserve space")
    assert st.st_blocks * 512 >= audit._RESERVE_BYTES > st.st_size  # reserved, yet not part of the file
    for i in range(1, 40):
        log.append({"trace_id": f"t{i}", "pad": "x" * 40_000, "execution_result": "NOOP"})  # past the first reserve
    data = path.read_bytes()
    assert b"\0" not in data and len(data) == os.stat(path).st_size
    assert os.stat(path).st_blocks * 512 >= os.stat(path).st_size + audit._RESERVE_LOW  # a new reserve was taken
    assert [json.loads(x)["seq"] for x in data.splitlines()] == list(range(1, 41))
    assert verify_log(path, None).ok


def test_a_file_system_without_reserve_still_takes_every_append(tmp_path: Path, monkeypatch) -> None:
    from engine import audit

    calls = []

    def refused(*args):
        calls.append(args)
        return -1  # EOPNOTSUPP

    monkeypatch.setattr(audit, "_fallocate", refused)
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(3):
        log.append({"trace_id": f"t{i}", "execution_result": "NOOP"})
    assert len(calls) == 1 and audit._fallocate is False  # tried once, then not again
    assert verify_log(tmp_path / "audit.jsonl", None).records == 3


def test_a_python_without_ctypes_still_appends(tmp_path: Path, monkeypatch) -> None:
    """A Python built without libffi has no ctypes: the import raised ModuleNotFoundError out of
    AuditLog.append on every record, after the exchange call had been made (review 2026-11-28)."""
    import sys

    from engine import audit

    monkeypatch.setitem(sys.modules, "ctypes", None)  # import ctypes -> ModuleNotFoundError
    monkeypatch.setattr(audit, "_fallocate", None)
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(2):
        log.append({"trace_id": f"t{i}", "execution_result": "NOOP"})
    assert audit._fallocate is False and verify_log(tmp_path / "audit.jsonl", None).records == 2


def test_a_reserve_call_that_raises_never_fails_an_append(tmp_path: Path, monkeypatch) -> None:
    from engine import audit

    def broken(*args):
        raise TypeError("wrong argument types")

    monkeypatch.setattr(audit, "_fallocate", broken)
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"trace_id": "t0", "execution_result": "NOOP"})
    assert audit._fallocate is False and verify_log(tmp_path / "audit.jsonl", None).records == 1
