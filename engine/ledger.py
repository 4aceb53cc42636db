"""The execution ledger: SQLite in WAL mode under the state directory (imperative shell).

A write-ahead row (decision, action, clientOrderId, digests) is committed *before* the exchange
call; the outcome is written after. Any row for a (decision_id, action_id) — finished, or left
in flight by a process that died — makes the decision a duplicate (spec §6.2, §6.3: never executed
again). The :class:`StateView` the gates read is derived from these rows.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import os
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import LedgerError
from .models import ExecutionRecord, StateView

__all__ = ["IN_DOUBT", "IN_DOUBT_CODES", "TRADING_STATES", "Ledger", "LedgerError"]

# An attempt whose outcome was never recorded (the process died between write-ahead and ack).
IN_DOUBT = "OUTCOME_UNKNOWN"
TRADING_STATES = ("ACTIVE", "REDUCING", "HALTED")
# Outcomes after which the order may or may not exist on the exchange (Binance: 5xx = unknown status),
# or exists in a state the reply does not settle: an HTTP 200 reply that does not match the order sent,
# names a status ep4 does not know, or carries a time outside the accepted window (spec §4 Rule 6:
# ambiguous). `ep4 reconcile` asks the exchange about each.
IN_DOUBT_CODES = (IN_DOUBT, "EXCHANGE_TIMEOUT", "EXCHANGE_NO_ACK", "EXCHANGE_STATUS_UNKNOWN", "ACK_MALFORMED",
                  "ACK_MISMATCH", "ACK_UNKNOWN_STATUS", "ACK_TIMESTAMP_INCONSISTENT")
# ledger rows kept as records by one Ledger (~1 KB each with their derived forms); a state view holds
# the rows of one lookback window, far fewer
_RECORD_CACHE_SIZE = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id        TEXT NOT NULL,
    action_id          TEXT NOT NULL,
    action_type        TEXT NOT NULL,
    symbol             TEXT,
    client_order_id    TEXT,
    timestamp          INTEGER NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('IN_FLIGHT', 'DONE')),
    result             TEXT,
    reason_code        TEXT,
    attempted          INTEGER NOT NULL,
    opens              INTEGER NOT NULL,
    trace_id           TEXT NOT NULL,
    input_digest       TEXT NOT NULL,
    bundle_digest      TEXT NOT NULL,
    constraints_digest TEXT NOT NULL,
    arms_cooldown      INTEGER,
    reconciled         TEXT,
    venue              TEXT,
    UNIQUE (decision_id, action_id)
);
CREATE INDEX IF NOT EXISTS executions_ts ON executions (timestamp);
CREATE TABLE IF NOT EXISTS audit_anchor (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"""


# What arms the spec §6.3 cooldown, as the state view reads it: state.arms_cooldown() decided each row
# when it was written; in doubt (IN_FLIGHT) arms; rows written before that column existed follow the
# old rule. One text: the partial index below serves the query only if their conditions are the same.
_ARMS_COOLDOWN = (
    "status = 'IN_FLIGHT' OR arms_cooldown = 1 "
    "OR (arms_cooldown IS NULL AND result = 'FAILED_SAFE' AND reason_code != 'COOLDOWN_ACTIVE')"
)

# The state view's reads cost the lookback window, not the whole ledger (issue 6): without these, the
# newest arming failure was found by scanning every row (50 ms per decision at 100,000 rows), the
# newest call by scanning back past every refusal since it, and the orphans of a dead process by
# scanning every row at each start. Created after the column migration (they name its columns).
_INDEXES = f"""
CREATE INDEX IF NOT EXISTS executions_attempted ON executions (timestamp) WHERE attempted = 1;
CREATE INDEX IF NOT EXISTS executions_arming ON executions (timestamp) WHERE {_ARMS_COOLDOWN};
CREATE INDEX IF NOT EXISTS executions_in_flight ON executions (status) WHERE status = 'IN_FLIGHT';
"""


# the write-ahead row (Ledger.write_ahead); tests/bench/bench_exchange.py times the same statement bare
WRITE_AHEAD_SQL = (
    "INSERT INTO executions (decision_id, action_id, action_type, symbol, client_order_id, timestamp, "
    "status, result, reason_code, attempted, opens, trace_id, input_digest, bundle_digest, constraints_digest, venue) "
    "VALUES (?, ?, ?, ?, ?, ?, 'IN_FLIGHT', NULL, NULL, 1, ?, ?, ?, ?, ?, ?)"
)

_ANCHOR_SQL = (
    "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash WHERE excluded.seq > audit_anchor.seq"
)


class _Window:
    """Every attempted row with ``timestamp >= low``, sorted by (timestamp, seq), as of SQLite's
    ``data_version`` ``version`` plus this connection's own writes since (rows above ``hi``
    inserted, rows in :attr:`Ledger._touched` updated). Three parallel lists: the sort ``keys``
    (timestamp, seq), the ``records`` and the ``refs`` a state view gives (the seq of a finished
    row, None for one in flight), so a view is slices. See :meth:`Ledger._window_rows`."""

    __slots__ = ("version", "low", "hi", "keys", "records", "refs")

    def __init__(self, version: int, low: int, hi: int, rows: list[tuple[int, str, ExecutionRecord]]) -> None:
        self.version, self.low, self.hi = version, low, hi
        self.keys = [(r[2].timestamp, r[0]) for r in rows]
        self.records = [r[2] for r in rows]
        self.refs = [r[0] if r[1] == "DONE" else None for r in rows]

    def put(self, i: int | None, row: tuple[int, str, ExecutionRecord]) -> None:
        """Insert ``row`` in order (``i`` None) or replace the row at ``i`` with it."""
        seq, status, record = row
        ref = seq if status == "DONE" else None
        if i is None:
            i = bisect.bisect(self.keys, (record.timestamp, seq))
            self.keys.insert(i, (record.timestamp, seq))
            self.records.insert(i, record)
            self.refs.insert(i, ref)
        else:
            self.records[i], self.refs[i] = record, ref

    def index_of(self, key: tuple[str, str]) -> int | None:
        """Where the row for (decision_id, action_id) is, searched from the newest (a row completed
        is almost always one written just before)."""
        records = self.records
        for i in range(len(records) - 1, -1, -1):
            if records[i].decision_id == key[0] and records[i].action_id == key[1]:
                return i
        return None

    def view(self, low: int, high: int) -> tuple[list[ExecutionRecord], list[int | None]]:
        """(records, refs) with ``low <= timestamp <= high``; rows older than ``low`` are dropped
        (a view further back than the window reaches reads it whole again)."""
        start = bisect.bisect_left(self.keys, (low,))
        if start > 0:
            for column in (self.keys, self.records, self.refs):
                del column[:start]
            self.low = low
        end = bisect.bisect_left(self.keys, (high + 1,))
        return self.records[:end], self.refs[:end]


class Ledger:
    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self._record_cache: dict[tuple, ExecutionRecord] = {}
        self._window: _Window | None = None  # the state view's rows, kept between views (see _window_rows)
        self._touched: set[tuple[str, str]] = set()  # rows this connection updated since the window was read
        self._inserted = False  # whether this connection wrote an attempted row since the window was read
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot open the ledger in {state_dir}: {exc}") from None
        self.path = self.dir / "ledger.sqlite"
        # One process at a time opens the ledger (creates it, turns on WAL, creates or migrates its
        # tables). SQLite answers a second connection turning on WAL while the first does with "database
        # is locked" at once, without waiting for its busy timeout: two processes starting together on
        # a new state directory failed so (CI, 2026-11-28); and two migrating an old ledger would both
        # add the same column. Nothing else is waited for while it is held (only SQLite's own busy
        # timeout), so it cannot deadlock with the state and in-flight locks.
        with self._flock("ledger-open.lock", fcntl.LOCK_EX):
            try:
                self._db = sqlite3.connect(self.path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                # made by this open (a missing or empty file): an audit log beside it that already holds
                # records then outlived the ledger that recorded them (engine.executor refuses to send)
                self.created = self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'executions'").fetchone() is None
                self._db.executescript(_SCHEMA)
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(executions)")}
                for column in ("arms_cooldown INTEGER", "reconciled TEXT", "venue TEXT"):  # ledgers from before issue 7 / 2026-11-28
                    if column.split()[0] not in columns:
                        self._db.execute(f"ALTER TABLE executions ADD COLUMN {column}")
                self._db.executescript(_INDEXES)
            except (OSError, sqlite3.Error) as exc:
                raise LedgerError(f"cannot open the ledger in {state_dir}: {exc}") from None

    @contextmanager
    def state_lock(self) -> Iterator[None]:
        """Exclusive, across processes, for this state directory: held from reading the state view to
        the write-ahead row, so two processes never both pass a frequency, interval or exposure gate
        on the same history (spec §5: the gates hold under concurrency). The lock covers what the
        gates read, which is this whole ledger, whatever account a context names: a lock per account
        let two accounts sharing a state directory both pass on the same history (CI, 2026-11-28)."""
        with self._flock("state.lock", fcntl.LOCK_EX):
            yield

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Shared while a call is in flight (write-ahead row written, outcome not yet): recovery of
        rows left IN_FLIGHT by a process that died waits until no call is in flight."""
        with self._flock("in-flight.lock", fcntl.LOCK_SH):
            yield

    @contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        try:
            fd = os.open(self.dir / name, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(f"cannot open the lock {self.dir / name}: {exc}") from None
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def no_call_in_flight(self) -> Iterator[bool]:
        """Exclusive on the in-flight lock if no process has a call in flight (yields True), else
        yields False at once: only then are IN_FLIGHT rows known to be orphans of a dead process."""
        try:
            fd = os.open(self.dir / "in-flight.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LedgerError(f"cannot open the lock {self.dir / 'in-flight.lock'}: {exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    _ROW_COLS = "decision_id, action_id, action_type, symbol, client_order_id, timestamp, status, result, reason_code, trace_id, venue"

    def _rows(self, where: str, args: tuple = ()) -> list[dict[str, Any]]:
        names = [c.strip() for c in self._ROW_COLS.split(",")]
        return [dict(zip(names, row)) for row in self._db.execute(f"SELECT {self._ROW_COLS} FROM executions WHERE {where} ORDER BY seq", args)]

    def in_flight_rows(self) -> list[dict[str, Any]]:
        """Attempts whose outcome was never written."""
        return self._rows("status = 'IN_FLIGHT'")

    def in_doubt_rows(self) -> list[dict[str, Any]]:
        """Orders whose execution status is unknown (timeout, 5xx, no ack, a process that died) and
        that `ep4 reconcile` has not resolved yet."""
        marks = ", ".join("?" * len(IN_DOUBT_CODES))
        return self._rows(
            f"status = 'DONE' AND client_order_id IS NOT NULL AND reconciled IS NULL AND reason_code IN ({marks})",
            tuple(IN_DOUBT_CODES),
        )

    def trace_ids(self) -> dict[str, tuple[str, str]]:
        """trace_id -> (decision_id, action_id) of every row (for `ep4 audit verify`)."""
        return {t: (d, a) for d, a, t in self._db.execute("SELECT decision_id, action_id, trace_id FROM executions")}

    def mark_reconciled(self, decision_id: str, action_id: str, finding: str) -> None:
        try:
            self._db.execute("UPDATE executions SET reconciled = ? WHERE decision_id = ? AND action_id = ?", (finding, decision_id, action_id))
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger update failed: {exc}") from None

    # --- the operator's trading state (kill switch) ---

    _TRADING_STATE = "trading-state.json"

    def trading_state(self) -> dict[str, Any]:
        """{"state": ACTIVE | REDUCING | HALTED, ...}: ACTIVE when never set. A file that cannot be
        read or understood counts as HALTED (when uncertain, do nothing; spec §6.1)."""
        path = self.dir / self._TRADING_STATE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"state": "ACTIVE"}
        except (OSError, ValueError) as exc:
            return {"state": "HALTED", "reason": f"{path} cannot be read ({exc}); fix or remove it with ep4 resume"}
        if not isinstance(data, dict) or data.get("state") not in TRADING_STATES:
            return {"state": "HALTED", "reason": f"{path} does not name a trading state"}
        return data

    def prepare_trading_state(self, state: str, *, reason: str, by: str, at_ms: int) -> tuple[dict[str, Any], Path]:
        """The new trading state written, fsynced, beside the state file under a name of its own (a
        disk that is full or failing says so here, before anything is recorded); it takes effect at
        :meth:`commit_trading_state`."""
        if state not in TRADING_STATES:
            raise LedgerError(f"unknown trading state {state!r} (one of {', '.join(TRADING_STATES)})")
        entry = {"state": state, "reason": reason, "by": by, "since_ms": at_ms}
        path = self.dir / self._TRADING_STATE
        try:
            fd, name = tempfile.mkstemp(dir=self.dir, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(json.dumps(entry, sort_keys=True) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                os.unlink(name)
                raise
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc}") from None
        return entry, Path(name)

    def commit_trading_state(self, tmp: Path) -> None:
        """The prepared state file in place, and the directory entry durable (fsync of the directory:
        after a power loss a rename not yet on disk would read as the state before)."""
        path = self.dir / self._TRADING_STATE
        try:
            os.replace(tmp, path)
            _fsync_directory(self.dir)
        except OSError as exc:
            raise LedgerError(f"cannot write {path}: {exc}") from None

    def discard_trading_state(self, tmp: Path) -> None:
        try:
            os.unlink(tmp)
        except OSError:
            pass

    @classmethod
    def open_existing(cls, state_dir: str | Path) -> "Ledger | None":
        return cls(state_dir) if (Path(state_dir) / "ledger.sqlite").exists() else None

    def close(self) -> None:
        self._db.close()

    # --- reads ---

    def _records(self, rows: Iterable[tuple]) -> list[ExecutionRecord]:
        return [record for _, _, record in self._rows_with_seq(rows)]

    def _rows_with_seq(self, rows: Iterable[tuple]) -> list[tuple[int, str, ExecutionRecord]]:
        """Rows as records. A row read before with exactly the same columns gives the same (immutable)
        record object, so what the core derives from a record once (its CEL value, its canonical JSON,
        engine.memo) is reused by every later state view instead of being rebuilt per decision."""
        out = []
        cache = self._record_cache
        for row in rows:
            record = cache.get(row)
            if record is None:
                (_, decision_id, action_id, action_type, symbol, ts, status, result, reason, attempted, opens) = row
                if status == "IN_FLIGHT":
                    result, reason = "FAILED_SAFE", IN_DOUBT
                record = ExecutionRecord(
                    decision_id=decision_id, action_id=action_id, action_type=action_type, symbol=symbol,
                    result=result, reason_code=reason, timestamp=ts, attempted=bool(attempted), opens=bool(opens),
                )
                if len(cache) >= _RECORD_CACHE_SIZE:
                    cache.clear()  # bounded: a long-lived process keeps at most this many
                cache[row] = record
            out.append((row[0], row[6], record))
        return out

    _COLS = "seq, decision_id, action_id, action_type, symbol, timestamp, status, result, reason_code, attempted, opens"

    def view(self, decision_id: str | None, action_id: str | None, now_ms: int, lookback_ms: int) -> StateView:
        return self.view_with_refs(decision_id, action_id, now_ms, lookback_ms)[0]

    def records_at(self, seqs: Iterable[int]) -> dict[int, ExecutionRecord]:
        """The finished rows with these seqs (a finished row never changes again)."""
        wanted = sorted(set(seqs))
        out: dict[int, ExecutionRecord] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows = self._db.execute(
                f"SELECT {self._COLS} FROM executions WHERE status = 'DONE' AND seq IN ({', '.join('?' * len(chunk))})", chunk
            )
            out.update((seq, record) for seq, _, record in self._rows_with_seq(rows))
        return out

    def view_with_refs(
        self, decision_id: str | None, action_id: str | None, now_ms: int, lookback_ms: int
    ) -> tuple[StateView, list[int | None]]:
        """The state view, and for each ``recent`` record its ledger seq if the row is finished (the
        audit record then names the seq instead of repeating the row) or None (in flight: inline)."""
        db = self._db
        executed = ()
        if decision_id is not None and action_id is not None:
            hit = db.execute(
                "SELECT 1 FROM executions WHERE decision_id = ? AND action_id = ?", (decision_id, action_id)
            ).fetchone()
            executed = ((decision_id, action_id),) if hit else ()
        recent, refs = self._window_rows(now_ms - lookback_ms, now_ms)
        # newest over the whole ledger, not just up to now: a context older than the ledger's newest
        # call is then visible (the pipeline refuses it) instead of silently skipping temporal gates
        last_exec = db.execute("SELECT MAX(timestamp) FROM executions WHERE attempted = 1").fetchone()[0]
        # the newest row that arms the cooldown (_ARMS_COOLDOWN, through its partial index)
        last_failed = db.execute(f"SELECT MAX(timestamp) FROM executions WHERE {_ARMS_COOLDOWN}").fetchone()[0]
        view = StateView(executed=executed, recent=tuple(recent), last_execution_ms=last_exec, last_failed_safe_ms=last_failed)
        return view, refs

    def _data_version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def _window_rows(self, low: int, high: int) -> tuple[list[ExecutionRecord], list[int | None]]:
        """The records of the attempted rows with ``low <= timestamp <= high``, ordered by
        (timestamp, seq), with their refs (seq if finished, else None): what ``SELECT ... WHERE
        attempted = 1 AND timestamp BETWEEN low AND high ORDER BY timestamp, seq`` gives, without
        reading the whole window again for every view.

        The rows from ``low`` on are kept (:class:`_Window`) while SQLite's ``PRAGMA data_version``
        (read before they were) shows that no other connection (another process, another Ledger)
        has committed since. This connection's own writes since then are read alone: rows inserted
        after the highest seq read (seq only grows: AUTOINCREMENT), and rows :meth:`complete`
        updated (none at all after only refusals, which the window does not hold). If
        ``data_version`` changed, or changes while those are read, or ``low`` is older
        than the kept rows reach, the window is read whole, as before. Issue 6: a view read every
        row of its window, ~1.7 µs each on the 2-core machine. tests/test_performance.py compares
        the two on random histories written by two connections, and with commits landing between a
        view's reads."""
        w = self._window
        version = self._data_version()
        if w is not None and w.version == version and low >= w.low:
            if not self._touched and not self._inserted:
                return w.view(low, high)  # nothing written since: the kept rows are the window
            # data_version again after the catch-up's reads: a commit by another connection during
            # them would leave this view part before it and part after; it is read whole instead
            try:
                if self._catch_up(w) and self._data_version() == version:
                    return w.view(low, high)
            except BaseException:
                self._window = None  # half caught up: never used again
                raise
        self._window = None
        self._touched.clear()
        self._inserted = False
        db = self._db
        rows = self._rows_with_seq(
            db.execute(f"SELECT {self._COLS} FROM executions WHERE attempted = 1 AND timestamp >= ? ORDER BY timestamp, seq", (low,))
        )
        hi = db.execute("SELECT COALESCE(MAX(seq), 0) FROM executions").fetchone()[0]
        # kept with the version read before these reads: a commit by another connection during them
        # changes data_version, and the next view reads the window whole again
        self._window = w = _Window(version, low, hi, rows)
        return w.view(low, high)

    def _catch_up(self, w: _Window) -> bool:
        """Apply this connection's own writes since the window was read; False if it must be re-read.
        New rows first (read as they are now, outcome included), then the updated rows among the
        older ones (a row completed is usually the one just inserted, already read fresh)."""
        db = self._db
        fresh = w.hi
        if self._inserted:
            # attempted rows only (refusals in between are passed over inside SQLite)
            new = db.execute(f"SELECT {self._COLS} FROM executions WHERE seq > ? AND attempted = 1 ORDER BY seq", (w.hi,)).fetchall()
            if new:
                w.hi = new[-1][0]
                for row in self._rows_with_seq(row for row in new if row[5] >= w.low):
                    w.put(None, row)
            self._inserted = False
        for key in self._touched:
            i = w.index_of(key)
            if i is None or w.keys[i][1] > fresh:
                continue  # not in the window (older, or not attempted), or read above as it is now
            row = db.execute(f"SELECT {self._COLS} FROM executions WHERE seq = ?", (w.keys[i][1],)).fetchone()
            if row is None or row[5] != w.records[i].timestamp or not row[9]:
                return False  # not an update this ledger makes: read the window again
            w.put(i, self._rows_with_seq((row,))[0])
        self._touched.clear()
        return True

    def rejection_rate(self, now_ms: int, window_ms: int) -> str:
        """Share of exchange calls in the window that the exchange refused, as exact decimal text."""
        row = self._db.execute(
            "SELECT COUNT(*), SUM(reason_code IN ('EXCHANGE_REJECTED', 'ORDER_NOT_ACCEPTED')) FROM executions "
            "WHERE attempted = 1 AND status = 'DONE' AND timestamp BETWEEN ? AND ?",
            (now_ms - window_ms, now_ms),
        ).fetchone()
        total, rejected = row[0], row[1] or 0
        if not total:
            return "0"
        from decimal import Decimal, localcontext

        with localcontext() as ctx:
            ctx.prec = 6  # a health statistic, not money: six significant digits are plenty
            return format(Decimal(rejected) / Decimal(total), "f")

    def records(self) -> list[ExecutionRecord]:
        return self._records(self._db.execute(f"SELECT {self._COLS} FROM executions ORDER BY seq"))

    def audit_anchor(self) -> tuple[int, str] | None:
        row = self._db.execute("SELECT seq, hash FROM audit_anchor WHERE id = 1").fetchone()
        return (row[0], row[1]) if row else None

    def trace_of(self, decision_id: Any, action_id: Any) -> str | None:
        """The trace id of the row of (decision_id, action_id), if the ledger holds one."""
        if not isinstance(decision_id, str) or not isinstance(action_id, str):
            return None
        row = self._db.execute("SELECT trace_id FROM executions WHERE decision_id = ? AND action_id = ?", (decision_id, action_id)).fetchone()
        return row[0] if row else None

    def holds_calls(self) -> bool:
        """Whether any row is of an exchange call (attempted), through its partial index."""
        return self._db.execute("SELECT 1 FROM executions WHERE attempted = 1 LIMIT 1").fetchone() is not None

    def empty(self) -> bool:
        """Nothing recorded in it: no row, no audit anchor (whether this open created it or not)."""
        return self.audit_anchor() is None and self._db.execute("SELECT 1 FROM executions LIMIT 1").fetchone() is None

    # --- writes ---

    def set_audit_anchor(self, seq: int, record_hash: str) -> None:
        """Remember the last audit record written, so a truncated log is detected."""
        try:
            self._db.execute(_ANCHOR_SQL, (seq, record_hash))
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger anchor update failed: {exc}") from None

    def reset_audit_anchor(self, seq: int, record_hash: str) -> None:
        """Point the anchor at ``seq`` even if it is lower (only ``ep4 audit repair`` does this)."""
        try:
            self._db.execute(
                "INSERT INTO audit_anchor (id, seq, hash) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (seq, record_hash),
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger anchor update failed: {exc}") from None

    def write_ahead(
        self, record: ExecutionRecord, *, client_order_id: str | None, trace_id: str, input_digest: str,
        bundle_digest: str, constraints_digest: str, venue: str | None = None,
    ) -> bool:
        """Durably note an attempt before the exchange call. False if the decision is already known.
        ``venue``: where the call goes (the mode and the base URL), which `ep4 reconcile` must ask."""
        if self._window is not None:  # the next view reads the rows written since (before the write: see complete)
            self._inserted = True
        try:
            self._db.execute(
                WRITE_AHEAD_SQL,
                (record.decision_id, record.action_id, record.action_type, record.symbol, client_order_id,
                 record.timestamp, int(record.opens), trace_id, input_digest, bundle_digest, constraints_digest, venue),
            )
        except sqlite3.IntegrityError:
            return False
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger write-ahead failed: {exc}") from None
        return True

    def complete(self, record: ExecutionRecord, *, arms: bool, anchor: tuple[int, str] | None = None) -> None:
        """Write the outcome of an attempt noted by :meth:`write_ahead` (and the audit anchor of the
        record that already holds it, in the same transaction)."""
        if self._window is not None:  # read back by the next view (before the write: a failed one may have changed it)
            self._touched.add((record.decision_id, record.action_id))
        self._after_audit(
            "UPDATE executions SET status = 'DONE', result = ?, reason_code = ?, arms_cooldown = ? WHERE decision_id = ? AND action_id = ?",
            (record.result, record.reason_code, int(arms), record.decision_id, record.action_id), anchor, "ledger update failed",
        )

    def add(
        self, record: ExecutionRecord, *, trace_id: str, input_digest: str, bundle_digest: str, constraints_digest: str,
        arms: bool, anchor: tuple[int, str] | None = None,
    ) -> None:
        """Record an outcome that made no exchange call (gate failure, NOOP action, ...)."""
        if record.attempted and self._window is not None:  # a row the window holds (refusals are not attempted)
            self._inserted = True
        self._after_audit(
            "INSERT OR IGNORE INTO executions (decision_id, action_id, action_type, symbol, client_order_id, timestamp, "
            "status, result, reason_code, attempted, opens, trace_id, input_digest, bundle_digest, constraints_digest, arms_cooldown) "
            "VALUES (?, ?, ?, ?, NULL, ?, 'DONE', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.decision_id, record.action_id, record.action_type, record.symbol, record.timestamp,
             record.result, record.reason_code, int(record.attempted), int(record.opens), trace_id, input_digest,
             bundle_digest, constraints_digest, int(arms)),
            anchor, "ledger write failed",
        )

    def _after_audit(self, sql: str, values: tuple, anchor: tuple[int, str] | None, what: str) -> None:
        """One transaction written after its audit record was fsynced. It is not fsynced itself
        (synchronous=NORMAL: it survives a process crash; after a power loss the audit record holds
        the outcome): crash safety needs the write-ahead before the call and the outcome before the
        return, and the audit fsync is the latter."""
        db = self._db
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(sql, values)
                if anchor is not None:
                    db.execute(_ANCHOR_SQL, anchor)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerError(f"{what}: {exc}") from None
        finally:
            try:
                db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error:
                pass


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX: fsync the directory itself)."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - not POSIX
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
