"""Rule 6 (pure): every way an acknowledgement can be wrong is FAILED_SAFE with its own code."""

from __future__ import annotations

import json

import pytest

from conftest import base_context, bundle_at, default_constraints
from engine.models import ExecutionContext
from engine.pipeline import Config, evaluate
from engine.verification import ExchangeReplyData, verify_ack

T = 1764028800000
OPEN = {"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION",
        "action": {"type": "ACTION_OPEN_POSITION", "action_id": "a-1", "symbol": "BTCUSDT", "side": "LONG",
                   "quantity": "0.010", "order_type": "LIMIT", "limit_price": "64000.1", "reduce_only": False,
                   "time_in_force": "GTC"}}


def pending():
    ev = evaluate(json.dumps(OPEN), ExecutionContext.model_validate(base_context()), Config(bundle_at(None), default_constraints(), "paper"))
    assert ev.result is None and ev.request is not None
    return ev


def ack(**over):
    ev = pending()
    p = dict(ev.request.params)
    body = {"clientOrderId": p["newClientOrderId"], "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "origQty": "0.010",
            "price": "64000.1", "reduceOnly": False, "positionSide": "BOTH", "status": "NEW", "executedQty": "0",
            "updateTime": T, "orderId": 7, "timeInForce": "GTC"}
    body.update(over)
    return body


def verify(reply: ExchangeReplyData):
    ev = pending()
    return verify_ack(ev.header, ev.request, reply, sent_timestamp=T, tolerance_ms=5000, gate_trace=ev.gate_trace)


def ok(body, status=200):
    return ExchangeReplyData(outcome="response", http_status=status, body=json.dumps(body))


@pytest.mark.parametrize("status,executed,code", [
    ("NEW", "0", "ORDER_ACCEPTED"), ("FILLED", "0.010", "ORDER_FILLED"), ("FILLED", "0.01", "ORDER_FILLED"),
    ("PARTIALLY_FILLED", "0.004", "ORDER_PARTIALLY_FILLED"), ("PARTIALLY_FILLED", "0.009", "ORDER_PARTIALLY_FILLED"),
])
def test_matching_ack_is_success(status, executed, code) -> None:
    res = verify(ok(ack(status=status, executedQty=executed)))
    assert (res.result, res.reason_code, res.rule) == ("SUCCESS", code, 6)
    assert json.loads(res.exchange_response["body"])["status"] == status


@pytest.mark.parametrize(
    "reply,code",
    [
        (ExchangeReplyData(outcome="timeout", error="ReadTimeout: timed out"), "EXCHANGE_TIMEOUT"),
        (ExchangeReplyData(outcome="no_response", error="RemoteProtocolError"), "EXCHANGE_NO_ACK"),
        (ExchangeReplyData(outcome="connect_error", error="ConnectError"), "EXCHANGE_UNREACHABLE"),
        (ExchangeReplyData(outcome="response", http_status=503, body='{"msg":"Unknown error, please check your request or try again later."}'), "EXCHANGE_STATUS_UNKNOWN"),
        (ExchangeReplyData(outcome="response", http_status=502, body="<html>bad gateway</html>"), "EXCHANGE_STATUS_UNKNOWN"),
        (ExchangeReplyData(outcome="response", http_status=408, body='{"code":-1007,"msg":"Timeout waiting for response from backend server."}'), "EXCHANGE_STATUS_UNKNOWN"),
        (ExchangeReplyData(outcome="response", http_status=429, body='{"code":-1003,"msg":"Too many requests"}'), "EXCHANGE_RATE_LIMITED"),
        (ExchangeReplyData(outcome="response", http_status=418, body='{"code":-1003,"msg":"Way too many requests; IP banned"}'), "EXCHANGE_IP_BANNED"),
        (ExchangeReplyData(outcome="response", http_status=400, body='{"code":-2019,"msg":"Margin is insufficient."}'), "EXCHANGE_REJECTED"),
        (ExchangeReplyData(outcome="response", http_status=400, body='{"code":-4015,"msg":"Client order id is not valid."}'), "EXCHANGE_REJECTED"),
        (ExchangeReplyData(outcome="response", http_status=200, body="OK"), "ACK_MALFORMED"),
    ],
)
def test_transport_and_http_failures(reply, code) -> None:
    res = verify(reply)
    assert (res.result, res.reason_code) == ("FAILED_SAFE", code)
    assert res.exchange_response == reply.opaque()


@pytest.mark.parametrize(
    "over,fragment",
    [
        ({"clientOrderId": "someone-else"}, "clientOrderId"),
        ({"symbol": "ETHUSDT"}, "symbol"),
        ({"side": "SELL"}, "side"),
        ({"type": "MARKET"}, "type"),
        ({"origQty": "0.011"}, "origQty"),
        ({"price": "64000.2"}, "price"),
        ({"reduceOnly": True}, "reduceOnly"),
        ({"positionSide": "LONG"}, "positionSide"),
    ],
)
def test_mismatch(over, fragment) -> None:
    res = verify(ok(ack(**over)))
    assert res.reason_code == "ACK_MISMATCH" and fragment in res.message


def test_quantity_compared_as_decimal_not_text() -> None:
    assert verify(ok(ack(origQty="0.01"))).reason_code == "ORDER_ACCEPTED"


def test_unknown_status_timestamp_and_not_accepted() -> None:
    assert verify(ok(ack(status="PENDING_NEW"))).reason_code == "ACK_UNKNOWN_STATUS"
    assert verify(ok(ack(updateTime=T + 5001))).reason_code == "ACK_TIMESTAMP_INCONSISTENT"
    # Binance's clock may lag by less than 1 s: it executes only if timestamp < serverTime + 1000 (facts file §1.2)
    assert verify(ok(ack(updateTime=T - 999))).reason_code == "ORDER_ACCEPTED"
    late = verify(ok(ack(updateTime=T - 1000)))  # Binance would have refused this request (-1021)
    assert late.reason_code == "ACK_TIMESTAMP_INCONSISTENT" and "accepted: -999 to +5000 ms" in late.message
    assert verify(ok(ack(updateTime="soon"))).reason_code == "ACK_MALFORMED"
    assert verify(ok(ack(status="REJECTED"))).reason_code == "ORDER_NOT_ACCEPTED"
    assert verify(ok(ack(status="EXPIRED"))).reason_code == "ORDER_NOT_ACCEPTED"  # GTC expiring is not normal
    partly = verify(ok(ack(status="EXPIRED", executedQty="0.004")))  # ended early, but 0.004 of it filled
    assert partly.reason_code == "ORDER_NOT_ACCEPTED" and "executedQty 0.004 of 0.010 filled" in partly.message


REPLIES = {
    "filled": lambda: ok(ack(status="FILLED", executedQty="0.010")),
    "accepted": lambda: ok(ack()),
    "partially-filled": lambda: ok(ack(status="PARTIALLY_FILLED", executedQty="0.004")),
    "rejected-margin": lambda: ExchangeReplyData(outcome="response", http_status=400, body='{"code":-2019,"msg":"Margin is insufficient."}'),
    "timeout": lambda: ExchangeReplyData(outcome="timeout", error="ReadTimeout: timed out"),
    "dropped": lambda: ExchangeReplyData(outcome="no_response", error="RemoteProtocolError: Server disconnected"),
    "unreachable": lambda: ExchangeReplyData(outcome="connect_error", error="ConnectError: refused"),
    "503-unknown": lambda: ExchangeReplyData(outcome="response", http_status=503, body='{"msg":"Unknown error, please check your request or try again later."}'),
    "429": lambda: ExchangeReplyData(outcome="response", http_status=429, body='{"code":-1003,"msg":"Too many requests"}'),
    "malformed": lambda: ExchangeReplyData(outcome="response", http_status=200, body='{"orderId": 1, "sta'),
    "mismatch": lambda: ok(ack(origQty="0.011")),
    "unknown-status": lambda: ok(ack(status="PENDING_NEW")),
    "stale-timestamp": lambda: ok(ack(updateTime=T + 60000)),
}


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_rule6_outcomes_are_pinned(name: str, snapshot) -> None:
    """Every Rule 6 outcome of the LIMIT open, pinned like the Rules 1-4 corpus."""
    assert verify(REPLIES[name]()).model_dump(mode="json") == snapshot


@pytest.mark.parametrize(
    "status,body,code",
    [
        (400, '{"code":[1],"msg":"x"}', "EXCHANGE_REJECTED"),  # a code that is not a number is no code
        (400, '{"code":{"a":1},"msg":["x"]}', "EXCHANGE_REJECTED"),
        (400, '{"code":-1006.0,"msg":"x"}', "EXCHANGE_STATUS_UNKNOWN"),  # -1006 written as a decimal is still -1006
        (200, '{"code":[1]}', "ACK_MISMATCH"),
        (502, "[" * 100_000 + "]" * 100_000, "EXCHANGE_STATUS_UNKNOWN"),  # nested too deep to read
        (200, "[" * 100_000 + "]" * 100_000, "ACK_MALFORMED"),
        (200, '{"a":' * 50_000 + "1" + "}" * 50_000, "ACK_MALFORMED"),
        (200, '{"x": 1e999999999}', "ACK_MALFORMED"),  # a number out of range
    ],
)
def test_a_hostile_reply_body_is_failed_safe_never_an_exception(status, body, code) -> None:
    """Rule 6 reads whatever comes back: a body a broken or hostile peer sends is FAILED_SAFE with a
    precise code (the order is then in doubt where it may exist), never an exception after the call."""
    res = verify(ExchangeReplyData(outcome="response", http_status=status, body=body))
    assert (res.result, res.reason_code, res.rule) == ("FAILED_SAFE", code, 6)


@pytest.mark.parametrize("status", [["FILLED"], {"s": "NEW"}, 7, None])
def test_an_ack_whose_status_is_not_text_is_an_unknown_status(status) -> None:
    res = verify(ok(ack(status=status)))
    assert (res.result, res.reason_code) == ("FAILED_SAFE", "ACK_UNKNOWN_STATUS")


def test_an_ack_that_does_not_settle_the_order_leaves_it_in_doubt_for_reconcile(tmp_path) -> None:
    """Spec §4 Rule 6 "if ambiguous": an HTTP 200 reply that does not match the order, names an unknown
    status or a time outside the window says the order reached the exchange without saying in what
    state; `ep4 reconcile` asks about each (engine.ledger.IN_DOUBT_CODES). A refusal does not."""
    from engine.ledger import Ledger
    from engine.models import ExecutionRecord

    ledger = Ledger(tmp_path)
    codes = ["ACK_MISMATCH", "ACK_UNKNOWN_STATUS", "ACK_TIMESTAMP_INCONSISTENT", "ACK_MALFORMED", "EXCHANGE_STATUS_UNKNOWN",
             "EXCHANGE_REJECTED", "ORDER_NOT_ACCEPTED", "EXCHANGE_UNREACHABLE"]
    for i, code in enumerate(codes):
        record = ExecutionRecord(decision_id=f"d-{i}", action_id="a", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT",
                                 result="FAILED_SAFE", reason_code=code, timestamp=T + i, attempted=True, opens=True)
        ledger.write_ahead(record, client_order_id=f"ep4-{i:032x}", trace_id=f"t-{i}", input_digest="sha256:0",
                           bundle_digest="sha256:0", constraints_digest="sha256:0")
        ledger.complete(record, arms=True)
    assert [r["reason_code"] for r in ledger.in_doubt_rows()] == codes[:5]
    ledger.close()


def test_a_duplicated_client_order_id_reply_is_a_duplicate_execution() -> None:
    """-4116 DUPLICATED_CLIENT_ORDER_ID: the exchange holds an open order with this decision's clientOrderId
    (derived from its ids alone), so the decision was executed before: spec §6.2, a NOOP."""
    res = verify(ExchangeReplyData(outcome="response", http_status=400, body='{"code":-4116,"msg":"clientOrderId is duplicated"}'))
    assert (res.result, res.reason_code, res.rule) == ("NOOP", "DUPLICATE_EXECUTION", None)
    assert res.order is not None and json.loads(res.exchange_response["body"])["code"] == -4116


@pytest.mark.parametrize("status,executed", [
    ("FILLED", "0"), ("FILLED", "0.005"), ("NEW", "0.010"), ("NEW", "0.001"),
    ("PARTIALLY_FILLED", "0"), ("PARTIALLY_FILLED", "0.010"),
])
def test_a_status_that_contradicts_executed_qty_is_in_doubt(status, executed) -> None:
    """Rule 6 "if ambiguous -> FAILED_SAFE": a FILLED ack that filled nothing (or a part), a NEW one that
    filled something, a PARTIALLY_FILLED one that filled nothing or everything does not say what the
    position became; it was SUCCESS before (review 2026-11-28)."""
    res = verify(ok(ack(status=status, executedQty=executed)))
    assert (res.result, res.reason_code, res.rule) == ("FAILED_SAFE", "ACK_MISMATCH", 6)
    assert status in res.message and executed in res.message


@pytest.mark.parametrize("text", [
    '"status":"REJECTED","executedQty":"0","status":"FILLED","executedQty":"0.010"',
    '"status":"FILLED","executedQty":"0.010","executedQty":"0.010"',
])
def test_an_ack_that_repeats_a_key_settles_nothing(text) -> None:
    """A reply that says ``status`` twice does not say which it meant (json keeps the last): it was
    read as the last value, SUCCESS ORDER_FILLED (review 2026-11-28)."""
    body = {k: v for k, v in ack().items() if k not in ("status", "executedQty")}
    raw = json.dumps(body)[:-1] + "," + text + "}"
    res = verify(ExchangeReplyData(outcome="response", http_status=200, body=raw))
    assert (res.result, res.reason_code, res.rule) == ("FAILED_SAFE", "ACK_MALFORMED", 6)
    assert "repeats" in res.message and ("status" in res.message or "executedQty" in res.message)


def test_an_error_reply_that_repeats_its_code_is_not_read_as_either() -> None:
    """{"code": -4116, ..., "code": -2010}: neither the duplicate (NOOP) nor the rejection is known."""
    raw = '{"code":-4116,"msg":"ClientOrderId is duplicated.","code":-2010}'
    res = verify(ExchangeReplyData(outcome="response", http_status=400, body=raw))
    assert (res.result, res.reason_code) == ("FAILED_SAFE", "ACK_MALFORMED")
    assert verify(ExchangeReplyData(outcome="response", http_status=503, body=raw)).reason_code == "EXCHANGE_STATUS_UNKNOWN"
