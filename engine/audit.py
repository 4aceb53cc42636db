"""The mandatory audit log (spec §8.2): append-only JSONL, hash-chained, fsynced (imperative shell).

Every record carries the §8.2 fields (trace_id, policy_decision_id, action_id, execution_result,
timestamp, reason_code, exchange_response) plus what replay needs: the exact decision text, the
context and state view the pure core saw, the bundle / constraints / input digests, the gate trace
and the full result. Each record names the previous record's hash; the ledger keeps the hash of the
last record, so a truncated tail is detected too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from .errors import AuditError
from .numbers import canonical_json, json_piece, loads

__all__ = [
    "AuditError", "AuditLog", "GENESIS", "RepairReport", "SerialisedDict", "SerialisedList", "VerifyReport", "read_records",
    "record_hash", "repair_log", "tail_problem", "verify_log",
]

GENESIS = "sha256:" + "0" * 64


class Anchor(Protocol):
    def audit_anchor(self) -> tuple[int, str] | None: ...

    def set_audit_anchor(self, seq: int, record_hash: str) -> None: ...


def record_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def _lines_backwards(f: Any, block: int = 65536) -> Iterator[bytes]:
    """The file's lines from the last to the first, without their line ends, read in blocks from
    the end (one line in memory at a time, plus a block): ``reversed(data.split(b"\n"))``, so after
    a final line end the first is b""."""
    f.seek(0, os.SEEK_END)
    pos, rest = f.tell(), b""
    while pos > 0:
        step = min(block, pos)
        pos -= step
        f.seek(pos)
        lines = (f.read(step) + rest).split(b"\n")
        rest = lines[0]
        yield from reversed(lines[1:])
    yield rest


def _last_record(f: Any) -> dict[str, Any] | None:
    f.seek(0, os.SEEK_END)
    if f.tell() == 0:
        return None
    line = next((x for x in _lines_backwards(f) if x), b"")
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse (a hostile or damaged line)
        name = f.name if isinstance(getattr(f, "name", None), str) else "the audit log"
        raise AuditError(
            f"the audit log {name} ends in a damaged record (torn by a crash mid-write, or not JSON), so no record can "
            f"follow it. Run `ep4 audit verify {name}` to see it and `ep4 audit repair {name}` to set the damaged bytes aside"
            " (add --halt to set the trading state HALTED in the same step)"
        ) from None


def _file_id(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SerialisedDict(dict):
    """A top-level record value whose canonical JSON is already known (``text``), e.g. the result,
    assembled from pieces kept with immutable objects. Built once and never changed; to everything
    else it is the plain dict it holds. tests/test_performance.py checks ``text`` against
    canonical_json of the value for every kind of record."""

    __slots__ = ("text",)


class SerialisedList(list):
    """:class:`SerialisedDict` for a list value (the gate trace)."""

    __slots__ = ("text",)


_SERIALISED = (SerialisedDict, SerialisedList)


def _value_text(value: Any) -> str:
    return value.text if type(value) in _SERIALISED else json_piece(value)


def chained_record_text(record: dict[str, Any]) -> tuple[str, str]:
    """(``record_hash(record)``, ``canonical_json`` of the record with that ``hash`` added), each
    top-level value serialised once (or not at all: a :class:`SerialisedDict` / :class:`SerialisedList`
    brings its text): canonical JSON of an object is its items in key order, joined, so both texts
    are built from the same pieces (byte for byte what the two separate calls give)."""
    parts = {k: json_piece(k) + ":" + _value_text(v) for k, v in record.items() if k != "hash"}
    body = "{" + ",".join(parts[k] for k in sorted(parts)) + "}"
    digest = "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()
    parts["hash"] = '"hash":' + canonical_json(digest)
    return digest, "{" + ",".join(parts[k] for k in sorted(parts)) + "}"


class AuditLog:
    def __init__(self, path: str | Path, anchor: Anchor | None = None) -> None:
        self.path = Path(path)
        self.anchor = anchor
        # (device, inode, size, mtime) of the log right after this process's last fsynced append,
        # with that record's seq, hash and prev_hash: while the file is exactly as this process left
        # it, its tail is that record and is not read back and re-hashed before every call (issue 6)
        self._tail: tuple[tuple[int, int, int, int], dict[str, Any]] | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot create {self.path.parent}: {exc}") from None

    def check_before_sending(self, anchor: tuple[int, str] | None) -> None:
        """Refuse (AuditError) unless the outcome of an exchange call could be recorded: the log is a
        writable regular file (or can be created), its last record is whole and its hash checks, and
        that record is the one the ledger anchored or chains back to it (records appended by processes
        that have not moved the anchor yet, or that stopped before they did): :func:`tail_problem`.
        Nothing is sent while this fails."""
        if self.path.exists() and not self.path.is_file():
            raise AuditError(f"the audit log {self.path} is not a regular file; nothing was sent")
        try:
            with open(self.path, "ab"):
                pass
        except OSError as exc:
            raise AuditError(f"the audit log {self.path} cannot be written ({exc.strerror or exc}); nothing was sent") from None
        problem = self._known_tail_problem(anchor)
        if problem is _UNKNOWN:
            problem = tail_problem(self.path, anchor)
        if problem:
            raise AuditError(
                f"the audit log {self.path} is damaged: {problem}; nothing was sent. "
                "Run `ep4 audit verify` to see it and `ep4 audit repair` to set the damaged bytes aside"
                " (add --halt to set the trading state HALTED in the same step)"
            )

    def _known_tail_problem(self, anchor: tuple[int, str] | None) -> str | None:
        """The tail check without reading the file, when the file is exactly as this process's last
        append left it (same device, inode, size and mtime) and that record is or follows the anchored
        one; ``_UNKNOWN`` otherwise (the file is read: :func:`tail_problem`)."""
        if self._tail is None:
            return _UNKNOWN
        try:
            same = _file_id(os.stat(self.path)) == self._tail[0]
        except OSError:
            return _UNKNOWN
        return None if same and _tail_against_anchor(self._tail[1], anchor) is None else _UNKNOWN

    def holds_records(self) -> bool:
        """Whether the log is a file with anything in it (a record, or the bytes of a damaged one)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_size > 0

    def holds_more_than_one_unanchored_refusal(self) -> bool:
        """Whether the log holds anything beyond what can stand beside an empty ledger without one having
        been lost: trading-state records (``ep4 halt`` / ``resume`` before any decision; one whose anchor a
        crash kept from being written) and, last, the one record a crash can leave before the first
        ledger row (the first decision's, refused by Rules 1-4, appended just before the process died).
        Anything else (a record of an exchange call, a second decision, damaged bytes, more than
        _REMNANTS_MAX records) means the ledger that recorded them was lost, emptied or replaced."""
        if not self.holds_records():
            return False
        try:
            with open(self.path, "rb") as f:
                for count, line in enumerate(f):
                    if count >= _REMNANTS_MAX or not line.endswith(b"\n"):
                        return True
                    try:
                        record = json.loads(line)
                    except (ValueError, RecursionError):
                        return True
                    if not isinstance(record, dict):
                        return True
                    if record.get("kind") == "trading_state":
                        continue
                    refusal = record.get("kind") == "execution" and not needs_a_ledger_row(record)
                    return not refusal or bool(f.read(1))  # a refusal, and nothing after it
        except OSError:
            return True
        return False

    def last_record(self) -> dict[str, Any] | None:
        """The newest record (read from the end of the file), or None for an empty log."""
        try:
            with open(self.path, "rb") as f:
                return _last_record(f)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AuditError(f"cannot read the audit log {self.path}: {exc}") from None

    def append(self, record: dict[str, Any], *, anchor: bool = True) -> dict[str, Any]:
        """Chain, write, flush and fsync one record; return it with ``seq``, ``prev_hash``, ``hash``.
        ``anchor=False``: the caller writes the anchor (seq, hash) itself, with its ledger row."""
        try:
            with open(self.path, "a+b") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                st = os.fstat(f.fileno())
                last = self._tail[1] if self._tail is not None and self._tail[0] == _file_id(st) else _last_record(f)
                full = {"seq": (last["seq"] + 1) if last else 1, "prev_hash": last["hash"] if last else GENESIS, **record}
                full["hash"], line = chained_record_text(full)
                data = (line + "\n").encode("utf-8")
                f.seek(0, os.SEEK_END)
                _reserve(f.fileno(), st, len(data))
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                self._tail = (_file_id(os.fstat(f.fileno())),
                              {"seq": full["seq"], "hash": full["hash"], "prev_hash": full["prev_hash"]})
        except OSError as exc:
            self._tail = None
            raise AuditError(f"cannot write the audit log {self.path}: {exc}") from None
        if anchor and self.anchor is not None:
            self.anchor.set_audit_anchor(full["seq"], full["hash"])
        return full


_REMNANTS_MAX = 64  # trading-state changes before any decision: more than this beside an empty ledger is not that


# Space is reserved ahead of the log's end (Linux fallocate with FALLOC_FL_KEEP_SIZE: the file's size,
# and so every reader, sees nothing of it), so an append lands in blocks already allocated and its fsync
# need not also commit their allocation: on the 2-core machine a 10 KB record's append + fsync took
# 50-65 us less in interleaved runs (issue 6; docs/performance.md, eleventh landing). A log whose
# reserve is used up gets the next one. Where the call is not there or fails (another system, a file
# system without it), appends go on as before: it saves time and changes nothing else.
_RESERVE_BYTES = 1 << 20  # how much is reserved at a time
_RESERVE_LOW = 64 << 10  # a new reserve when less than this is left beyond the record being written
_FALLOC_FL_KEEP_SIZE = 1
_fallocate: Any = None  # the libc call once looked up; False where there is none


def _reserve(fd: int, st: os.stat_result, size: int) -> None:
    """Reserve space beyond the end of the log open on ``fd`` (``st``: its fstat) when what is left
    of the last reserve would not hold ``size`` more bytes and a margin."""
    global _fallocate
    if st.st_blocks * 512 >= st.st_size + size + _RESERVE_LOW or not stat.S_ISREG(st.st_mode):
        return
    call = _fallocate
    try:
        if call is None:
            call = _fallocate = _libc_fallocate()
        if call and call(fd, _FALLOC_FL_KEEP_SIZE, st.st_size, max(_RESERVE_BYTES, size + _RESERVE_LOW)) != 0:
            _fallocate = False  # not supported here (EOPNOTSUPP, ...): never tried again by this process
    except Exception:  # never the reason an append fails: the reserve only saves time
        _fallocate = False


def _libc_fallocate() -> Any:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes  # a Python built without libffi has none (ImportError)

        call = ctypes.CDLL(None, use_errno=True).fallocate
    except (ImportError, OSError, AttributeError):
        return False
    call.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    call.restype = ctypes.c_int
    return call


_UNKNOWN = "?"


# How far the log may run ahead of the ledger's anchor. Each process appends its record, releases
# the log, then moves the anchor in its ledger transaction; a record's outcome is appended outside the
# state lock. So a check can find several records no anchor names yet (one per process between its
# append and its anchor), or one left by a process that stopped in between. The bound only limits how
# far back the check reads; it is far above any number of processes sharing a state directory.
MAX_RECORDS_AHEAD = 4096


def tail_problem(path: str | Path, anchor: tuple[int, str] | None) -> str | None:
    """What is wrong with the end of the log, judged against the ledger's anchor; None if sound.

    Read under a shared lock on the log: an append in progress (another process, exclusive lock,
    see :meth:`AuditLog.append`) finishes before the tail is read, so it is never taken for a torn
    record. A crash mid-append releases the lock and leaves the torn bytes, which are reported."""
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return f"the ledger anchored seq {anchor[0]}, but the log is empty" if anchor else None
            f.seek(max(0, size - 1))
            if f.read(1) != b"\n":
                return "the last record is torn (no end of line)"
            try:
                last = _last_record(f)
            except AuditError:
                return "the last record is not valid JSON"
            if not isinstance(last, dict) or last.get("hash") != record_hash(last):
                return "the last record's hash does not match its content"
            problem = _tail_against_anchor(last, anchor)
            if problem is not None and _chains_back_to(f, last, anchor):
                return None
            return problem
    except FileNotFoundError:
        return f"the ledger anchored seq {anchor[0]}, but the log is missing" if anchor else None
    except OSError as exc:
        return f"cannot be read ({exc})"


def _chains_back_to(f: Any, last: dict[str, Any], anchor: tuple[int, str] | None) -> bool:
    """Whether the records before ``last`` (whose hash is checked) lead back, whole, in sequence and
    chained, to the record the ledger anchored (to the start of the log if it anchored none), at most
    :data:`MAX_RECORDS_AHEAD` records back: the log is then the anchored one with records appended by
    processes that have not moved the anchor yet. Read from the end, one record at a time."""
    a_seq, a_hash = anchor if anchor is not None else (0, GENESIS)
    seq = last.get("seq")
    if type(seq) is not int or not a_seq < seq <= a_seq + MAX_RECORDS_AHEAD:
        return False
    want_seq, want_hash = seq - 1, last.get("prev_hash")
    lines = (line for line in _lines_backwards(f) if line)
    next(lines, None)  # the last record's own line
    while want_seq >= max(a_seq, 1):  # down to the anchored record itself (its hash is read and checked)
        try:
            rec = json.loads(next(lines, b""))
        except (ValueError, RecursionError):
            return False
        if not isinstance(rec, dict) or rec.get("seq") != want_seq or rec.get("hash") != want_hash or want_hash != record_hash(rec):
            return False
        if want_seq == a_seq:
            break
        want_seq, want_hash = want_seq - 1, rec.get("prev_hash")
    return want_hash == a_hash  # with no anchor: the first record's prev_hash is GENESIS


def _tail_against_anchor(last: dict[str, Any], anchor: tuple[int, str] | None) -> str | None:
    """Whether a sound last record (its hash checked) is the one the ledger anchored, or the one
    just after it (written by a process that stopped before it updated the anchor). A log further
    ahead is judged by :func:`_chains_back_to`."""
    seq = last.get("seq")
    if anchor is None:
        return None if seq == 1 else f"the log ends at seq {seq} but the ledger anchored none"
    a_seq, a_hash = anchor
    if seq == a_seq and last.get("hash") == a_hash:
        return None
    if seq == a_seq + 1 and last.get("prev_hash") == a_hash:
        return None  # written, then the process stopped before the anchor: the chain holds
    if isinstance(seq, int) and seq < a_seq:
        return f"truncated: the ledger anchored seq {a_seq}, the log ends at seq {seq}"
    return f"the last record (seq {seq}) does not follow the ledger's anchor (seq {a_seq})"


def read_records(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, read as it goes; bytes that are not UTF-8 are replaced."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            yield lineno, raw.decode("utf-8", "replace")


@dataclass
class VerifyReport:
    records: int = 0
    problems: list[str] = field(default_factory=list)
    traces: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(
    path: str | Path, anchor: tuple[int, str] | None = None, ledger_traces: dict[str, tuple[str, str]] | None = None
) -> VerifyReport:
    """Check every record's hash, the chain, the sequence, the tail against ``anchor``, and (given
    the ledger's rows) that every row the ledger holds has an audit record. The log is read line by
    line; a line that is not a record (damaged, nested too deeply, not UTF-8) is a reported problem."""
    report = VerifyReport()
    prev_hash, expected_seq = GENESIS, 1
    last: dict[str, Any] | None = None
    anchored_hash: str | None = None
    try:
        for lineno, text in read_records(path):
            where = f"line {lineno}"
            if not text.endswith("\n"):
                report.problems.append(f"{where}: truncated record (no end of line)")
            try:
                rec = loads(text)
            except (ValueError, RecursionError):
                rec = None
            if not isinstance(rec, dict):
                report.problems.append(f"{where}: not a JSON record (truncated or damaged)")
                continue
            seq = rec.get("seq")
            try:
                intact = rec.get("hash") == record_hash(rec)
            except (TypeError, ValueError, UnicodeError):
                intact = False
            if not intact:
                report.problems.append(f"{where} (seq {seq}): edited: the record's hash does not match its content")
            if seq != expected_seq:
                kind = "reordered" if isinstance(seq, int) and seq < expected_seq else "dropped"
                report.problems.append(f"{where}: {kind}: expected seq {expected_seq}, found {seq}")
            if rec.get("prev_hash") != prev_hash:
                report.problems.append(f"{where} (seq {seq}): chain broken: prev_hash does not name the record before it")
            prev_hash = rec.get("hash", "")
            expected_seq = (seq + 1) if isinstance(seq, int) and not isinstance(seq, bool) else expected_seq + 1
            last = rec
            if anchor is not None and seq == anchor[0] and anchored_hash is None:
                anchored_hash = rec.get("hash")
            if isinstance(rec.get("trace_id"), str):
                report.traces.add(rec["trace_id"])
            if ledger_traces is not None:
                problem = _without_its_row(rec, ledger_traces)
                if problem:
                    report.problems.append(f"{where} (seq {seq}): {problem}")
            report.records += 1
    except OSError as exc:
        report.problems.append(f"cannot read {path}: {exc}")
        return report
    if anchor is not None:
        seq, h = anchor
        last_seq = last.get("seq") if last else 0
        if not isinstance(last_seq, int) or last_seq < seq:
            report.problems.append(f"truncated: the ledger recorded seq {seq} as written, the log ends at seq {last_seq}")
        elif anchored_hash is not None and anchored_hash != h:
            report.problems.append(f"seq {seq}: differs from the hash the ledger recorded when it was written")
    for trace, (decision_id, action_id) in sorted((ledger_traces or {}).items()):
        if trace not in report.traces:
            report.problems.append(
                f"unaudited: the ledger holds decision {decision_id} / action {action_id} (trace {trace}) but no audit record names it"
            )
    return report


def needs_a_ledger_row(rec: Any) -> bool:
    """A record the ledger holds a row for, whatever happened after it was written: an exchange call
    (its write-ahead row is written before the call), a forced cancel, a recovery or a reconcile
    (both about a row). Refusals need none: those of inputs that never became a decision have no row,
    and a crash can come between a refusal's record and its row."""
    if not isinstance(rec, dict):
        return False
    kind = rec.get("kind")
    return kind in ("forced_cancel", "recovery", "reconcile") or (
        kind == "execution" and (rec.get("reply") is not None or rec.get("sent_timestamp") is not None))


def records_after(path: str | Path, seq: int) -> list[dict[str, Any]]:
    """The records after seq ``seq``, oldest first, read from the end (at most MAX_RECORDS_AHEAD: a log
    further ahead of its anchor is refused by the tail check anyway); lines that are not records are
    left to that check."""
    out: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            for line in _lines_backwards(f):
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError):
                    break
                if not isinstance(rec, dict) or not isinstance(rec.get("seq"), int) or rec["seq"] <= seq or len(out) >= MAX_RECORDS_AHEAD:
                    break
                out.append(rec)
    except OSError:
        return []
    out.reverse()
    return out


def first_record_needing_a_row(path: str | Path) -> dict[str, Any] | None:
    """The first record of the log that the ledger must hold a row for (needs_a_ledger_row), read from
    the start until one is found."""
    try:
        for _, text in read_records(path):
            try:
                rec = json.loads(text)
            except (ValueError, RecursionError):
                continue
            if needs_a_ledger_row(rec):
                return rec
    except OSError:
        return None
    return None


def _without_its_row(rec: dict[str, Any], ledger_traces: dict[str, tuple[str, str]]) -> str | None:
    """Why a record the ledger must hold a row for (needs_a_ledger_row) names none, or another decision
    than its row; None when it does or need not. A record appended with a correct hash after the
    anchor (a forged "recovery ... SUCCESS ORDER_FILLED") passed verify (review)."""
    if not needs_a_ledger_row(rec):
        return None
    kind = rec.get("kind")
    trace = rec.get("trace_id")
    ids = ledger_traces.get(trace) if isinstance(trace, str) else None
    if ids is None:
        return f"a {kind} record of trace {trace} that no ledger row holds: forged, or from another state directory"
    if (rec.get("policy_decision_id"), rec.get("action_id")) != ids:
        return (f"a {kind} record of trace {trace} names decision {rec.get('policy_decision_id')} / action {rec.get('action_id')}, "
                f"the ledger's row of that trace {ids[0]} / {ids[1]}")
    return None


@dataclass
class RepairReport:
    kept: int = 0  # whole, chained records left in place
    removed_bytes: int = 0
    set_aside: Path | None = None
    record: dict[str, Any] | None = None  # the audit_repair record appended


def _sound_prefix(data: bytes, hashes: list[str] | None = None) -> tuple[int, int, str]:
    """(bytes, records, last hash) of the longest run of whole, valid, chained records at the start
    (``hashes``: filled with each of their hashes, in order)."""
    offset, count, prev = 0, 0, GENESIS
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            break
        try:
            rec = loads(data[offset:end].decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            break
        if not isinstance(rec, dict) or rec.get("seq") != count + 1 or rec.get("prev_hash") != prev or rec.get("hash") != record_hash(rec):
            break
        offset, count, prev = end + 1, count + 1, rec["hash"]
        if hashes is not None:
            hashes.append(prev)
    return offset, count, prev


def repair_log(path: str | Path, anchor: Any | None, *, reason: str = "operator repair") -> RepairReport:
    """``ep4 audit repair``: set aside everything after the last sound record (the exact bytes, in
    ``<log>.damaged-<n>``), truncate the log there, and append an ``audit_repair`` record saying so
    (how many bytes, their sha256, where they went, which seq the ledger had anchored). The anchor is
    moved to that record. Nothing is deleted and the chain continues."""
    log = Path(path)
    report = RepairReport()
    with open(log, "r+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        data = f.read()
        hashes: list[str] = []
        keep, count, prev = _sound_prefix(data, hashes)
        anchored = anchor.audit_anchor() if anchor is not None else None
        if anchored and 0 < anchored[0] <= count and hashes[anchored[0] - 1] != anchored[1]:
            # the ledger's anchor names a sound record of this log by seq, with another hash: the ledger
            # belongs to another log (a wrong --state-dir); repairing would move its anchor onto this one
            raise AuditError(
                f"{log}: the ledger anchored seq {anchored[0]} with hash {anchored[1]}, and this log's record {anchored[0]} has "
                f"{hashes[anchored[0] - 1]}: the ledger and the log do not belong together (check --state-dir); nothing was changed")
        report.kept = count
        damaged = data[keep:]
        if damaged:
            n = 1
            while log.with_name(f"{log.name}.damaged-{n}").exists():
                n += 1
            aside = log.with_name(f"{log.name}.damaged-{n}")
            with open(aside, "xb") as out:
                out.write(damaged)
                out.flush()
                os.fsync(out.fileno())
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
            report.removed_bytes, report.set_aside = len(damaged), aside
        record = {
            "kind": "audit_repair",
            "reason": reason,
            "removed_bytes": len(damaged),
            "removed_sha256": "sha256:" + hashlib.sha256(damaged).hexdigest(),
            "set_aside": report.set_aside.name if report.set_aside else None,
            "ledger_anchor_before": list(anchored) if anchored else None,
            "records_lost": max(0, anchored[0] - count) if anchored else 0,
        }
        full = {"seq": count + 1, "prev_hash": prev, **record}
        full["hash"] = record_hash(full)
        f.seek(0, os.SEEK_END)
        f.write((canonical_json(full) + "\n").encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
    if anchor is not None:
        anchor.reset_audit_anchor(full["seq"], full["hash"])
    report.record = full
    return report
