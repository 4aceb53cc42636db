"""The imperative shell around the pure core: spec §4 Rules 5-6 and §6.3, with ledger and audit.

Order of events for one decision (ARCHITECTURE.md "functional core, imperative shell"):
state view from the ledger -> pure Rules 1-4 -> durable write-ahead row -> exactly ONE exchange call
-> pure Rule 6 -> ledger outcome -> audit record (fsynced) -> result. The exchange is reached only
through the injected client; no retries anywhere (spec §4 Rule 5, §9).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from .audit import AuditError, AuditLog
from .authorization_gate import read_decision
from .intent import Intent
from .ledger import Ledger, LedgerError
from .models import ExecutionContext, ExecutionRecord, ExecutionResult, StateView
from .numbers import canonical_json
from .order import OrderRequest, build_request
from .pipeline import Config, Evaluation, evaluate, execution_record
from .verification import ExchangeReplyData, verify_ack

__all__ = ["ExchangeClient", "Executor", "audit_record", "decision_text", "forced_cancel_request", "forced_cancel_result"]


class ExchangeClient(Protocol):
    def send_signed(self, method: str, path: str, params: Any) -> Any: ...


def decision_text(raw: str | bytes | dict[str, Any] | Any) -> str:
    """The exact text the pure core evaluates, and the audit log keeps for replay."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw if isinstance(raw, str) else canonical_json(raw)


def audit_record(
    kind: str, result: ExecutionResult, *, text: str, context: ExecutionContext, state: StateView,
    reply: ExchangeReplyData | None = None,
) -> dict[str, Any]:
    """One audit record: spec §8.2 fields first, then what `ep4 replay` needs."""
    return {
        "kind": kind,
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
        "gate_trace": [g.model_dump(mode="json") for g in result.gate_trace],
        "state_view": state.model_dump(mode="json"),
        "input": {"decision_text": text, "context": context.model_dump(mode="json")},
        "reply": reply.model_dump(mode="json") if reply is not None else None,
        "result": result.model_dump(mode="json"),
    }


def _reply_data(reply: Any) -> ExchangeReplyData:
    return ExchangeReplyData(outcome=reply.outcome, http_status=reply.http_status, body=reply.body, error=reply.error)


@dataclass
class Executor:
    """Runs decisions for one account against one exchange client, recording everything."""

    config: Config
    ledger: Ledger
    audit: AuditLog
    client: ExchangeClient

    def state_view(self, raw: str, context: ExecutionContext) -> StateView:
        ids = read_decision(raw)
        return self.ledger.view(ids.decision_id, ids.action_id, context.timestamp, self.config.bundle.lookback_ms)

    def execute(self, raw: str | bytes | dict[str, Any], context: ExecutionContext) -> ExecutionResult:
        text = decision_text(raw)
        state = self.state_view(text, context)
        ev = evaluate(text, context, self.config, state)
        if ev.result is not None:  # decided by Rules 1-4 (or a duplicate / no-op): nothing is sent
            record = execution_record(ev, ev.result, attempted=False)
            full = self.audit.append(audit_record("execution", ev.result, text=text, context=context, state=state), anchor=False)
            if record is not None:
                self.ledger.add(record, **self._ids(ev.result), anchor=(full["seq"], full["hash"]))
            else:
                self.ledger.set_audit_anchor(full["seq"], full["hash"])
            return ev.result
        return self._attempt(ev, text, context, state)

    # --- Rule 5 and 6 ---

    def _ids(self, result: ExecutionResult) -> dict[str, str]:
        return {
            "trace_id": result.trace_id,
            "input_digest": result.input_digest,
            "bundle_digest": result.bundle["digest"],
            "constraints_digest": result.constraints_digest,
        }

    def _attempt(self, ev: Evaluation, text: str, context: ExecutionContext, state: StateView) -> ExecutionResult:
        assert ev.request is not None and ev.decision is not None and ev.intent is not None
        action = ev.decision.action
        pending = ExecutionRecord(
            decision_id=ev.decision.decision_id, action_id=action.action_id, action_type=action.type,
            symbol=getattr(action, "symbol", None), result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN",
            timestamp=context.timestamp, attempted=True, opens=ev.intent.increases_exposure,
        )
        header = ev.header
        try:
            fresh = self.ledger.write_ahead(
                pending, client_order_id=ev.request.client_order_id, trace_id=header["trace_id"],
                input_digest=header["input_digest"], bundle_digest=header["bundle"]["digest"],
                constraints_digest=header["constraints_digest"],
            )
        except LedgerError as exc:
            result = ExecutionResult(
                result="FAILED_SAFE", reason_code="STATE_UNAVAILABLE", rule=5,
                message=f"the write-ahead record could not be made, so nothing was sent: {exc}",
                gate_trace=ev.gate_trace, **header,
            )
            self.audit.append(audit_record("execution", result, text=text, context=context, state=state))
            return result
        if not fresh:  # another process recorded this decision after our state view was read
            result = ExecutionResult(
                result="NOOP", reason_code="DUPLICATE_EXECUTION", rule=None,
                message="this (decision_id, action_id) was already processed; nothing done", **header,
            )
            self.audit.append(audit_record("execution", result, text=text, context=context, state=state))
            return result

        reply = _reply_data(self.client.send_signed(ev.request.method, ev.request.path, ev.request.params))
        result = verify_ack(
            header, ev.request, reply, context_timestamp=context.timestamp,
            tolerance_ms=self.config.bundle.exchange_client.ackTimestampToleranceMs, gate_trace=ev.gate_trace,
        )
        outcome = pending.model_copy(update={"result": result.result, "reason_code": result.reason_code})
        try:  # the audit record is the durable outcome (fsynced); the ledger row follows it
            full = self.audit.append(audit_record("execution", result, text=text, context=context, state=state, reply=reply), anchor=False)
        except AuditError as exc:
            self.ledger.complete(outcome)
            raise AuditError(
                f"{exc} — the exchange call WAS made ({result.result} {result.reason_code}, trace {result.trace_id}) "
                "and the ledger holds its outcome; only the audit record is missing"
            ) from None
        self.ledger.complete(outcome, anchor=(full["seq"], full["hash"]))
        if result.result == "FAILED_SAFE" and self.config.bundle.force_cancel_open_orders and ev.intent.symbol:
            self._forced_cancel(result, ev, text, context, state)
        return result

    def _forced_cancel(
        self, failed: ExecutionResult, ev: Evaluation, text: str, context: ExecutionContext, state: StateView
    ) -> ExecutionResult:
        """Spec §6.3 optional forced ACTION_CANCEL_OPEN_ORDERS after an exchange-side FAILED_SAFE:
        one DELETE /fapi/v1/allOpenOrders for the symbol, recorded as its own audit record."""
        assert ev.decision is not None
        header, request = forced_cancel_request(ev, failed, self.config, context)
        record = ExecutionRecord(
            decision_id=ev.decision.decision_id, action_id=header["action_id"], action_type="ACTION_CANCEL_OPEN_ORDERS",
            symbol=dict(request.params)["symbol"], result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN",
            timestamp=context.timestamp, attempted=True, opens=False,
        )
        if not self.ledger.write_ahead(
            record, client_order_id=None, trace_id=header["trace_id"], input_digest=header["input_digest"],
            bundle_digest=header["bundle"]["digest"], constraints_digest=header["constraints_digest"],
        ):
            return failed
        reply = _reply_data(self.client.send_signed(request.method, request.path, request.params))
        result = forced_cancel_result(header, request, reply, failed)
        full = self.audit.append(audit_record("forced_cancel", result, text=text, context=context, state=state, reply=reply), anchor=False)
        self.ledger.complete(record.model_copy(update={"result": result.result, "reason_code": result.reason_code}),
                             anchor=(full["seq"], full["hash"]))
        return result


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
    result = verify_ack(header, request, reply, context_timestamp=header["timestamp"], tolerance_ms=0)
    return result.model_copy(update={"message": f"forced cancel after {failed.reason_code} (spec §6.3): {result.message}"})
