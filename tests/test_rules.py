"""Unit tests of each rule and of the pieces the pipeline is built from."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from conftest import base_context, bundle_at, default_constraints, merge
from engine.authorization_gate import authorization_gate, read_decision
from engine.intent import IntentError, resolve_intent
from engine.models import ExecutionContext, ExecutionRecord, PolicyDecision, StateView
from engine.order import build_request, client_order_id
from engine.pipeline import Config, evaluate, execution_record
from engine.schema_validation import SchemaFailure, schema_validation
from engine.state import MemoryState, merge_views

T = 1764028800000
OPEN = {"type": "ACTION_OPEN_POSITION", "action_id": "a-1", "symbol": "BTCUSDT", "side": "LONG", "quantity": "0.010",
        "order_type": "LIMIT", "limit_price": "64000.1", "reduce_only": False, "time_in_force": "GTC"}


def ctx(**patch) -> ExecutionContext:
    return ExecutionContext.model_validate(merge(base_context(), patch))


def decision(**action) -> dict:
    return {"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": {**OPEN, **action}}


def config(mode: str = "dry-run") -> Config:
    return Config(bundle_at(None), default_constraints(), mode)


# Rule 1


def test_rule1_reads_ids_but_not_the_action() -> None:
    raw = read_decision(json.dumps({"decision_id": "d-9", "decision_code": "NO", "action": {"action_id": "x", "type": 1}}))
    assert (raw.decision_id, raw.action_id, raw.problem) == ("d-9", "x", None)
    assert authorization_gate(raw) is False


_HOLD = '{"decision_id": "d-9", "decision_code": "HOLD", "action": {"type": "ACTION_NOOP", "action_id": "a-1"%s}}'


@pytest.mark.parametrize("text,code", [
    # a repeated key elsewhere: the decision authorizes nothing, so Rule 1 answers before Rule 2 could
    (_HOLD % ', "action_id": "a-2"', "NOT_AUTHORIZED"),
    ('{"decision_id": "d-9", "action": {"action_id": "a-1", "x": 1, "x": 2}}', "DECISION_CODE_MISSING"),
    # a number ep4 cannot hold exactly (it is valid JSON): the same
    (_HOLD % ', "delta_quantity": 1e999999999', "NOT_AUTHORIZED"),
    (_HOLD % (', "n": ' + "9" * 5000), "NOT_AUTHORIZED"),
    ('{"decision_id": "d-9", "decision_code": 1e999999, "action": {"action_id": "a-1"}}', "NOT_AUTHORIZED"),
    ('{"decision_id": "d-9", "decision_code": NaN, "action": {"action_id": "a-1"}}', "NOT_AUTHORIZED"),
    ('{"decision_id": "d-9", "action": {"action_id": "a-1", "q": 1e999999999}}', "DECISION_CODE_MISSING"),
    ('{"decision_id": "d-9", "decision_code": "AUTHORIZED_ACTION", "decision_code": "AUTHORIZED_ACTION", '
     '"action": {"action_id": "a-1", "q": -1e999999999}}', "DECISION_CODE_DUPLICATED"),
])
def test_rule1_decides_before_a_repeated_key_or_an_unreadable_number_is_looked_at(text: str, code: str) -> None:
    """Spec §4: the rules run in strict order, and Rule 1 is absolute: an object that does not hold
    exactly one decision_code equal to AUTHORIZED_ACTION is a NOOP whatever else is wrong with it."""
    for raw in (text, text.encode()):
        res = evaluate(raw, ctx(), config()).result
        assert (res.result, res.reason_code, res.rule, res.decision_id) == ("NOOP", code, 1, "d-9")
        assert res.action_id in ("a-1", "a-2")


@pytest.mark.parametrize("text,code", [
    ('{"decision_id": "d-9", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a-1", "q": 1e999999999}}', "INPUT_NOT_JSON"),
    ('{"decision_id": "d-9", "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": "a-1", "x": 1, "x": 2}}', "DUPLICATE_KEY"),
    ('{"decision_code": "HOLD", "q": 1e999999999', "INPUT_NOT_JSON"),  # not JSON at all: nothing can be read
    ('[{"decision_code": "HOLD"}, 1e999999999]', "INPUT_NOT_JSON"),
])
def test_an_authorized_decision_is_still_refused_for_them(text: str, code: str) -> None:
    res = evaluate(text, ctx(), config()).result
    assert (res.result, res.reason_code, res.rule) == ("REJECTED", code, 2)
    # ARCHITECTURE: REJECTED "with whatever ids could be read" (JSON strings; a number is no id)
    readable = text.startswith("{") and text.endswith("}")
    assert (res.decision_id, res.action_id) == (("d-9", "a-1") if readable else (None, None))


def test_ids_next_to_an_unreadable_number_are_read_as_text_ids_only() -> None:
    text = '{"decision_id": 12, "decision_code": "AUTHORIZED_ACTION", "action": {"action_id": 7.5, "q": 1e999999999}}'
    res = evaluate(text, ctx(), config()).result
    assert (res.reason_code, res.decision_id, res.action_id) == ("INPUT_NOT_JSON", None, None)
    held = '{"decision_id": 12, "decision_code": "HOLD", "action": {"action_id": "a-1", "q": 1e999999999}}'
    res = evaluate(held, ctx(), config()).result
    assert (res.reason_code, res.decision_id, res.action_id) == ("NOT_AUTHORIZED", None, "a-1")


def test_not_json_keeps_nothing_and_never_raises() -> None:
    for text in ("", "{", "\x00", "[" * 100000, b"\xff\xfe"):
        res = evaluate(text, ctx(), config()).result
        assert res.result == "REJECTED" and res.reason_code in ("INPUT_NOT_JSON", "INPUT_NOT_OBJECT")


# Rule 2


def test_schema_lists_every_problem_and_names_the_first_field() -> None:
    out = schema_validation(decision(quantity="0", side="UP", extra=1), ctx())
    assert isinstance(out, SchemaFailure)
    assert {e["field"] for e in out.errors} == {"action.quantity", "action.side", "action.extra"}
    assert out.reason_code in {"INVALID_QUANTITY", "INVALID_SIDE", "UNKNOWN_FIELD"}


def test_schema_accepts_numbers_and_decimal_strings_exactly() -> None:
    for q in (Decimal("0.010"), 1, "0.010"):
        out = schema_validation(decision(quantity=q), ctx())
        assert isinstance(out, PolicyDecision)
        assert out.action.quantity == Decimal(q)


def test_schema_refuses_python_floats_from_hosts() -> None:
    out = schema_validation(decision(quantity=0.01), ctx())
    assert isinstance(out, SchemaFailure) and out.reason_code == "INVALID_QUANTITY"


# intent (Rule 3 position resolution)


def _intent(action: dict, **patch):
    return resolve_intent(PolicyDecision.model_validate(decision(**action)).action, ctx(**patch))


def test_open_long_adds_to_the_net_position() -> None:
    i = _intent({})
    assert (i.side, i.quantity, i.position_before, i.position_after) == ("BUY", Decimal("0.010"), Decimal("0.020"), Decimal("0.030"))
    assert i.increases_exposure and not i.opens_position and i.order_notional == Decimal("640.0010")


def test_open_short_against_a_long_in_one_way_mode_reduces_then_flips() -> None:
    i = _intent({"side": "SHORT", "quantity": "0.030", "order_type": "MARKET", "limit_price": None, "time_in_force": None})
    assert i.position_after == Decimal("-0.010") and i.increases_exposure and i.opens_position


def test_adjust_down_is_reduce_only_and_cannot_flip() -> None:
    adj = {"type": "ACTION_ADJUST_POSITION", "delta_quantity": "-0.005"}
    base = {"type": "ACTION_ADJUST_POSITION", "action_id": "a-1", "symbol": "BTCUSDT"}
    i = resolve_intent(PolicyDecision.model_validate({"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": {**base, **adj}}).action, ctx())
    assert (i.side, i.reduce_only, i.position_after) == ("SELL", True, Decimal("0.015"))
    flip = {**base, "delta_quantity": "-0.0201"}
    with pytest.raises(IntentError) as info:
        resolve_intent(PolicyDecision.model_validate({"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": flip}).action, ctx())
    assert info.value.reason_code == "ADJUST_WOULD_FLIP"


def test_short_adjust_up_sells() -> None:
    patch = {"account": {"positions": [{"symbol": "BTCUSDT", "quantity": "-0.020", "leverage": 5, "margin_mode": "ISOLATED"}]}}
    a = {"type": "ACTION_ADJUST_POSITION", "action_id": "a-1", "symbol": "BTCUSDT", "delta_quantity": "0.005"}
    i = resolve_intent(PolicyDecision.model_validate({"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": a}).action, ctx(**patch))
    assert (i.side, i.reduce_only, i.position_after) == ("SELL", False, Decimal("-0.025"))


# Rule 3 gates: an evaluation error is never a pass


def test_gate_evaluation_error_fails_safe_with_the_gate_named() -> None:
    res = evaluate(json.dumps(decision()), ctx(health={"api_latency_ms": 5}), config(), StateView()).result
    assert res.result == "NOOP"  # sanity: the baseline passes
    broken = ctx(account={"positions": [{"symbol": "BTCUSDT", "quantity": "0.020", "margin_mode": "ISOLATED"}]})
    res = evaluate(json.dumps(decision()), broken, config()).result
    assert res.result == "FAILED_SAFE" and res.rule == 3
    assert [g.id for g in res.gate_trace if not g.passed][0] == "exposure.max-leverage"


def test_full_gate_trace_even_after_the_first_failure() -> None:
    res = evaluate(json.dumps(decision(quantity="0.49")), ctx(), config()).result
    assert res.reason_code == "MAX_POSITION_EXCEEDED"
    assert len(res.gate_trace) == len(bundle_at(None).risk_gates)
    assert sum(not g.passed for g in res.gate_trace) >= 2  # notional and margin fail too


# order building (Rule 5 request)


def test_client_order_id_is_deterministic_and_binance_valid() -> None:
    cid = client_order_id("d-1", "a-1")
    assert cid == client_order_id("d-1", "a-1") != client_order_id("d-1", "a-2")
    assert re.fullmatch(r"[\.A-Z\:/a-z0-9_-]{1,36}", cid)


def test_request_carries_exact_decimal_text() -> None:
    i = _intent({"quantity": "0.00001000", "limit_price": "64000.10"})
    req = build_request(i, decision_id="d", action_id="a", timestamp=T, recv_window_ms=5000, hedge_mode=False)
    params = dict(req.params)
    assert (params["quantity"], params["price"]) == ("0.00001000", "64000.10")
    assert "E" not in params["quantity"]


# state and duplicates


def _rec(**kw) -> ExecutionRecord:
    base = dict(decision_id="d", action_id="a", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT", result="FAILED_SAFE",
                reason_code="MAX_POSITION_EXCEEDED", timestamp=T, attempted=False, opens=True)
    return ExecutionRecord(**{**base, **kw})


def test_cooldown_refusals_do_not_extend_the_cooldown() -> None:
    from engine.state import arms_cooldown

    m, rules = MemoryState(), frozenset({3, 4, 5, 6})
    first = arms_cooldown("FAILED_SAFE", 3, T, m.view(None, None, T, 86400000), 300000, rules)
    m.add(_rec(timestamp=T), arms=first)
    later = arms_cooldown("FAILED_SAFE", 3, T + 60000, m.view(None, None, T + 60000, 86400000), 300000, rules)
    m.add(_rec(decision_id="d2", timestamp=T + 60000, reason_code="COOLDOWN_ACTIVE"), arms=later)
    assert (first, later) == (True, False)
    assert m.view(None, None, T + 120000, 86400000).last_failed_safe_ms == T


def test_a_memory_view_is_the_view_its_records_give_and_the_same_object_while_nothing_changed() -> None:
    """MemoryState.view hands out its last view again when the contents are the same (its kept
    canonical text and CEL values are then reused), and a new one as soon as anything differs."""
    import random

    rng = random.Random(20261128)
    m = MemoryState()
    lookback = 600_000
    added: list[tuple[ExecutionRecord, bool]] = []
    previous = None
    for step in range(600):
        now = T + rng.randrange(0, 900_000)
        ids = rng.choice([("d0", "a"), (f"d{step}", "a"), (None, None)])
        view = m.view(*ids, now, lookback)
        # the view as the records give it, built anew
        attempted = sorted((r for r, _ in added if r.attempted), key=lambda r: r.timestamp)
        arming = sorted({r.timestamp for r, arms in added if arms})
        want = StateView(
            executed=(ids,) if ids in {(r.decision_id, r.action_id) for r, _ in added} else (),
            recent=tuple(r for r in attempted if now - lookback <= r.timestamp <= now),
            last_execution_ms=attempted[-1].timestamp if attempted else None,
            last_failed_safe_ms=arming[-1] if arming else None,
        )
        assert view == want and all(a is b for a, b in zip(view.recent, want.recent))
        if previous is not None and view is previous:
            assert previous == want
        previous = view
        if rng.random() < 0.3:
            record = _rec(decision_id=ids[0] or f"x{step}", action_id="a", timestamp=now, attempted=rng.random() < 0.5)
            arms = rng.random() < 0.3
            m.add(record, arms=arms)
            added.append((record, arms))
    # unchanged contents: the very same object
    assert m.view("zz", "a", T + 5, lookback) is m.view("zz", "a", T + 5, lookback)


def test_merge_views_takes_the_union_and_latest_times() -> None:
    a = StateView(executed=(("d", "a"),), last_execution_ms=5)
    b = StateView(recent=(_rec(),), last_failed_safe_ms=7, last_execution_ms=9)
    m = merge_views(a, b)
    assert m.executed == (("d", "a"),) and m.last_execution_ms == 9 and m.last_failed_safe_ms == 7 and len(m.recent) == 1


def test_duplicate_is_noop_and_not_recorded_again() -> None:
    ev = evaluate(json.dumps(decision()), ctx(), config(), StateView(executed=(("d-1", "a-1"),)))
    assert ev.result.reason_code == "DUPLICATE_EXECUTION"
    assert execution_record(ev, ev.result, attempted=False) is None


def test_identical_inputs_identical_results_and_trace_ids() -> None:
    a = evaluate(json.dumps(decision()), ctx(), config()).result
    b = evaluate(json.dumps(decision()), ctx(), config()).result
    c = evaluate(json.dumps(decision()), ctx(timestamp=T + 1), config()).result
    assert a == b and a.trace_id == b.trace_id != c.trace_id


def test_the_callers_decimal_context_neither_changes_a_result_nor_is_changed() -> None:
    """Rules 3-4 run in ep4's exact context (entered once per evaluation): a host whose own decimal
    context rounds to 2 digits with no traps gets every case's result byte for byte, and gets its
    context back, the very object with its settings, after results decided inside and outside."""
    import decimal

    from conftest import case_inputs, case_names, load_case
    from engine.pipeline import result_json

    names = case_names()
    expected = {}
    for name in names:
        raw, context, bundle, constraints, state = case_inputs(load_case(name))
        expected[name] = result_json(evaluate(raw, context, Config(bundle, constraints, "dry-run"), state).result)
    host = decimal.Context(prec=2, rounding=decimal.ROUND_DOWN, traps=[])
    with decimal.localcontext(host):
        mine = decimal.getcontext()
        for name in names:
            raw, context, bundle, constraints, state = case_inputs(load_case(name))
            got = result_json(evaluate(raw, context, Config(bundle, constraints, "dry-run"), state).result)
            assert got == expected[name], name
            assert decimal.getcontext() is mine and mine.prec == 2 and not any(mine.traps.values()), name
    assert len({json.loads(v)["reason_code"] for v in expected.values()}) > 20  # refusals in every rule, and passes


def test_a_cancel_across_all_symbols_is_refused_by_the_engine_under_a_bundle_without_its_gate(tmp_path) -> None:
    """Rule 5 allows one call, and Binance cancels per symbol: a bundle without exchange.cancel-scope
    still never reaches the order builder with a cancel across all symbols (before: AssertionError)."""
    from conftest import ROOT
    from engine.bundle import load_bundle

    text = (ROOT / "policies" / "binance-perp-default.yaml").read_text()
    assert "    - exchange.cancel-scope\n" in text
    text = text.replace("    - exchange.cancel-scope\n", "").replace("includeRoot: ..", f"includeRoot: {ROOT}")
    (tmp_path / "b.yaml").write_text(text.replace("../gates/", str(ROOT / "gates") + "/"))
    bundle = load_bundle(tmp_path / "b.yaml")
    assert "exchange.cancel-scope" not in [g.id for g in bundle.constraint_checks]
    cancel = {"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION",
              "action": {"type": "ACTION_CANCEL_OPEN_ORDERS", "action_id": "c-1", "symbol": None}}
    for mode in ("dry-run", "paper"):
        ev = evaluate(json.dumps(cancel), ctx(), Config(bundle, default_constraints(), mode))
        assert ev.request is None
        assert (ev.result.result, ev.result.reason_code, ev.result.rule) == ("FAILED_SAFE", "CANCEL_ACROSS_SYMBOLS_NOT_ONE_CALL", 4)
    ev = evaluate(json.dumps(cancel), ctx(), config())  # the default bundle's gate answers first
    assert (ev.result.result, ev.result.reason_code) == ("FAILED_SAFE", "CANCEL_ALL_SYMBOLS_UNSUPPORTED")


@pytest.mark.parametrize("value", ["1", "1.0", "1e0", '"true"', "null", "[true]", "0", "false"])
def test_a_close_whose_reduce_only_is_not_the_boolean_true_is_rejected(value: str) -> None:
    """Spec §3.2 ClosePositionAction ``reduce_only: True``; Rule 2: an invalid schema is REJECTED.
    ``Literal[True]`` took 1, 1.0 and 1e0 (they equal True), and the order was sent with
    reduceOnly=true (review 2026-11-28); the open action's strict bool already refused 0 and 1."""
    close = {"type": "ACTION_CLOSE_POSITION", "action_id": "a-1", "symbol": "BTCUSDT", "quantity": "0.005", "order_type": "MARKET",
             "reduce_only": True}
    text = json.dumps({"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": close}).replace('"reduce_only": true', f'"reduce_only": {value}')
    res = evaluate(text, ctx(), config()).result
    assert (res.result, res.reason_code, res.rule) == ("REJECTED", "INVALID_REDUCE_ONLY", 2)
    assert evaluate(json.dumps({"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": close}), ctx(), config()).result.reason_code == "DRY_RUN"


@pytest.mark.parametrize("leverage", ["5", 5, "5.0", "5.00", "+5", Decimal("5.0"), Decimal("5")])
def test_a_positions_leverage_and_the_timestamp_may_be_decimal_strings(leverage) -> None:
    """ARCHITECTURE: "numbers may be JSON numbers or decimal strings". Binance's positionRisk sends the
    leverage as text ("5"); a context holding it so, or ``5.0``, was refused ("Input should be a valid
    integer", review 2026-11-28). The value, and so the input digest, is the integer's."""
    plain = ExecutionContext.model_validate(base_context())
    raw = base_context()
    raw["account"]["positions"][0]["leverage"] = leverage
    raw["timestamp"] = str(raw["timestamp"])
    context = ExecutionContext.model_validate(raw)
    assert context.account.positions[0].leverage == plain.account.positions[0].leverage == 5
    assert context.model_dump(mode="json") == plain.model_dump(mode="json")
    assert evaluate(json.dumps(decision()), context, config()).result.input_digest == evaluate(json.dumps(decision()), plain, config()).result.input_digest


@pytest.mark.parametrize("leverage", ["5.5", 0, "126", "x", True, "1e400", None])
def test_a_leverage_that_is_no_whole_number_from_1_to_125_is_refused(leverage) -> None:
    from pydantic import ValidationError

    raw = base_context()
    raw["account"]["positions"][0]["leverage"] = leverage
    if leverage is None:
        assert ExecutionContext.model_validate(raw).account.positions[0].leverage is None  # unknown: the gates fail on it
        return
    with pytest.raises(ValidationError, match="leverage"):
        ExecutionContext.model_validate(raw)


@pytest.mark.parametrize("account_id,ok", [("acct 1", True), ("compte-é", True), ("a" * 128, True), ("", False), ("a\nb", False),
                                           ("a\x07b", False), ("a" * 129, False)])
def test_the_account_id_is_opaque_text(account_id: str, ok: bool) -> None:
    """Spec §2.1 "account_id (opaque)": a space or a letter beyond ASCII refused the whole context
    (review 2026-11-28); control characters and more than 128 characters still do."""
    from pydantic import ValidationError

    raw = {**base_context(), "account_id": account_id}
    if ok:
        assert ExecutionContext.model_validate(raw).account_id == account_id
    else:
        with pytest.raises(ValidationError, match="account_id"):
            ExecutionContext.model_validate(raw)


def test_the_published_schema_takes_the_whole_number_texts_the_model_takes() -> None:
    """``ep4 schema context``: the text forms of leverage and timestamp match exactly the whole numbers
    in range (a bare decimal pattern took "5.5", "126" and "1e400", which the model refuses)."""
    schema = ExecutionContext.model_json_schema()
    text = json.dumps(schema)
    leverage = re.search(r'"pattern": "(\^0\*\(12[^"]+)"', text).group(1).encode().decode("unicode_escape")
    millis = re.search(r'"pattern": "(\^\[0-9\]\{1,14\}[^"]*)"', text).group(1).encode().decode("unicode_escape")
    for value, ok in (("5", True), ("125", True), ("05", True), ("5.0", True), ("0", False), ("126", False), ("5.5", False), ("1e400", False)):
        assert bool(re.fullmatch(leverage, value)) is ok, value
    for value, ok in (("1764028800000", True), ("1764028800000.0", True), ("-1", False), ("1e20", False), ("1.5", False), ("1" * 15, False)):
        assert bool(re.fullmatch(millis, value)) is ok, value
