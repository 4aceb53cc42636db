"""The imperative shell around the pure core: spec §4 Rules 5-6 and §6.3, with ledger and audit.

Order of events for one decision (ARCHITECTURE.md "functional core, imperative shell"):
state view from the ledger -> pure Rules 1-4 -> durable write-ahead row -> exactly ONE exchange call
-> pure Rule 6 -> ledger outcome -> audit record (fsynced) -> result. The exchange is reached only
through the injected client; no retries anywhere (spec §4 Rule 5, §9).
"""

from __future__ import annotations

import hashlib
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .audit import AuditError, AuditLog, SerialisedDict, SerialisedList, first_record_needing_a_row, needs_a_ledger_row, records_after
from .authorization_gate import host_text, RawDecision, read_decision
from .intent import Intent
from .ledger import Ledger, LedgerError
from .models import ExecutionContext, ExecutionRecord, ExecutionResult, StateView
from .memo import KeptById, memo
from .numbers import bytes_text, canonical_json, json_piece, printable_text
from .order import OrderRequest, build_request
from .pipeline import Config, Evaluation, context_json, evaluate, execution_record, recent_json
from .verification import BACK_OFF_CODES, ExchangeReplyData, verify_ack

__all__ = ["ExchangeClient", "Executor", "PHASES", "audit_record", "decision_text", "forced_cancel_request", "forced_cancel_result", "record_named", "record_the_ledger_lacks", "venue_label"]

# The durable steps of one exchange call, in order. ``Executor.on_phase`` (None by default) is told
# each one as it happens; the crash campaign (`make reliability`, tests/reliability.py) uses it to
# land its SIGKILLs inside the write-ahead -> call -> ack -> audit window and to record where.
PHASES = (
    "write-ahead",  # the IN_FLIGHT ledger row is committed
    "sending",  # the request is about to be written to the exchange
    "replied",  # the exchange's reply (or the timeout / lost connection) is in hand
    "audited",  # the audit record of the outcome is appended and fsynced
    "completed",  # the ledger row holds the outcome
)


class ExchangeClient(Protocol):
    def send_signed(self, method: str, path: str, params: Any) -> Any: ...


def decision_text(raw: str | bytes | dict[str, Any] | Any) -> str:
    """The exact text the pure core evaluates, and the audit log keeps for replay (a host's object:
    engine.authorization_gate.host_text, what ``evaluate`` reads it as too). Bytes that are not UTF-8
    are kept as backslash escapes, as the CLI keeps a line of a decisions file (engine.numbers.
    printable_text), so the text is not JSON and the decision is REJECTED as ``evaluate`` of the bytes
    is; decoding them with U+FFFD in their place made another, readable decision of them (a HOLD one
    NOOP, review)."""
    if isinstance(raw, (bytes, bytearray, memoryview)):  # as engine.authorization_gate.read_decision reads bytes
        return bytes_text(bytes(raw))
    return printable_text(raw) if isinstance(raw, str) else host_text(raw)


def state_record(state: StateView, refs: list[int | None] | None) -> dict[str, Any]:
    """The state view as an audit record keeps it (issue 7, hole 12): each finished ``recent`` row by
    its ledger seq (the row is in the ledger and never changes), a row still in flight inline, and the
    sha256 of the whole list, which replay checks after rebuilding it. Without refs: all inline."""
    dumped = state.model_dump(mode="json", exclude={"recent"})
    recent = state.recent
    refs = refs if refs is not None and len(refs) == len(recent) else [None] * len(recent)
    dumped["recent_refs"] = [seq if seq is not None else row.model_dump(mode="json") for seq, row in zip(refs, recent)]
    # sha256_digest of the dumped list (records_json: each record's canonical text, kept with it)
    dumped["recent_digest"] = memo(state, "recent_digest", lambda: "sha256:" + hashlib.sha256(recent_json(state).encode("utf-8")).hexdigest())
    return dumped


def audit_record(
    kind: str, result: ExecutionResult, *, text: str, context: ExecutionContext, state: StateView,
    reply: ExchangeReplyData | None = None, sent_timestamp: int | None = None, refs: list[int | None] | None = None,
) -> dict[str, Any]:
    """One audit record: spec §8.2 fields first, then what `ep4 replay` needs. The trace and the
    result come with their canonical text (audit.SerialisedList / SerialisedDict): to everything
    else they are the plain dumps."""
    pieces = _TRACE_PIECES.values(result.gate_trace)
    trace = _trace_value(pieces)
    return {
        "kind": kind,
        "ep4_version": result.ep4_version,
        "trace_id": result.trace_id,
        "policy_decision_id": result.decision_id,
        "action_id": result.action_id,
        "execution_result": result.result,
        "timestamp": result.timestamp,
        "reason_code": result.reason_code,
        "exchange_response": result.exchange_response,
        "mode": result.mode,
        "bundle": result.bundle,
        "constraints_digest": result.constraints_digest,
        "input_digest": result.input_digest,
        "gate_trace": trace,
        "state": state_record(state, refs),
        "input": _input_value(text, context),
        "reply": reply.model_dump(mode="json") if reply is not None else None,
        "sent_timestamp": sent_timestamp,  # the signed request's timestamp (replay signs nothing, but checks with it)
        "result": _result_value(result, trace),
    }


def _dump_and_text(outcome: Any) -> tuple[dict[str, Any], str]:
    dumped = outcome.model_dump(mode="json")
    return dumped, canonical_json(dumped)


# a trace entry's JSON dump and that dump's canonical text; an entry with an error is new per
# evaluation and not kept
_TRACE_PIECES = KeptById(_dump_and_text, keep=lambda outcome: outcome.error is None)


def _trace_value(pieces: list[tuple[dict[str, Any], str]]) -> SerialisedList:
    """The trace as the record keeps it: each entry's dump (a copy of its own), and the list's
    canonical text from the entries' kept texts (the audit writer does not serialise it again)."""
    value = SerialisedList([dict(p[0]) for p in pieces])
    value.text = "[" + ",".join(p[1] for p in pieces) + "]"
    return value


def _input_value(text: str, context: ExecutionContext) -> SerialisedDict:
    """{"decision_text", "context"} with its canonical text; the context's is the one its input
    digest was computed from (kept with the context)."""
    value = SerialisedDict(decision_text=text, context=context.model_dump(mode="json"))
    value.text = '{"context":' + context_json(context) + ',"decision_text":' + canonical_json(text) + "}"
    return value


def _result_value(result: ExecutionResult, trace: SerialisedList) -> SerialisedDict:
    """``result.model_dump(mode="json")`` with its canonical text: the fields but the trace dumped and
    serialised here, the trace the record's own (:func:`_trace_value`, built once per record); the
    items in key order, joined, which is what canonical_json of the whole dump writes."""
    dumped = result.model_dump(mode="json", exclude={"gate_trace"})
    parts = {k: json_piece(k) + ":" + json_piece(v) for k, v in dumped.items()}
    parts["gate_trace"] = '"gate_trace":' + trace.text
    value = SerialisedDict((k, trace if k == "gate_trace" else dumped[k]) for k in type(result).model_fields if k in parts)
    value.text = "{" + ",".join(parts[k] for k in sorted(parts)) + "}"
    return value


def _reply_data(reply: Any) -> ExchangeReplyData:
    return ExchangeReplyData(outcome=reply.outcome, http_status=reply.http_status, body=reply.body, error=reply.error)


@dataclass
class Executor:
    """Runs decisions for one account against one exchange client, recording everything."""

    config: Config
    ledger: Ledger
    audit: AuditLog
    client: ExchangeClient
    on_phase: Callable[[str], None] | None = None  # told each of PHASES as it happens (see above)

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def __post_init__(self) -> None:
        # A ledger with nothing in it (no row, no audit anchor) beside an audit log that already holds
        # records: the ledger that recorded those executions was lost, emptied or replaced, so which
        # decisions were sent is unknown (a duplicate would be sent again). Nothing is sent (spec §6.1:
        # when uncertain, do nothing). Whether this open created the ledger or an earlier one did does
        # not matter: a refused run leaves the empty ledger it created behind, and the next run sent
        # again (review). The one record a crash can leave before the first ledger row (a refusal of
        # the first decision: AuditLog.holds_more_than_one_unanchored_refusal) is not such a log.
        if self.ledger.empty() and self.audit.holds_more_than_one_unanchored_refusal():
            raise AuditError(
                f"the ledger {self.ledger.path} holds no execution and no audit anchor, but the audit log {self.audit.path} "
                "already holds records: the ledger that recorded those executions is missing, was emptied or was replaced, "
                "so ep4 cannot tell which decisions were already sent. Nothing was sent. Restore that ledger, or start a "
                "new state directory with a new audit log"
            )
        # A ledger that lacks the row of an exchange call the log records (restored from an older backup,
        # rows deleted, or emptied and then anchored again by `ep4 halt` / `resume` / `audit repair`,
        # which the check above no longer sees): that decision would be sent again (review). Checked
        # on the records after the anchor (those the tail check reads too) and, for a ledger without
        # any call row, on the log from its start up to its first call.
        lacking = record_the_ledger_lacks(self.ledger, self.audit.path)
        if lacking is not None:
            raise AuditError(
                f"the audit log {self.audit.path} records {record_named(lacking)}, an "
                f"exchange call, but the ledger {self.ledger.path} holds no row of it: the ledger is not the one that "
                "recorded the log (lost, emptied, or restored from an older copy), so ep4 cannot tell which decisions "
                "were already sent. Nothing was sent. Restore that ledger, or start a new state directory with a new audit log"
            )
        # where this executor's calls go, noted with each write-ahead row: `ep4 reconcile` asks only that venue
        self.venue = venue_label(self.config.mode, self.client)
        # a write-ahead row a dead process left IN_FLIGHT gets its audit record now (issue 7, hole 7)
        from .recovery import recover_in_flight

        try:
            self.recovered = recover_in_flight(self.ledger, self.audit)
        except AuditError as exc:  # e.g. the dead process's outcome record is torn: nothing goes out before it is seen to
            raise AuditError(f"{exc}. Nothing was sent: an interrupted execution must be recorded before anything else is") from None

    def state_view(self, ids: RawDecision, context: ExecutionContext) -> tuple[StateView, list[int | None]]:
        """The state view (with the operator's trading state) and its rows' ledger seqs."""
        view, refs = self.ledger.view_with_refs(ids.decision_id, ids.action_id, context.timestamp, self.config.bundle.lookback_ms)
        return view.model_copy(update={"trading_state": self.ledger.trading_state()["state"]}), refs

    def execute(self, raw: str | bytes | dict[str, Any], context: ExecutionContext) -> ExecutionResult:
        """Rules 1-6 for one decision. From reading the state to the write-ahead row, the state
        directory is locked across processes, so gates see every call another process is making."""
        received = time.monotonic()  # the request's timestamp is context.timestamp + the time since
        text = decision_text(raw)
        with ExitStack() as calling:  # the in-flight lock, once taken: until the call's outcome is written
            with self.ledger.state_lock():
                self.audit.check_before_sending(self.ledger.audit_anchor())
                read = read_decision(text)  # parsed once: its ids for the state view, the whole for Rules 1-4
                state, refs = self.state_view(read, context)
                ev = evaluate(read, context, self.config, state)
                if ev.result is not None:  # decided by Rules 1-4 (or a duplicate / no-op): nothing is sent
                    record = execution_record(ev, ev.result, attempted=False)
                    full = self.audit.append(audit_record("execution", ev.result, text=text, context=context, state=state, refs=refs), anchor=False)
                    if record is not None:
                        arms = self._arms(ev.result, state)
                        self.ledger.add(record, **self._ids(ev.result), arms=arms, anchor=(full["seq"], full["hash"]))
                    else:
                        self.ledger.set_audit_anchor(full["seq"], full["hash"])
                    return ev.result
                # before the write-ahead row exists, so a process opening an executor meanwhile never takes
                # the row for a dead process's orphan (recover_in_flight: rows nobody holds this lock for)
                calling.enter_context(self.ledger.in_flight())
                refused = self._write_ahead(ev, text, context, state, refs)
            if refused is not None:
                return refused
            self._phase("write-ahead")
            return self._call(ev, text, context, state, received, refs)

    def _send(self, request: OrderRequest) -> ExchangeReplyData:
        """The one call (Rule 5). A client that raises instead of reporting (a host's own client; a
        BinanceClient without credentials raises CredentialsError) leaves the write-ahead row already
        written: the attempt is then an outcome unknown (no_response, FAILED_SAFE, in doubt for
        reconcile), audited like any other, instead of an exception that left the row in flight
        without an audit record (spec §8.2; review). Only the exception's type is recorded: its text
        is the client's and may hold what must not reach the audit log."""
        try:
            return _reply_data(self.client.send_signed(request.method, request.path, request.params))
        except Exception as exc:
            return ExchangeReplyData(outcome="no_response", http_status=None, body=None,
                                     error=f"the exchange client raised {type(exc).__name__}: whether the request was sent is unknown")

    def _arms(self, result: ExecutionResult, state: StateView) -> bool:
        return self.config.bundle.arms_cooldown(result.result, result.rule, result.timestamp or 0, state, result.reason_code)

    # --- Rule 5 and 6 ---

    def _ids(self, result: ExecutionResult) -> dict[str, str]:
        return {
            "trace_id": result.trace_id,
            "input_digest": result.input_digest,
            "bundle_digest": result.bundle["digest"],
            "constraints_digest": result.constraints_digest,
        }

    def _pending(self, ev: Evaluation, context: ExecutionContext) -> ExecutionRecord:
        assert ev.decision is not None and ev.intent is not None
        action = ev.decision.action
        return ExecutionRecord(
            decision_id=ev.decision.decision_id, action_id=action.action_id, action_type=action.type,
            symbol=getattr(action, "symbol", None), result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN",
            timestamp=context.timestamp, attempted=True, opens=ev.intent.increases_exposure,
        )

    def _write_ahead(
        self, ev: Evaluation, text: str, context: ExecutionContext, state: StateView, refs: list[int | None]
    ) -> ExecutionResult | None:
        """The durable record of the attempt, before the call; a result if the call must not be made."""
        assert ev.request is not None
        header = ev.header
        try:
            fresh = self.ledger.write_ahead(
                self._pending(ev, context), client_order_id=ev.request.client_order_id, trace_id=header["trace_id"],
                input_digest=header["input_digest"], bundle_digest=header["bundle"]["digest"],
                constraints_digest=header["constraints_digest"], venue=self.venue,
            )
        except LedgerError as exc:
            result = ExecutionResult(
                result="FAILED_SAFE", reason_code="STATE_UNAVAILABLE", rule=5,
                message=f"the write-ahead record could not be made, so nothing was sent: {exc}",
                gate_trace=ev.gate_trace, **header,
            )
            self.audit.append(audit_record("execution", result, text=text, context=context, state=state, refs=refs))
            return result
        if not fresh:  # another process recorded this decision after our state view was read
            result = ExecutionResult(
                result="NOOP", reason_code="DUPLICATE_EXECUTION", rule=None,
                message="this (decision_id, action_id) was already processed; nothing done", **header,
            )
            self.audit.append(audit_record("execution", result, text=text, context=context, state=state, refs=refs))
            return result
        return None

    def _call(
        self, ev: Evaluation, text: str, context: ExecutionContext, state: StateView, received: float, refs: list[int | None]
    ) -> ExecutionResult:
        """Rule 5: exactly one call, signed with the time it is sent; Rule 6 on its reply. The caller
        holds the in-flight lock (taken before the write-ahead row) until this returns."""
        assert ev.request is not None and ev.intent is not None
        request = ev.request.sent_at(context.timestamp + _elapsed_ms(received))
        self._phase("sending")
        reply = self._send(request)
        self._phase("replied")
        result = verify_ack(
            ev.header, request, reply, sent_timestamp=request.timestamp,
            tolerance_ms=self.config.bundle.exchange_client.ackTimestampToleranceMs, gate_trace=ev.gate_trace,
        )
        pending = self._pending(ev, context)
        outcome = pending.model_copy(update={"result": result.result, "reason_code": result.reason_code})
        record = audit_record("execution", result, text=text, context=context, state=state, reply=reply, sent_timestamp=request.timestamp, refs=refs)
        try:  # the audit record is the durable outcome (fsynced); the ledger row follows it
            full = self.audit.append(record, anchor=False)
        except AuditError as exc:
            self.ledger.complete(outcome, arms=self._arms(result, state))
            raise AuditError(
                f"{exc} — the exchange call WAS made ({result.result} {result.reason_code}, trace {result.trace_id}) "
                "and the ledger holds its outcome; only the audit record is missing"
            ) from None
        self._phase("audited")
        self.ledger.complete(outcome, arms=self._arms(result, state), anchor=(full["seq"], full["hash"]))
        self._phase("completed")
        if (result.result == "FAILED_SAFE" and self.config.bundle.force_cancel_open_orders and ev.intent.symbol
                and ev.intent.kind != "CANCEL"  # the same DELETE again would be a retry (spec Rule 5, §6.3: none)
                and result.reason_code not in BACK_OFF_CODES):  # after a 429 / 418, another request prolongs the ban
            self._forced_cancel(result, ev, text, context, state, received, refs)
        return result

    def _forced_cancel(
        self, failed: ExecutionResult, ev: Evaluation, text: str, context: ExecutionContext, state: StateView, received: float,
        refs: list[int | None],
    ) -> ExecutionResult:
        """Spec §6.3 optional forced ACTION_CANCEL_OPEN_ORDERS after an exchange-side FAILED_SAFE:
        one DELETE /fapi/v1/allOpenOrders for the symbol, recorded as its own audit record (never after
        a 429 / 418: the exchange asked to back off, verification.BACK_OFF_CODES; never after a failed
        cancel action: that DELETE again would be a retry of it, which Rule 5 and §6.3 forbid). It is
        signed with the time it is sent: after a 5 s timeout, a request carrying the decision's
        timestamp would be outside recvWindow (-1021) and the resting order would stay open. Runs
        within :meth:`_call`, under the in-flight lock its caller holds, so its write-ahead row too
        is never taken for an orphan."""
        assert ev.decision is not None
        header, request = forced_cancel_request(ev, failed, self.config, context)
        record = ExecutionRecord(
            decision_id=ev.decision.decision_id, action_id=header["action_id"], action_type="ACTION_CANCEL_OPEN_ORDERS",
            symbol=dict(request.params)["symbol"], result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN",
            timestamp=context.timestamp, attempted=True, opens=False,
        )
        with self.ledger.state_lock():
            if not self.ledger.write_ahead(
                record, client_order_id=None, trace_id=header["trace_id"], input_digest=header["input_digest"],
                bundle_digest=header["bundle"]["digest"], constraints_digest=header["constraints_digest"], venue=self.venue,
            ):
                return failed
        request = request.sent_at(context.timestamp + _elapsed_ms(received))
        reply = self._send(request)
        result = forced_cancel_result(header, request, reply, failed)
        full = self.audit.append(
            audit_record("forced_cancel", result, text=text, context=context, state=state, reply=reply, sent_timestamp=request.timestamp, refs=refs),
            anchor=False,
        )
        self.ledger.complete(record.model_copy(update={"result": result.result, "reason_code": result.reason_code}),
                             arms=False, anchor=(full["seq"], full["hash"]))  # the cancel follows a failure that armed it
        return result


def record_the_ledger_lacks(ledger: Ledger, path: Any) -> dict[str, Any] | None:
    """A record of the log at ``path`` that needs a ledger row (engine.audit.needs_a_ledger_row) the
    ledger does not hold, among the records after its anchor, and (when it holds no call row at all)
    the log's first such record; None when there is none. The executor refuses to open on one;
    `ep4 halt` / `resume` / `reduce-only` then record without moving the anchor, and `ep4 audit
    repair` refuses, so no writer moves the anchor past records whose rows are missing (review:
    a restored older ledger, then halt and resume, sent a decision again)."""
    anchor = ledger.audit_anchor()
    candidates = records_after(path, anchor[0]) if anchor is not None else []
    if not ledger.holds_calls():
        first = first_record_needing_a_row(path)
        if first is not None:
            candidates.append(first)
    for rec in candidates:
        if needs_a_ledger_row(rec) and ledger.trace_of(rec.get("policy_decision_id"), rec.get("action_id")) != rec.get("trace_id"):
            return rec
    return None


def record_named(rec: dict[str, Any]) -> str:
    """An audit record as messages name it: its kind, seq, ids and trace."""
    return (f"{rec.get('kind')} seq {rec.get('seq')} of decision {rec.get('policy_decision_id')} / action "
            f"{rec.get('action_id')} (trace {rec.get('trace_id')})")


def venue_label(mode: str, client: Any) -> str:
    """Where calls go: the execution mode, and what the client says of where it sends (``venue``: the
    base URL, and for an in-process paper exchange which paper account; else its ``base_url``)."""
    where = getattr(client, "venue", None) or getattr(client, "base_url", None)
    return f"{mode} {where}" if isinstance(where, str) and where else mode


def _elapsed_ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


# --- pure pieces shared with `ep4 replay` ---


def forced_cancel_request(
    ev: Evaluation, failed: ExecutionResult, config: Config, context: ExecutionContext
) -> tuple[dict[str, Any], OrderRequest]:
    assert ev.intent is not None and ev.decision is not None and ev.intent.symbol is not None
    intent = Intent(kind="CANCEL", action_type="ACTION_CANCEL_OPEN_ORDERS", symbol=ev.intent.symbol)
    action_id = f"{ev.decision.action.action_id}/forced-cancel"
    request = build_request(
        intent, decision_id=ev.decision.decision_id, action_id=action_id, timestamp=context.timestamp,
        recv_window_ms=config.bundle.exchange_client.recvWindowMs, hedge_mode=False,
    )
    trace = "ep4-" + hashlib.sha256(f"{failed.trace_id}\nforced-cancel".encode()).hexdigest()[:32]
    return {**ev.header, "trace_id": trace, "action_id": action_id}, request


def forced_cancel_result(
    header: dict[str, Any], request: OrderRequest, reply: ExchangeReplyData, failed: ExecutionResult
) -> ExecutionResult:
    result = verify_ack(header, request, reply, sent_timestamp=request.timestamp, tolerance_ms=0)
    return result.model_copy(update={"message": f"forced cancel after {failed.reason_code} (spec §6.3): {result.message}"})
