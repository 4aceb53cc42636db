"""After a crash: every attempt gets an audit record, and orders in doubt are looked up, never resent.

* :func:`recover_in_flight` (run when an :class:`~engine.executor.Executor` opens, and by
  ``ep4 reconcile``): a write-ahead row left IN_FLIGHT by a process that died between the write-ahead
  and the outcome gets its audit record — the outcome the audit log already holds if the process got
  that far, else FAILED_SAFE / OUTCOME_UNKNOWN — and its ledger outcome. Only while no process has a
  call in flight (the in-flight lock, which a process takes before its write-ahead row exists and
  holds until the outcome is written), so a live call is never mistaken for an orphan.
* :func:`reconcile` (``ep4 reconcile``): for every order whose execution status is unknown (a
  timeout, a 5xx, no ack, a dead process), ONE read-only ``GET /fapi/v1/order`` by
  ``origClientOrderId`` — never a new order — and an audit record of what the exchange says.

Imperative shell: reads and writes the ledger and the audit log, and reads from the exchange.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .audit import AuditLog, read_records
from .ledger import Ledger
from .models import ExecutionRecord
from .numbers import loads
from .verification import reply_json_repeats

__all__ = ["RecoveryNote", "reconcile", "recover_in_flight"]

_IN_DOUBT_MESSAGE = (
    "the process stopped between the write-ahead record and the outcome: the call may or may not have "
    "reached the exchange (execution status unknown); `ep4 reconcile` asks the exchange"
)


class ReadClient(Protocol):
    def get_signed(self, path: str, params: Any) -> Any: ...


@dataclass
class RecoveryNote:
    decision_id: str
    action_id: str
    trace_id: str
    finding: str  # "audited-outcome" | "outcome-unknown" | an order status | "NOT_FOUND" | "UNKNOWN"
    detail: str = ""


def _scan(audit: AuditLog, traces: set[str]) -> dict[str, dict[str, Any]]:
    """The newest audit record of each wanted trace (read once, front to back)."""
    found: dict[str, dict[str, Any]] = {}
    if not traces or not audit.path.exists():
        return found
    for _, text in read_records(audit.path):
        try:
            rec = loads(text)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict) and rec.get("trace_id") in traces and rec.get("kind") in ("execution", "forced_cancel"):
            found[rec["trace_id"]] = rec
    return found


def recover_in_flight(ledger: Ledger, audit: AuditLog) -> list[RecoveryNote]:
    """Give every orphaned IN_FLIGHT row its audit record and outcome (see the module doc)."""
    notes: list[RecoveryNote] = []
    with ledger.no_call_in_flight() as alone:
        if not alone:
            return notes  # a call is in flight in another process: its rows are not orphans
        rows = ledger.in_flight_rows()
        if not rows:
            return notes
        audited = _scan(audit, {r["trace_id"] for r in rows})
        for row in rows:
            rec = audited.get(row["trace_id"])
            record = ExecutionRecord(
                decision_id=row["decision_id"], action_id=row["action_id"], action_type=row["action_type"],
                symbol=row["symbol"], result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN", timestamp=row["timestamp"],
                attempted=True, opens=False,
            )
            if rec is not None:  # the outcome was audited; only the ledger row missed it
                outcome = record.model_copy(update={"result": rec["execution_result"], "reason_code": rec["reason_code"]})
                ledger.complete(outcome, arms=rec["execution_result"] == "FAILED_SAFE")
                notes.append(RecoveryNote(row["decision_id"], row["action_id"], row["trace_id"], "audited-outcome", rec["reason_code"]))
                continue
            full = audit.append({
                "kind": "recovery",
                "trace_id": row["trace_id"],
                "policy_decision_id": row["decision_id"],
                "action_id": row["action_id"],
                "execution_result": "FAILED_SAFE",
                "timestamp": row["timestamp"],
                "reason_code": "OUTCOME_UNKNOWN",
                "exchange_response": None,
                "client_order_id": row["client_order_id"],
                "message": _IN_DOUBT_MESSAGE,
            }, anchor=False)
            ledger.complete(record, arms=True, anchor=(full["seq"], full["hash"]))
            notes.append(RecoveryNote(row["decision_id"], row["action_id"], row["trace_id"], "outcome-unknown", _IN_DOUBT_MESSAGE))
    return notes


# GET /fapi/v1/order answers -2013 "Order does not exist" for any order created more than 90 days ago
# (facts file §2), so past that a -2013 no longer means the order never ran
QUERY_HISTORY_MS = 90 * 24 * 3600 * 1000


def reconcile(
    ledger: Ledger, audit: AuditLog, client: ReadClient, *, recv_window_ms: int, now_ms: Callable[[], int] | None = None,
    venue: str | None = None,
) -> list[RecoveryNote]:
    """Ask the exchange about every order in doubt (read-only) and audit the answer. ``now_ms`` is
    the clock the queries are signed with (default: this host's clock). ``venue`` (engine.executor.
    venue_label of the client asked): an order the ledger notes as sent to another venue is not asked
    about there and stays in doubt: another exchange, or another paper account, would answer -2013
    for it, and a live order in doubt would be recorded as never executed (review)."""
    clock = now_ms or (lambda: int(time.time() * 1000))
    notes = recover_in_flight(ledger, audit)
    rows = []
    for row in ledger.in_doubt_rows():
        sent_to = row.get("venue")
        if venue is not None and sent_to is not None and sent_to != venue:
            notes.append(RecoveryNote(row["decision_id"], row["action_id"], row["trace_id"], "UNKNOWN",
                                      f"sent to {sent_to}, not to {venue}, which this reconcile asks: not asked; still in doubt "
                                      "(run ep4 reconcile with that --exchange and --base-url)"))
        else:
            rows.append(row)
    for index, row in enumerate(rows):
        now = clock()
        params = [("symbol", row["symbol"]), ("origClientOrderId", row["client_order_id"]),
                  ("recvWindow", str(recv_window_ms)), ("timestamp", str(now))]
        reply = client.get_signed("/fapi/v1/order", params)
        body, repeated = reply_json_repeats(reply.body) if reply.outcome == "response" else (None, [])
        back_off = reply.outcome == "response" and reply.http_status in (429, 418)
        if back_off:  # facts file §4: 429 "Back off."; 418: banned for going on after 429s
            finding = "UNKNOWN"
            left = len(rows) - index - 1
            detail = (f"HTTP {reply.http_status}: the exchange asked to back off, so nothing more was asked"
                      + (f" ({left} more order(s) in doubt not queried; run `ep4 reconcile` again later)" if left else "")
                      + "; still in doubt")
        elif repeated:  # a reply that says a field twice does not say which it meant: it settles nothing
            finding = "UNKNOWN"
            detail = f"the reply repeats {', '.join(repeated[:5])}: it does not settle this order; still in doubt"
        elif reply.outcome == "response" and reply.http_status == 200 and isinstance(body, dict) and isinstance(body.get("status"), str):
            if body.get("clientOrderId") == row["client_order_id"] and body.get("symbol") == row["symbol"]:
                finding = body["status"]
                detail = f"the exchange holds the order as {finding} (executedQty {body.get('executedQty')})"
            else:  # an answer about another order (a proxy, a cache, a bug) settles nothing about this one
                finding = "UNKNOWN"
                detail = (f"the reply names another order (clientOrderId {body.get('clientOrderId')!r}, symbol "
                          f"{body.get('symbol')!r}): it does not settle this one; still in doubt")
        elif reply.outcome == "response" and isinstance(body, dict) and body.get("code") == -2013:
            if now - row["timestamp"] >= QUERY_HISTORY_MS:
                finding = "UNKNOWN"
                detail = ("the exchange answers -2013 for every order created more than 90 days ago, filled or not: "
                          "its answer cannot settle this one; check the account's trade history")
            else:  # -2013 within 90 days: never placed, or cancelled / expired without a fill (facts file §2)
                finding, detail = "NOT_FOUND", "the exchange has no such order: it was never executed"
        else:
            finding = "UNKNOWN"
            detail = f"no answer that settles it ({reply.outcome}, HTTP {reply.http_status}); still in doubt"
        audit.append({
            "kind": "reconcile",
            "trace_id": row["trace_id"],
            "policy_decision_id": row["decision_id"],
            "action_id": row["action_id"],
            "client_order_id": row["client_order_id"],
            "finding": finding,
            "message": detail,
            "query": {"method": "GET", "path": "/fapi/v1/order", "params": [list(p) for p in params]},
            "reply": {"outcome": reply.outcome, "http_status": reply.http_status, "body": reply.body, "error": reply.error},
        })
        if finding != "UNKNOWN":
            ledger.mark_reconciled(row["decision_id"], row["action_id"], finding)
        notes.append(RecoveryNote(row["decision_id"], row["action_id"], row["trace_id"], finding, detail))
        if back_off:
            break
    return notes
