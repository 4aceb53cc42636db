"""Spec §4 Rule 6 — Post-Execution Verification (pure).

The acknowledgement must match the intent, carry a known status and a timestamp consistent with
``context.timestamp``; anything else — rejection, timeout, no ack, 5xx, unknown status, mismatch —
is FAILED_SAFE with a precise reason code, and the opaque exchange response is kept (spec §6.2).
Binance's 5xx rule: execution status is UNKNOWN, never assumed failed or done (facts file §4).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .models import ExecutionResult
from .numbers import DecimalParseError, duplicate_keys, loads, parse_decimal, repeats_seen
from .order import OrderRequest

__all__ = ["BACK_OFF_CODES", "ExchangeReplyData", "reply_json", "reply_json_repeats", "verify_ack"]

KNOWN_STATUSES = {"NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED", "EXPIRED_IN_MATCH"}
_SUCCESS = {"NEW": "ORDER_ACCEPTED", "PARTIALLY_FILLED": "ORDER_PARTIALLY_FILLED", "FILLED": "ORDER_FILLED"}
# Binance asked ep4 to stop sending: HTTP 429 ("a rate limit was broken. Back off.") and 418 (the IP is
# banned for continuing after 429s; bans escalate from 2 minutes to 3 days), facts file §4. After these
# nothing more is sent, not even the spec §6.3 forced cancel (engine.executor).
BACK_OFF_CODES = ("EXCHANGE_RATE_LIMITED", "EXCHANGE_IP_BANNED")
_UNKNOWN_CODES = {-1006, -1007}  # UNEXPECTED_RESP, TIMEOUT: "execution status unknown"
_SERVER_AHEAD_MS = 1000  # Binance refuses a request whose timestamp is 1000 ms or more ahead of its clock
# -4116 DUPLICATED_CLIENT_ORDER_ID (facts file §4): "a resend with the same newClientOrderId is rejected while
# the first order is still open". ep4's clientOrderId derives from (decision_id, action_id) alone, so the
# exchange holds this decision's order already: spec §6.2 duplicate execution, a NOOP. It is not a refusal
# of this decision to be answered by the §6.3 forced cancel, which would cancel that (legitimate) order.
_DUPLICATE_CLIENT_ORDER_ID = -4116


class ExchangeReplyData(BaseModel):
    """What came back from the one exchange call, as data (recorded in the audit log for replay)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outcome: Literal["response", "timeout", "connect_error", "no_response"]
    http_status: int | None = None
    body: str | None = None
    error: str | None = None

    def opaque(self) -> dict[str, Any]:
        """The exchange response kept in results and audit records, exactly as received."""
        return {"outcome": self.outcome, "http_status": self.http_status, "body": self.body, "error": self.error}


def reply_json(body: str | None) -> Any:
    """An exchange reply's JSON, or None for a body that is not JSON ep4 can read (a number out of range
    is a ValueError too, a nesting too deep to walk a RecursionError: a hostile or broken peer gets the
    same answer as an HTML error page). Rule 6 and `ep4 reconcile` read replies with it."""
    if not body:
        return None
    try:
        return loads(body)
    except (ValueError, RecursionError):
        return None


def reply_json_repeats(body: str | None) -> tuple[Any, list[str]]:
    """:func:`reply_json`, and the keys the reply repeats (dotted paths; none for most replies: the
    body is walked only when the parse saw a repeated key). A reply that says ``status`` twice does
    not say which it meant: Rule 6 and `ep4 reconcile` take nothing from it (spec Rule 6: ambiguous
    -> FAILED_SAFE), as Rule 2 refuses a decision that repeats a key."""
    before = repeats_seen()
    parsed = reply_json(body)
    return parsed, (duplicate_keys(parsed) if repeats_seen() != before else [])


def _code(value: Any) -> int | None:
    """Binance's error ``code`` when it is one: an integer (``-1006.0`` too, as it always counted);
    anything else in its place (a list, a map, text) is no code."""
    if type(value) is int:
        return value
    if type(value) is Decimal and value == value.to_integral_value():
        return int(value)
    return None


def _dec(value: Any) -> Decimal | None:
    try:
        return parse_decimal(value)
    except DecimalParseError:
        return None


def _mismatches(params: dict[str, str], ack: dict[str, Any], hedge: bool) -> list[str]:
    out = []
    for ours, theirs in (("newClientOrderId", "clientOrderId"), ("symbol", "symbol"), ("side", "side"), ("type", "type")):
        if ack.get(theirs) != params[ours]:
            out.append(f"{theirs} {ack.get(theirs)!r} != {params[ours]!r}")
    if _dec(ack.get("origQty")) != Decimal(params["quantity"]):
        out.append(f"origQty {ack.get('origQty')!r} != {params['quantity']!r}")
    if "price" in params and _dec(ack.get("price")) != Decimal(params["price"]):
        out.append(f"price {ack.get('price')!r} != {params['price']!r}")
    want_reduce = params.get("reduceOnly") == "true"
    if not hedge and ack.get("reduceOnly") is not want_reduce:
        out.append(f"reduceOnly {ack.get('reduceOnly')!r} != {want_reduce}")
    if "timeInForce" in params and ack.get("timeInForce") != params["timeInForce"]:
        out.append(f"timeInForce {ack.get('timeInForce')!r} != {params['timeInForce']!r}")
    if ack.get("positionSide", "BOTH") != params.get("positionSide", "BOTH"):
        out.append(f"positionSide {ack.get('positionSide')!r} != {params.get('positionSide', 'BOTH')!r}")
    return out


def verify_ack(
    header: dict[str, Any],
    request: OrderRequest,
    reply: ExchangeReplyData,
    *,
    sent_timestamp: int,
    tolerance_ms: int,
    gate_trace: tuple = (),
) -> ExecutionResult:
    """Rule 6: turn the reply to ``request`` into the final result.

    ``sent_timestamp`` is the signed request's ``timestamp``. Binance executes a request only if
    ``timestamp < serverTime + 1000`` (facts file §1.2), so a genuine ack's ``updateTime`` is less than
    1000 ms before it (``updateTime > timestamp - 1000``); and no later than ``tolerance_ms`` after it."""

    def result(kind: str, code: str, message: str, rule: int | None = 6) -> ExecutionResult:
        return ExecutionResult(
            result=kind, reason_code=code, rule=rule, message=message, gate_trace=gate_trace,
            order=request.as_dict(), exchange_response=reply.opaque(), **header,
        )

    def failed(code: str, message: str) -> ExecutionResult:
        return result("FAILED_SAFE", code, message)

    if reply.outcome == "connect_error":
        return failed("EXCHANGE_UNREACHABLE", f"no connection to the exchange; nothing was sent ({reply.error})")
    if reply.outcome == "timeout":
        return failed("EXCHANGE_TIMEOUT", f"no response in time; the outcome is unknown ({reply.error})")
    if reply.outcome == "no_response":
        return failed("EXCHANGE_NO_ACK", f"the connection closed without a response; the outcome is unknown ({reply.error})")

    status, (body, repeated) = reply.http_status or 0, reply_json_repeats(reply.body)
    code = _code(body.get("code")) if isinstance(body, dict) else None
    msg = body.get("msg") if isinstance(body, dict) else None
    if status == 429:
        return failed("EXCHANGE_RATE_LIMITED", f"HTTP 429 rate limit ({code}: {msg})")
    if status == 418:
        return failed("EXCHANGE_IP_BANNED", f"HTTP 418 IP banned ({code}: {msg})")
    if status >= 500 or status == 408 or (code in _UNKNOWN_CODES and not repeated):
        return failed("EXCHANGE_STATUS_UNKNOWN", f"HTTP {status}: execution status unknown ({msg or 'no message'})")
    if repeated:  # which of the repeated values the exchange meant is unknown: neither settles anything
        return failed("ACK_MALFORMED", f"HTTP {status}: the reply repeats {', '.join(repeated[:5])}"
                      f"{' (and more)' if len(repeated) > 5 else ''}: which value the exchange meant is unknown")
    if status != 200 and code == _DUPLICATE_CLIENT_ORDER_ID and request.path == "/fapi/v1/order" and request.client_order_id:
        return result(
            "NOOP", "DUPLICATE_EXECUTION",
            f"the exchange already holds an open order with this decision's clientOrderId {request.client_order_id} "
            f"(HTTP {status}, Binance error -4116: {msg}): this (decision_id, action_id) was executed before; nothing done",
            rule=None,  # as every DUPLICATE_EXECUTION (engine.reason_codes)
        )
    if status != 200:
        return failed("EXCHANGE_REJECTED", f"HTTP {status}: Binance error {code}: {msg}")
    if not isinstance(body, dict):
        return failed("ACK_MALFORMED", "HTTP 200 but the body is not a JSON object")

    params = dict(request.params)
    if request.path == "/fapi/v1/allOpenOrders":
        if code == 200:
            return result("SUCCESS", "OPEN_ORDERS_CANCELLED", f"open {params['symbol']} orders cancelled")
        return failed("ACK_MALFORMED", f"cancel-all acknowledgement without code 200: {body!r}"[:300])

    hedge = "positionSide" in params
    wrong = _mismatches(params, body, hedge)
    if wrong:
        return failed("ACK_MISMATCH", "the ack does not match the order sent: " + "; ".join(wrong))
    order_status = body.get("status")
    if not isinstance(order_status, str) or order_status not in KNOWN_STATUSES:
        return failed("ACK_UNKNOWN_STATUS", f"unknown order status {order_status!r}")
    update = body.get("updateTime")
    if isinstance(update, bool) or not isinstance(update, int):
        return failed("ACK_MALFORMED", "the ack has no integer updateTime")
    if not (sent_timestamp - _SERVER_AHEAD_MS < update <= sent_timestamp + tolerance_ms):
        return failed(
            "ACK_TIMESTAMP_INCONSISTENT",
            f"ack updateTime {update} is {update - sent_timestamp} ms from the request's timestamp {sent_timestamp} "
            f"(accepted: -{_SERVER_AHEAD_MS - 1} to +{tolerance_ms} ms)",
        )
    executed, ordered = _dec(body.get("executedQty")), Decimal(params["quantity"])
    if executed is None or executed < 0 or executed > ordered:
        return failed("ACK_MISMATCH", f"executedQty {body.get('executedQty')!r} is not between 0 and origQty {params['quantity']}")
    contradiction = _status_contradiction(order_status, executed, ordered)
    if contradiction:
        return failed("ACK_MISMATCH", f"the ack's status {order_status} contradicts its executedQty {body.get('executedQty')} "
                      f"of origQty {params['quantity']} ({contradiction}): what was executed is unknown")
    if order_status in _SUCCESS:
        return result("SUCCESS", _SUCCESS[order_status], f"order {order_status}: executedQty {body.get('executedQty')}")
    if order_status == "EXPIRED" and params.get("timeInForce") == "IOC":
        return result("SUCCESS", "ORDER_EXPIRED_IOC", f"IOC order expired with executedQty {body.get('executedQty')}")
    if executed > 0:  # it ended before it completed, but part of it filled: the position changed by that much
        return failed("ORDER_NOT_ACCEPTED", f"the exchange acknowledged the order as {order_status} after executedQty "
                      f"{body.get('executedQty')} of {params['quantity']} filled: the position changed by that much")
    return failed("ORDER_NOT_ACCEPTED", f"the exchange acknowledged the order as {order_status}")


def _status_contradiction(status: str, executed: Decimal, quantity: Decimal) -> str | None:
    """What an order status says of its executed quantity, where the ack says otherwise (Binance: NEW
    has filled nothing, PARTIALLY_FILLED some but not all, FILLED all of it); None when they agree."""
    if status == "NEW" and executed != 0:
        return "a NEW order has filled nothing"
    if status == "PARTIALLY_FILLED" and not 0 < executed < quantity:
        return "a PARTIALLY_FILLED order has filled some but not all"
    if status == "FILLED" and executed != quantity:
        return "a FILLED order has filled all of it"
    return None
