"""The one reason-code vocabulary of ep4 (docs/reason-codes.md is generated from it).

Gate reason codes are declared by the gates themselves (bundle YAML); the codes here are the
engine's own. A gate may not reuse an engine code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENGINE_CODES", "ReasonCode", "schema_code_for_field"]


@dataclass(frozen=True)
class ReasonCode:
    code: str
    result: str
    rule: int | None
    when: str


_CODES = [
    # input that is not a decision at all
    ReasonCode("INPUT_NOT_JSON", "REJECTED", 2, "the decision text is not valid JSON, or holds NaN/Infinity or a number out of ep4's range (then only when it authorizes an action: Rule 1 reads the rest as text first); or a host's decision object holds something that is not exact JSON data (a float, a date, a cycle, ...)"),
    ReasonCode("INPUT_NOT_OBJECT", "REJECTED", 2, "the decision is JSON but not an object"),
    ReasonCode("DUPLICATE_KEY", "REJECTED", 2, "a key appears twice in one object of an authorized decision (a repeated decision_code is a Rule 1 NOOP, and so is any decision that authorizes nothing)"),
    # Rule 1
    ReasonCode("NOT_AUTHORIZED", "NOOP", 1, "decision_code is not AUTHORIZED_ACTION (checked before the action is read)"),
    ReasonCode("DECISION_CODE_MISSING", "NOOP", 1, "the object has no decision_code: nothing authorizes an action"),
    ReasonCode("DECISION_CODE_DUPLICATED", "NOOP", 1, "decision_code appears more than once: not an unambiguous authorization, whatever the values"),
    # Rule 2: one code per field of the §3.2 schemas, plus forbidden combinations
    ReasonCode("INVALID_DECISION_ID", "REJECTED", 2, "decision_id missing, empty, longer than 128 characters, not a string, or not printable ASCII without spaces (characters from ! to ~)"),
    ReasonCode("INVALID_ACTION", "REJECTED", 2, "action missing or not an object"),
    ReasonCode("INVALID_ACTION_TYPE", "REJECTED", 2, "action.type missing or not one of the five §3.1 types"),
    ReasonCode("INVALID_ACTION_ID", "REJECTED", 2, "action_id missing, empty, longer than 128 characters, not a string, or not printable ASCII without spaces (characters from ! to ~)"),
    ReasonCode("INVALID_SYMBOL", "REJECTED", 2, "symbol missing or not an exchange symbol (A-Z, 0-9)"),
    ReasonCode("INVALID_SIDE", "REJECTED", 2, "side missing or not LONG/SHORT"),
    ReasonCode("INVALID_QUANTITY", "REJECTED", 2, "quantity missing, not an exact decimal, or <= 0"),
    ReasonCode("INVALID_ORDER_TYPE", "REJECTED", 2, "order_type missing or not allowed (OPEN: MARKET/LIMIT, CLOSE: MARKET)"),
    ReasonCode("INVALID_LIMIT_PRICE", "REJECTED", 2, "limit_price not an exact decimal or <= 0"),
    ReasonCode("INVALID_REDUCE_ONLY", "REJECTED", 2, "reduce_only missing or not a boolean (CLOSE: must be true)"),
    ReasonCode("INVALID_TIME_IN_FORCE", "REJECTED", 2, "time_in_force not GTC/IOC, or missing on a LIMIT open"),
    ReasonCode("INVALID_DELTA_QUANTITY", "REJECTED", 2, "delta_quantity missing, not an exact decimal, or 0"),
    ReasonCode("UNKNOWN_FIELD", "REJECTED", 2, "a field that the §3.2 schema does not define"),
    ReasonCode("LIMIT_PRICE_REQUIRED", "REJECTED", 2, "OPEN with order_type LIMIT and no limit_price"),
    ReasonCode("LIMIT_PRICE_ON_MARKET", "REJECTED", 2, "OPEN with order_type MARKET and a limit_price"),
    ReasonCode("REDUCE_ONLY_ON_OPEN", "REJECTED", 2, "OPEN with reduce_only true"),
    ReasonCode("SYMBOL_MISMATCH", "REJECTED", 2, "action.symbol differs from context.symbol"),
    # §6.2 duplicate execution
    ReasonCode("DUPLICATE_EXECUTION", "NOOP", None, "(decision_id, action_id) was already processed (ledger state; or the exchange "
               "answered -4116: it holds an open order with the decision's clientOrderId)"),
    ReasonCode("ACTION_NOOP", "SUCCESS", None, "ACTION_NOOP: nothing to do, nothing touched"),
    # Rule 3: resolving the action against the position snapshot (§6.2 ambiguous state), then gates
    ReasonCode("NO_POSITION", "FAILED_SAFE", 3, "CLOSE or ADJUST but the context holds no position for the symbol"),
    ReasonCode("AMBIGUOUS_POSITION", "FAILED_SAFE", 3, "several position rows could be meant (hedge LONG and SHORT both open, or duplicate rows), or a row does not fit the account's position mode (a one-way account with a LONG / SHORT position or open order)"),
    ReasonCode("CLOSE_EXCEEDS_POSITION", "FAILED_SAFE", 3, "CLOSE quantity larger than the position"),
    ReasonCode("ADJUST_WOULD_FLIP", "FAILED_SAFE", 3, "negative delta larger than the position: a decrease may never flip it"),
    ReasonCode("TRADING_HALTED", "FAILED_SAFE", 3, "the operator halted trading (ep4 halt): only cancels go through; does not arm the cooldown"),
    ReasonCode("TRADING_REDUCE_ONLY", "FAILED_SAFE", 3, "the operator set reduce-only trading (ep4 reduce-only): only cancels, closes and decreases go through; does not arm the cooldown"),
    ReasonCode("CLOCK_BEHIND_STATE", "FAILED_SAFE", 3, "context.timestamp is older than the newest call or failure in the ledger: a clock that went backwards is an ambiguous state"),
    ReasonCode("ARITHMETIC_INEXACT", "FAILED_SAFE", 3, "a quantity or price cannot be worked with exactly (more than 60 significant digits, or out of range): nothing is rounded"),
    ReasonCode("MARK_PRICE_UNAVAILABLE", "FAILED_SAFE", 3, "the context market snapshot has no mark price for the symbol"),
    ReasonCode("GATE_EVALUATION_ERROR", "FAILED_SAFE", 3, "a gate could not be evaluated (missing field, type error, inexact arithmetic): never a pass"),
    # Rule 4
    ReasonCode("SYMBOL_NOT_IN_CONSTRAINTS", "FAILED_SAFE", 4, "the constraints snapshot has no entry for the symbol"),
    ReasonCode("CONSTRAINT_EVALUATION_ERROR", "FAILED_SAFE", 4, "an exchange-constraint check could not be evaluated: never a pass"),
    ReasonCode("CANCEL_ACROSS_SYMBOLS_NOT_ONE_CALL", "FAILED_SAFE", 4, "a cancel with symbol null (all symbols) under a bundle without a gate refusing it: Binance cancels per symbol, so it would be one call per symbol, and Rule 5 allows exactly one"),
    # dry-run
    ReasonCode("DRY_RUN", "NOOP", 5, "dry-run mode: Rules 1-4 passed, the order shown was not sent"),
    # Rules 5-6: the one exchange call and the verification of its acknowledgement
    ReasonCode("ORDER_ACCEPTED", "SUCCESS", 6, "the order was acknowledged as NEW (resting) and matches the intent"),
    ReasonCode("ORDER_FILLED", "SUCCESS", 6, "the order was acknowledged as FILLED and matches the intent"),
    ReasonCode("ORDER_PARTIALLY_FILLED", "SUCCESS", 6, "acknowledged as PARTIALLY_FILLED (the rest rests; partial fills are the exchange's, spec §4 Rule 5)"),
    ReasonCode("ORDER_EXPIRED_IOC", "SUCCESS", 6, "an IOC order was acknowledged as EXPIRED after filling what it could (possibly nothing)"),
    ReasonCode("OPEN_ORDERS_CANCELLED", "SUCCESS", 6, "DELETE /fapi/v1/allOpenOrders acknowledged (code 200)"),
    ReasonCode("EXCHANGE_REJECTED", "FAILED_SAFE", 6, "the exchange refused the request (HTTP 4xx with a Binance error code)"),
    ReasonCode("EXCHANGE_RATE_LIMITED", "FAILED_SAFE", 6, "HTTP 429: a rate limit was hit; nothing is retried, and no forced cancel follows (back off)"),
    ReasonCode("EXCHANGE_IP_BANNED", "FAILED_SAFE", 6, "HTTP 418: the IP is banned after rate-limit violations; no forced cancel follows (it would prolong the ban)"),
    ReasonCode("EXCHANGE_STATUS_UNKNOWN", "FAILED_SAFE", 6, "HTTP 5xx / 408 / -1006 / -1007: the order may or may not have been executed"),
    ReasonCode("EXCHANGE_TIMEOUT", "FAILED_SAFE", 6, "no response within the read timeout: the order may or may not have been executed"),
    ReasonCode("EXCHANGE_NO_ACK", "FAILED_SAFE", 6, "the connection closed after the request was sent, without a response"),
    ReasonCode("EXCHANGE_UNREACHABLE", "FAILED_SAFE", 6, "the connection could not be made; the request was not sent"),
    ReasonCode("ACK_MALFORMED", "FAILED_SAFE", 6, "HTTP 200 but the body is not the JSON object Binance sends (or not JSON ep4 can read), or a reply other than 429 / 418 / 408 / 5xx that repeats a key; the order is in doubt (`ep4 reconcile`)"),
    ReasonCode("ACK_MISMATCH", "FAILED_SAFE", 6, "the ack differs from the intent (clientOrderId, symbol, side, type, quantity, price, reduce-only, positionSide), or its status contradicts its executedQty; the order is in doubt (`ep4 reconcile`)"),
    ReasonCode("ACK_UNKNOWN_STATUS", "FAILED_SAFE", 6, "the ack carries an order status ep4 does not know (or none that is text); the order is in doubt (`ep4 reconcile`)"),
    ReasonCode("ACK_TIMESTAMP_INCONSISTENT", "FAILED_SAFE", 6, "the ack's updateTime is 1000 ms or more before the request's timestamp (Binance would not have run it) or more than the bundle's tolerance after it; the order is in doubt (`ep4 reconcile`)"),
    ReasonCode("ORDER_NOT_ACCEPTED", "FAILED_SAFE", 6, "acknowledged, but as REJECTED / CANCELED / EXPIRED (non-IOC) / EXPIRED_IN_MATCH (the message names any quantity that filled before it ended)"),
    ReasonCode("STATE_UNAVAILABLE", "FAILED_SAFE", 5, "the ledger could not record the attempt, so the exchange was not called"),
    ReasonCode("OUTCOME_UNKNOWN", "FAILED_SAFE", 6, "a process died between the write-ahead row and the outcome: the call may or may not have reached the exchange (audit record `kind: recovery`); the order is in doubt (`ep4 reconcile`)"),
]

ENGINE_CODES: dict[str, ReasonCode] = {c.code: c for c in _CODES}

_FIELD_CODES = {
    "decision_id": "INVALID_DECISION_ID",
    "action": "INVALID_ACTION",
    "type": "INVALID_ACTION_TYPE",
    "action_id": "INVALID_ACTION_ID",
    "symbol": "INVALID_SYMBOL",
    "side": "INVALID_SIDE",
    "quantity": "INVALID_QUANTITY",
    "order_type": "INVALID_ORDER_TYPE",
    "limit_price": "INVALID_LIMIT_PRICE",
    "reduce_only": "INVALID_REDUCE_ONLY",
    "time_in_force": "INVALID_TIME_IN_FORCE",
    "delta_quantity": "INVALID_DELTA_QUANTITY",
}


def schema_code_for_field(field: str | None) -> str:
    return _FIELD_CODES.get(field or "", "INVALID_ACTION")
