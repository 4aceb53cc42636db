"""The shortcuts issue 6 took for speed give exactly what the plain code gives (no timing here:
benchmarks are `ep4 bench` and tests/bench/).

Each test compares a fast form with the straightforward computation it replaces, on the inputs
where they could differ: records repeated across state views, keys and values that are not what
ep4 writes, decision ids holding JSON syntax, an audit log changed behind the writer's back.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from celpy import celtypes

from engine.audit import AuditError, AuditLog, chained_record_text, record_hash
from engine.bundle import load_bundle
from engine.cel import CelEvaluationError, FieldSpec, compile_expression, to_cel
from engine.cel import functions
from engine.cel.functions import _recent_count
from engine.executor import state_record
from engine.intent import Intent, _new_intent
from engine.ledger import Ledger
from engine.models import ExecutionRecord, StateView
from engine.numbers import canonical_json, sha256_digest
from engine.pipeline import _state_json
from engine.risk_gates import evaluate_gates

ROOT = Path(__file__).resolve().parents[1]


def _record(i: int, decision_id: str | None = None, **over) -> ExecutionRecord:
    fields = dict(decision_id=decision_id or f"d-{i}", action_id="a", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT",
                  result="SUCCESS", reason_code="ORDER_ACCEPTED", timestamp=1_764_028_800_000 + i, attempted=True, opens=i % 2 == 0)
    fields.update(over)
    return ExecutionRecord(**fields)


# --- the state's canonical text, the audit's state record ---

ODD_IDS = ['"recent":[]', 'x","recent":[]}', "ü\u2028", "\\", '{"recent":[1]}']


def test_state_json_is_canonical_json_of_the_dump() -> None:
    records = tuple(_record(i, ODD_IDS[i % len(ODD_IDS)] + str(i)) for i in range(12))
    states = [
        StateView(),
        StateView(recent=records[:1]),
        StateView(recent=records, executed=((ODD_IDS[0], ODD_IDS[1]),), last_execution_ms=5, last_failed_safe_ms=3, trading_state="REDUCING"),
    ]
    for state in states:
        assert _state_json(state) == canonical_json(state.model_dump(mode="json"))
    # the per-record text is kept with the record: a second view of the same records gives the same text
    again = StateView(recent=records, executed=((ODD_IDS[0], ODD_IDS[1]),), last_execution_ms=5, last_failed_safe_ms=3, trading_state="REDUCING")
    assert _state_json(again) == _state_json(states[2])


def test_state_record_is_what_the_full_dump_gives() -> None:
    state = StateView(recent=tuple(_record(i, ODD_IDS[i % len(ODD_IDS)]) for i in range(9)), last_execution_ms=8)

    def plain(refs):
        dumped = state.model_dump(mode="json")
        recent = dumped.pop("recent")
        refs = refs if refs is not None and len(refs) == len(recent) else [None] * len(recent)
        dumped["recent_refs"] = [seq if seq is not None else row for seq, row in zip(refs, recent)]
        dumped["recent_digest"] = sha256_digest(recent)
        return dumped

    for refs in (None, list(range(9)), [None if i % 3 else i for i in range(9)], [1, 2]):
        assert canonical_json(state_record(state, refs)) == canonical_json(plain(refs))


def test_the_ledger_hands_out_one_record_object_per_unchanged_row(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    try:
        ledger.add(_record(1), trace_id="t1", input_digest="i", bundle_digest="b", constraints_digest="c", arms=False)
        first = ledger.view(None, None, 1_764_028_800_010, 3_600_000).recent
        second = ledger.view(None, None, 1_764_028_800_010, 3_600_000).recent
        assert len(first) == 1 and first[0] is second[0]
        # a row that changes is a new record
        ledger.add(_record(2), trace_id="t2", input_digest="i", bundle_digest="b", constraints_digest="c", arms=False)
        third = ledger.view(None, None, 1_764_028_800_010, 3_600_000).recent
        assert third[0] is first[0] and third[1].decision_id == "d-2"
    finally:
        ledger.close()


# --- the audit record's hash and line ---


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6) | st.decimals(allow_nan=False, allow_infinity=False, places=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8), max_size=8))
def test_chained_record_text_is_record_hash_and_canonical_json(record: dict) -> None:
    record = {k: v for k, v in record.items() if k != "hash"}
    digest, line = chained_record_text(record)
    assert digest == record_hash(record)
    assert line == canonical_json({**record, "hash": digest})


def test_a_tail_changed_behind_the_writer_is_still_caught(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    full = log.append({"kind": "test", "n": 1})
    log.check_before_sending((full["seq"], full["hash"]))  # as this process left it: sound
    data = (tmp_path / "audit.jsonl").read_bytes()
    (tmp_path / "audit.jsonl").write_bytes(data.replace(b'"n":1', b'"n":2'))  # same size, content changed
    with pytest.raises(AuditError, match="hash does not match"):
        log.check_before_sending((full["seq"], full["hash"]))
    # another writer appended: the next append chains on the record it finds in the file
    other = AuditLog(tmp_path / "second.jsonl")
    a = other.append({"kind": "test"})
    b = AuditLog(tmp_path / "second.jsonl").append({"kind": "test"})
    c = other.append({"kind": "test"})
    assert (a["seq"], b["seq"], c["seq"]) == (1, 2, 3) and c["prev_hash"] == b["hash"]


# --- recent_count: the plain-dict reads against the reference reads ---


def _reference_recent_count(records, since_ms, match):
    wanted = list(match.items())
    return Decimal(sum(1 for r in records if r["timestamp"] > since_ms and all(r.get(k) == v for k, v in wanted)))


def _outcome(f, *args):
    try:
        return ("ok", f(*args))
    except Exception as exc:  # noqa: BLE001 - the kind and text are what is compared
        return ("error", type(exc).__name__, str(exc))


_values = st.sampled_from([True, False, "BTCUSDT", "ETHUSDT", None, Decimal(1), Decimal("1.0")])


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from(["timestamp", "symbol", "opens", "attempted", "x"]), _values, max_size=4)
             .map(lambda d: {**d, "timestamp": Decimal(len(d))}), max_size=6),
    st.dictionaries(st.sampled_from(["symbol", "opens", "attempted", "missing"]), _values, max_size=3),
    st.booleans(),
)
def test_recent_count_reads_as_the_reference_does(records, match, odd_key) -> None:
    cel_records, cel_match = to_cel(records), to_cel(match)
    if odd_key:  # a key that is not a string: the reference's MapType.get refuses it
        cel_match = celtypes.MapType({**cel_match, celtypes.IntType(1): celtypes.BoolType(True)})
    assert _outcome(_recent_count, cel_records, Decimal(1), cel_match) == _outcome(_reference_recent_count, cel_records, Decimal(1), cel_match)


def test_recent_count_of_no_record_is_the_loops() -> None:
    """An empty state.recent (the first decision of an account) answers 0 without the loop, and the
    same errors as the loop for a bad ``since`` or a match that is not a map."""
    from engine.cel.values import _List, _RecentList

    for empty in (_RecentList([]), _List([]), celtypes.ListType([]), to_cel([])):
        for since, match in ((Decimal(1), to_cel({"symbol": "BTCUSDT"})), (Decimal(1), to_cel({})), (Decimal(1), Decimal(2)),
                             (celtypes.StringType("1"), to_cel({})), (Decimal(1), to_cel(["symbol"]))):
            expected = _outcome(_reference_recent_count, list(empty), since, match)
            if not isinstance(since, Decimal):  # recent_count checks its since first (the reference above does not)
                expected = ("error",)
            got = _outcome(_recent_count, empty, since, match)
            assert got[:len(expected)] == expected, (type(empty).__name__, since, match)


# --- intents, gate chains ---


def test_new_intent_is_the_dataclass() -> None:
    fields = dict(kind="ORDER", action_type="ACTION_OPEN_POSITION", symbol="BTCUSDT", side="BUY", quantity=Decimal("0.010"),
                  position_after=Decimal("0.03"), increases_exposure=True)
    fast, plain = _new_intent(**fields), Intent(**fields)
    assert fast == plain and list(fast.__dict__.items()) == list(plain.__dict__.items()) and repr(fast) == repr(plain)
    with pytest.raises(TypeError, match="missing"):
        _new_intent(kind="ORDER")
    with pytest.raises(TypeError, match="unknown"):
        _new_intent(kind="ORDER", action_type="x", symbol=None, colour="red")


def _plain_intent(action, context):
    """resolve_intent as it was written before it built the intent's fields in place (a31d81a..a3e72ae):
    a field dict per action kind, then ``Intent(**fields)``, each context lookup made afresh."""
    from engine.intent import IntentError, _held, _read_rows, _settings_row, _sign, _working
    from engine.models import AdjustPositionAction, CancelOrdersAction, ClosePositionAction, OpenPositionAction
    from engine.numbers import EXACT

    if isinstance(action, CancelOrdersAction):
        return Intent(kind="CANCEL", action_type=action.type, symbol=action.symbol)
    symbol = action.symbol
    market = context.market.get(symbol)
    if market is None:
        raise IntentError("MARK_PRICE_UNAVAILABLE", f"the context has no mark price for {symbol}")
    mark = market.mark_price
    if isinstance(action, OpenPositionAction):
        side = "BUY" if action.side == "LONG" else "SELL"
        (both, long_row, short_row), problem = _read_rows(context, symbol)
        if problem is not None:
            raise IntentError(*problem)
        if context.account.position_mode == "HEDGE":
            row, pos_side = (long_row, "LONG") if action.side == "LONG" else (short_row, "SHORT")
        else:
            row, pos_side = both, "BOTH"
        before = row.quantity if row is not None else Decimal(0)
        fields = dict(side=side, position_side=pos_side, order_type=action.order_type, quantity=action.quantity,
                      price=action.limit_price, time_in_force=action.time_in_force if action.order_type == "LIMIT" else None,
                      reduce_only=False, position_before=before,
                      position_after=EXACT.add(before, action.quantity * (1 if side == "BUY" else -1)))
    elif isinstance(action, ClosePositionAction):
        row, pos_side = _held(context, symbol)
        before = row.quantity
        qty = action.quantity if action.quantity is not None else abs(before)
        if qty > abs(before):
            raise IntentError("CLOSE_EXCEEDS_POSITION", f"close quantity {qty} exceeds the {symbol} position {abs(before)}")
        fields = dict(side="SELL" if before > 0 else "BUY", position_side=pos_side, order_type="MARKET", quantity=qty,
                      reduce_only=True, position_before=before, position_after=EXACT.subtract(before, qty * _sign(before)))
    else:
        assert isinstance(action, AdjustPositionAction)
        row, pos_side = _held(context, symbol)
        before, delta = row.quantity, action.delta_quantity
        if delta < 0 and -delta > abs(before):
            raise IntentError("ADJUST_WOULD_FLIP", f"decrease {-delta} exceeds the {symbol} position {abs(before)}")
        grows = delta > 0
        fields = dict(side=("BUY" if before > 0 else "SELL") if grows else ("SELL" if before > 0 else "BUY"),
                      position_side=pos_side, order_type="MARKET", quantity=abs(delta), reduce_only=not grows,
                      position_before=before, position_after=EXACT.add(before, delta * _sign(before)))
    before, after = fields["position_before"], fields["position_after"]
    reference = fields.get("price") or mark
    flips = _sign(before) != 0 and _sign(after) == -_sign(before)
    row = _settings_row(context, symbol, fields["position_side"])
    working = _working(context, symbol, fields["side"], fields["position_side"])
    worst = after + (1 if fields["side"] == "BUY" else -1) * working
    return Intent(
        kind="ORDER", action_type=action.type, symbol=symbol, mark_price=mark, reference_price=reference,
        order_notional=EXACT.multiply(fields["quantity"], reference), notional_after=EXACT.multiply(abs(after), reference),
        increases_exposure=abs(after) > abs(before) or flips, opens_position=(before == 0 and after != 0) or flips,
        leverage=Decimal(row.leverage) if row and row.leverage else None, margin_mode=row.margin_mode if row else None,
        working_same_side=working, worst_case_position_after=worst,
        worst_case_notional_after=EXACT.multiply(abs(worst), reference), **fields,
    )


_QTY = st.sampled_from(["0", "-0", "0.000", "0.010", "0.02", "-0.020", "1", "-1", "1E+2", "0.1E-3", "123456789.123456789",
                        "-5", "9" * 40, "1" + "0" * 40 + ".1"])


_ROW = st.tuples(st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.sampled_from(["BOTH", "LONG", "SHORT"]), _QTY,
                 st.sampled_from([None, 1, 5]), st.sampled_from([None, "ISOLATED", "CROSSED"]))
_NONNEG = _QTY.filter(lambda q: not q.startswith("-"))


@st.composite
def _rows(draw, mode: str):
    """Position rows: mostly what an account of the mode holds (one BOTH row, or a LONG >= 0 and a
    SHORT <= 0 row), sometimes anything (duplicated, contradictory rows: an ambiguous position)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(_ROW, max_size=3))
    settings_ = (st.sampled_from([None, 1, 5]), st.sampled_from([None, "ISOLATED", "CROSSED"]))
    if mode == "ONE_WAY":
        sides = [("BOTH", _QTY)]
    else:
        sides = [("LONG", _NONNEG), ("SHORT", _NONNEG.map(lambda q: "-" + q))]
    rows = [("BTCUSDT", side, draw(qty), draw(settings_[0]), draw(settings_[1]))
            for side, qty in sides if draw(st.integers(0, 4)) > 0]
    return rows + draw(st.lists(_ROW.filter(lambda r: r[0] == "ETHUSDT"), max_size=1))


@settings(max_examples=400, deadline=None)
@given(
    mode_rows=st.sampled_from(["ONE_WAY", "HEDGE"]).flatmap(lambda mode: st.tuples(st.just(mode), _rows(mode))),
    orders=st.lists(st.tuples(st.sampled_from(["BTCUSDT", "BTCUSDT", "ETHUSDT"]), st.sampled_from(["BUY", "SELL"]),
                              st.sampled_from(["BOTH", "BOTH", "LONG", "SHORT"]), _NONNEG), max_size=4),
    action=st.one_of(
        st.fixed_dictionaries({"type": st.just("ACTION_OPEN_POSITION"), "side": st.sampled_from(["LONG", "SHORT"]),
                               "quantity": st.sampled_from(["0.010", "0.02", "1", "1E+2", "0.1E-3", "9" * 40]),
                               "order_type": st.sampled_from(["MARKET", "LIMIT"]), "reduce_only": st.just(False)}),
        st.fixed_dictionaries({"type": st.just("ACTION_CLOSE_POSITION"), "quantity": st.sampled_from([None, "0.010", "0.02", "5"]),
                               "order_type": st.just("MARKET"), "reduce_only": st.just(True)}),
        st.fixed_dictionaries({"type": st.just("ACTION_ADJUST_POSITION"),
                               "delta_quantity": st.sampled_from(["0.010", "-0.010", "-0.02", "-1", "2", "1E+2"])}),
        st.fixed_dictionaries({"type": st.just("ACTION_CANCEL_OPEN_ORDERS"), "symbol": st.sampled_from([None, "BTCUSDT"])}),
    ),
    mark=st.sampled_from(["64010.5", "0.1", "1E+5", "3" * 30]),
)
# a flip to the same size the other way (|after| == |before|: only the flip says it adds exposure)
@example(mode_rows=("ONE_WAY", [("BTCUSDT", "BOTH", "0.010", 5, "ISOLATED")]), orders=[("BTCUSDT", "SELL", "BOTH", "0.01")],
         action={"type": "ACTION_OPEN_POSITION", "side": "SHORT", "quantity": "0.02", "order_type": "MARKET", "reduce_only": False},
         mark="64010.5")
def test_resolve_intent_is_the_plain_resolution(mode_rows, orders, action, mark) -> None:
    """The intent built in place, with its context lookups kept (engine.intent), is field for field
    (values, their exponents and signs, the field order) the intent the plain code builds, and the
    same IntentError when there is none: one-way and hedge accounts, duplicated and contradictory
    rows, open orders on every side, signed zeros, exponents, quantities past 28 digits."""
    from engine.intent import IntentError, resolve_intent
    from engine.models import ExecutionContext, PolicyDecision

    from engine.numbers import loads

    mode, rows = mode_rows
    ctx = loads((ROOT / "examples" / "context.json").read_text())
    ctx["account"]["position_mode"] = mode
    ctx["account"]["positions"] = [{"symbol": s, "position_side": ps, "quantity": q, "leverage": lev, "margin_mode": mm}
                                   for s, ps, q, lev, mm in rows]
    ctx["account"]["open_orders"] = [{"symbol": s, "client_order_id": f"o{i}", "side": side, "position_side": ps, "quantity": q}
                                     for i, (s, side, ps, q) in enumerate(orders)]
    ctx["market"] = {"BTCUSDT": {"mark_price": mark}}
    context = ExecutionContext.model_validate(ctx)
    body = {"action_id": "a-1", "symbol": "BTCUSDT", **action}
    if body["type"] == "ACTION_OPEN_POSITION" and body["order_type"] == "LIMIT":
        body.update(limit_price="64000.1", time_in_force="IOC")
    decision = PolicyDecision.model_validate({"decision_id": "d-1", "decision_code": "AUTHORIZED_ACTION", "action": body})

    def outcome(resolve):
        try:
            return resolve(decision.action, context)
        except IntentError as exc:
            return ("error", exc.reason_code, exc.message)

    from decimal import DecimalException, localcontext

    from engine.numbers import EXACT

    def plain_resolve(a, c):
        try:
            with localcontext(EXACT):
                return _plain_intent(a, c)
        except DecimalException as exc:
            raise IntentError("ARITHMETIC_INEXACT", f"the action's numbers cannot be worked with exactly ({type(exc).__name__}): "
                              "nothing is rounded, nothing is sent") from None

    plain = outcome(plain_resolve)
    for _ in range(2):  # the second time from what the context kept
        fast = outcome(resolve_intent)
        if isinstance(plain, tuple):
            assert fast == plain
        else:
            assert type(fast) is Intent and fast == plain and repr(fast) == repr(plain)
            assert list(fast.__dict__) == list(plain.__dict__)


def test_raw_decisions_evaluations_and_intent_values_built_fast_are_the_plain_ones() -> None:
    """On every corpus case: an accepted RawDecision, an Evaluation, its order request and the intent's
    CEL values, each as the dataclass (or to_cel) builds it; and the intent's odd values go through to_cel."""
    from dataclasses import fields as dataclass_fields

    from engine.activation import intent_cel
    from engine.authorization_gate import RawDecision, _accepted, read_decision
    from engine.cel.values import _Map
    from engine.order import OrderRequest
    from engine.pipeline import Evaluation, _evaluation

    def same(fast, plain) -> None:
        assert type(fast) is type(plain) and fast == plain and repr(fast) == repr(plain)
        assert list(fast.__dict__.items()) == list(plain.__dict__.items())

    from engine.activation import _intent_converter
    from engine.bundle import load_bundle

    # the intent's fields the default bundle's gates read, converted alone (engine.activation)
    reads = load_bundle(ROOT / "policies" / "binance-perp-default.yaml").reads
    converter = _intent_converter(reads)
    wanted = dict(reads)["intent"]
    assert converter is not intent_cel and 10 < len(wanted) < 23

    def read_only(intent, plain) -> None:
        fast = converter(intent)
        assert list(fast) == [k for k in plain if k in wanted]  # in the intent's field order
        assert all(fast[k] == plain[k] and type(fast[k]) is type(plain[k]) for k in fast)
        assert all(not isinstance(fast[k], Decimal) or str(fast[k]) == str(plain[k]) for k in fast)  # exponent, sign

    intents = requests = 0
    for _, (raw, _context, _config, _state), ev in _corpus_evaluations():
        read = read_decision(raw)
        if read.problem is None and read.unauthorized is None:
            same(_accepted(read.data, read.decision_id, read.action_id), RawDecision(read.data, read.decision_id, read.action_id))
        values = [getattr(ev, f.name) for f in dataclass_fields(Evaluation)]
        same(_evaluation(*values), Evaluation(*values))
        if ev.request is not None:
            requests += 1
            same(ev.request, OrderRequest(*[getattr(ev.request, f.name) for f in dataclass_fields(OrderRequest)]))
        if ev.intent is not None:
            intents += 1
            fast, plain = intent_cel(ev.intent), _Map({k: to_cel(v) for k, v in ev.intent.__dict__.items()})
            assert list(fast) == list(plain) and fast == plain
            assert all(type(fast[k]) is type(plain[k]) for k in fast)
            read_only(ev.intent, plain)
    assert intents > 40 and requests > 15

    class Text(str):
        pass

    odd = _new_intent(kind=Text("ORDER"), action_type="", symbol=None, quantity=Decimal("-0"), price=Decimal("1E+2"))
    fast, plain = intent_cel(odd), _Map({k: to_cel(v) for k, v in odd.__dict__.items()})
    assert list(fast.items()) == list(plain.items()) and all(type(fast[k]) is type(plain[k]) for k in fast)
    read_only(odd, plain)
    # every field of another type than declared (a str where a decimal goes, a decimal for a bool, "" ...)
    swapped = _new_intent(kind=Decimal("1"), action_type="", symbol="", side=True, quantity="1", price=False,
                          reduce_only=None, increases_exposure=Text("x"), leverage=Decimal("-0.0"), margin_mode=Decimal(2))
    read_only(swapped, _Map({k: to_cel(v) for k, v in swapped.__dict__.items()}))
    for bad in (Decimal("NaN"), Decimal("Infinity"), 1.5):
        with pytest.raises(TypeError):
            intent_cel(_new_intent(kind="ORDER", action_type="x", symbol=None, quantity=bad))
        with pytest.raises(TypeError):
            converter(_new_intent(kind="ORDER", action_type="x", symbol=None, quantity=bad))
        with pytest.raises(TypeError):
            to_cel(bad)
    # a converter for an intent read whole is intent_cel itself; one for unknown fields too
    assert _intent_converter(None) is intent_cel and _intent_converter((("intent", None),)) is intent_cel
    assert _intent_converter((("intent", ("kind", "no_such_field")),)) is intent_cel
    assert list(_intent_converter((("intent", ("side", "kind")),))(odd)) == ["kind", "side"]  # the intent's order


def test_a_gate_chain_hands_over_to_the_loop_at_the_first_gate_that_is_not_a_plain_pass() -> None:
    """Pass, error value, refusal, a fast path that raises, a shadow gate: the chain and the loop give
    the same trace and failure for every order of them."""
    bundle = load_bundle(ROOT / "policies" / "binance-perp-default.yaml")
    variables = {"v": FieldSpec("object", fields={"n": FieldSpec("decimal"), "s": FieldSpec("string")}),
                 "m": FieldSpec("map", item=FieldSpec("decimal"))}
    exprs = {
        "pass": "v.n > 0",
        "fail": "v.n < 0",
        "error": "v.n / 0 > 1",
        "raises": "v.s > 0",
        "missing": 'm["absent"] == 1',
    }
    compiled = {k: compile_expression(t, variables) for k, t in exprs.items()}
    template = bundle.risk_gates[0]
    import dataclasses

    from engine.gate_chain import gate_chain

    names = list(exprs)
    for order in (names, names[::-1], ["pass", "pass", "raises", "pass", "fail"], ["pass"] * 3):
        gates = tuple(dataclasses.replace(template, id=f"g{i}-{n}", expression=compiled[n]) for i, n in enumerate(order))
        activation = {"v": to_cel({"n": Decimal(1), "s": "x"}), "m": to_cel({"k": Decimal(1)})}
        chained = evaluate_gates(gates, activation, "GATE_EVALUATION_ERROR", "compiled", gate_chain(gates))
        looped = evaluate_gates(gates, activation, "GATE_EVALUATION_ERROR", "compiled")
        assert chained == looped
        assert json.dumps([g.model_dump() for g in chained[0]]) == json.dumps([g.model_dump() for g in looped[0]])
    assert CelEvaluationError  # the error path is exercised by "error" and "missing"


def test_a_copy_with_other_fields_never_reads_the_originals_memo() -> None:
    from engine.pipeline import records_json

    record = _record(1)
    assert '"result":"SUCCESS"' in records_json([record])  # its text is now kept with the record
    copy = record.model_copy(update={"result": "FAILED_SAFE"})
    assert '"result":"FAILED_SAFE"' in records_json([copy])
    assert '"result":"SUCCESS"' in records_json([record])
    state = StateView(recent=(record,))
    assert _state_json(state) == canonical_json(state.model_dump(mode="json"))
    halted = state.model_copy(update={"trading_state": "HALTED"})
    assert _state_json(halted) == canonical_json(halted.model_dump(mode="json"))


# --- Rules 1-4: results, activations and intents built from what is kept with the context ---


def _corpus_evaluations():
    from conftest import case_inputs, case_names, load_case

    from engine.pipeline import Config, evaluate

    for name in case_names():
        raw, context, bundle, constraints, state = case_inputs(load_case(name))
        config = Config(bundle, constraints, "dry-run")
        yield name, (raw, context, config, state), evaluate(raw, context, config, state)


def test_construct_result_is_model_construct() -> None:
    """Every kind of result in the corpus, and the odd calls: an unknown field, a missing one."""
    from engine.models import ExecutionResult
    from engine.pipeline import construct_result

    def same(values: dict) -> None:
        fast, plain = construct_result(**values), ExecutionResult.model_construct(**values)
        assert list(fast.__dict__.items()) == list(plain.__dict__.items())
        assert fast.model_fields_set == plain.model_fields_set
        assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (plain.__pydantic_extra__, plain.__pydantic_private__)
        assert repr(fast) == repr(plain) and fast == plain

    kinds = set()
    for _, _, ev in _corpus_evaluations():
        result = ev.result
        kinds.add(result.reason_code)
        values = {n: getattr(result, n) for n in result.model_fields_set}
        same(values)
        # the evaluation's own result, built by the pipeline's _final: as model_construct builds it
        plain = ExecutionResult.model_construct(**values)
        assert type(result) is ExecutionResult and list(result.__dict__.items()) == list(plain.__dict__.items())
        assert type(result.model_fields_set) is set and result.model_fields_set == plain.model_fields_set
        assert (result.__pydantic_extra__, result.__pydantic_private__) == (None, None)
    assert len(kinds) > 30
    same({"result": "NOOP", "reason_code": "X", "colour": "red"})  # unknown and missing fields: pydantic's walk
    from engine.pipeline import _HEADER_KEYS, _final

    header = dict.fromkeys(_HEADER_KEYS, "x")
    assert _final(header, "NOOP", "X", None, "m", (), {"colour": "red"}) is None  # not a field: construct_result's way
    built = _final(header, "NOOP", "X", None, "m", (), {"errors": ()})
    assert built.model_fields_set == set(_HEADER_KEYS) | {"result", "reason_code", "rule", "message", "gate_trace", "errors"}
    same({"result": "NOOP", "trace_id": "t", "decision_id": None, "action_id": None, "timestamp": None, "reason_code": "X",
          "rule": None, "message": "m", "mode": "dry-run", "bundle": {}, "constraints_digest": "c", "input_digest": "i"})


def _plain_activation(action, intent, context, bundle, state, constraints) -> dict:
    """Every variable converted from the inputs, nothing kept (the activation as first written)."""
    from engine.activation import _context_values, _lot

    out = dict(_context_values(context))
    out["intent"] = to_cel(dict(intent.__dict__))
    out["state"] = to_cel({"recent": [r.model_dump() for r in state.recent], "last_execution_ms": state.last_execution_ms,
                           "last_failed_safe_ms": state.last_failed_safe_ms})
    out["params"] = to_cel(bundle.params_for(intent.symbol or context.symbol))
    out["settings"] = to_cel(bundle.settings())
    out["constraints"] = None if constraints is None else to_cel(constraints.model_dump())
    out["lot"] = None if constraints is None or intent.kind != "ORDER" else _lot(constraints, intent.order_type)
    out["action"] = to_cel(action.model_dump())
    return out


def test_activations_and_intents_from_kept_values_are_the_plain_ones() -> None:
    """For every corpus case that reaches Rule 3: the activation (built twice, the second time from
    what the context keeps) equals the plain conversion, for the bundle's roots and for all roots;
    the intent resolved again on the same context equals the one resolved on a fresh copy."""
    from engine.activation import _ALL_ROOTS, build_activation
    from engine.cel.values import from_cel
    from engine.intent import IntentError, resolve_intent
    from engine.models import ExecutionContext

    def outcome(action, context):
        try:
            return resolve_intent(action, context)
        except IntentError as exc:
            return (exc.reason_code, exc.message)

    checked = 0
    for name, (raw, context, config, state), ev in _corpus_evaluations():
        if ev.decision is None or not hasattr(ev.decision.action, "symbol"):
            continue
        action = ev.decision.action
        fresh = ExecutionContext.model_validate(context.model_dump())
        assert outcome(action, context) == outcome(action, context) == outcome(action, fresh), name
        if ev.intent is None:
            continue
        bundle = config.bundle
        sc = config.constraints.symbols.get(ev.intent.symbol) if ev.intent.symbol else None
        plain = _plain_activation(action, ev.intent, fresh, bundle, state, sc)
        for roots in (bundle.roots, None):
            for _ in range(2):
                got = build_activation(action=action, intent=ev.intent, context=context, bundle=bundle, state=state,
                                       constraints=sc, roots=roots)
                wanted = {k: v for k, v in plain.items() if k in (roots or _ALL_ROOTS)}
                assert got.keys() == wanted.keys(), name
                assert {k: from_cel(v) for k, v in got.items()} == {k: from_cel(v) for k, v in wanted.items()}, name
                assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in wanted.items()}, name
        checked += 1
    assert checked > 40


def test_result_json_is_pydantics_text_for_every_result_and_odd_ones() -> None:
    """The trace spliced into the result's text is byte for byte pydantic's serialisation: every
    corpus result, and results whose message, ids and exchange reply hold the splice's own text."""
    from engine.models import ExecutionResult, GateOutcome, ShadowGateOutcome
    from engine.pipeline import result_json

    results = [ev.result for _, _, ev in _corpus_evaluations()]
    assert sum(1 for r in results if any(g.error for g in r.gate_trace)) > 0
    for result in results:
        assert result_json(result) == result.model_dump_json()
    odd = '"gate_trace":[]'
    base = next(r for r in results if r.gate_trace)
    trace = (GateOutcome(id=odd, rule=3, category="ü\u2028", passed=False, error=odd + "\\"),
             ShadowGateOutcome(id="s", rule=4, category="c", passed=False, error=None, enforcement="warn"), *base.gate_trace[:2])
    for update in ({"message": odd, "decision_id": odd, "exchange_response": {"gate_trace": [], odd: [odd]}, "gate_trace": trace},
                   {"order": {"gate_trace": []}, "gate_trace": trace}, {"gate_trace": ()}):
        result = base.model_copy(update=update)
        assert result_json(result) == result.model_dump_json()
    partial = ExecutionResult.model_construct(result="NOOP", reason_code="X", gate_trace=trace)
    assert result_json(partial) == partial.model_dump_json()


@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.booleans()), max_size=12),
    st.sampled_from([Decimal(-1), Decimal(0), Decimal(5), Decimal("5.5"), Decimal(10), Decimal(20), Decimal(100)]),
    st.dictionaries(st.sampled_from(["symbol", "opens", "attempted", "action_type", "missing"]),
                    st.one_of(_values, st.just({"a": Decimal(1)})), max_size=3),  # a map: comparing it raises
    st.booleans(),
)
def test_state_recent_starts_counting_after_since_ms(rows, since_ms, match, odd_key) -> None:
    """The activation's state.recent (records oldest first, or not) counts as the reference does
    (the counter in C included: a key no record has, a key that is not a string, values whose
    comparison raises), and a list derived from it carries no timestamps of its own."""
    from engine.activation import _recent_cel
    from engine.cel.values import _List, _RecentList

    records = [_record(i, symbol=s, opens=o, timestamp=t) for i, (t, s, o) in enumerate(rows)]
    for ordered in (sorted(records, key=lambda r: r.timestamp), records):
        value = _recent_cel(ordered)
        ascending = all(a.timestamp <= b.timestamp for a, b in zip(ordered, ordered[1:]))
        assert type(value) is _RecentList and (value.ascending is not None) == ascending
        plain = _List(list(value))
        cel_match = to_cel(match)
        if odd_key:  # a key that is not a string: the reference's MapType.get refuses it
            cel_match = celtypes.MapType({**cel_match, celtypes.IntType(1): celtypes.BoolType(True)})
        expected = _outcome(_reference_recent_count, plain, since_ms, cel_match)
        for from_records in (functions._COUNT_IN_C_FROM, 0):  # the loop, and the counter in C on any window
            kept, functions._COUNT_IN_C_FROM = functions._COUNT_IN_C_FROM, from_records
            try:
                assert _outcome(_recent_count, value, since_ms, cel_match) == expected
            finally:
                functions._COUNT_IN_C_FROM = kept
        assert getattr(value + _List([]), "ascending", None) is None


_USEFUL_MATCHES = [{"opens": True}, {"attempted": True, "opens": False}, {"symbol": "BTCUSDT", "opens": True}, {}]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["BTCUSDT", "ETHUSDT"]), st.booleans(), st.booleans()), min_size=1, max_size=30),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 4), st.booleans(), st.integers(-1, 30)), min_size=1, max_size=20),
    st.lists(st.one_of(st.sampled_from(_USEFUL_MATCHES),
                       st.dictionaries(st.sampled_from(["symbol", "opens", "attempted", "missing"]),
                                       st.one_of(_values, st.just({"a": Decimal(1)})), max_size=3)), min_size=1, max_size=3),
    st.integers(0, 10),
)
# a record changed inside a window counted before; a window sliding over an uneven history
@example([("BTCUSDT", True, True)] * 6, [(0, 0, False, -1), (0, 0, True, -1)], [{"opens": True}], 5)
@example([("BTCUSDT", o, True) for o in (True, True, False, False, False, False, True, False)],
         [(0, 0, False, -1), (1, 1, False, -1), (1, 1, False, -1)], [{"opens": True}], 5)
def test_the_counter_keeps_matches_across_sliding_windows(rows, steps, matches, width) -> None:
    """Views over one history, window after window (sliding by a few records at either end, a
    record replaced by a changed one), each counted with every match: what the counter keeps
    between calls never changes a count or an error."""
    from engine.activation import _recent_cel

    history = [_record(i, symbol=s, opens=o, attempted=a, timestamp=i) for i, (s, o, a) in enumerate(rows)]
    cel_matches = [to_cel(m) for m in matches]
    lo, hi = 0, min(width, len(history))
    kept, functions._COUNT_IN_C_FROM = functions._COUNT_IN_C_FROM, 0
    try:
        for drop, add, replace, since in steps:
            hi = min(hi + add, len(history))
            lo = min(lo + drop, hi)
            if replace and lo < hi:  # a record completed or changed: another object, nothing kept for it may be used
                i = (lo + hi) // 2
                history[i] = history[i].model_copy(update={"opens": not history[i].opens})
            value = _recent_cel(history[lo:hi])
            for cel_match in cel_matches:
                expected = _outcome(_reference_recent_count, list(value), Decimal(since), cel_match)
                assert _outcome(_recent_count, value, Decimal(since), cel_match) == expected
    finally:
        functions._COUNT_IN_C_FROM = kept


def test_the_counter_in_c_leaves_a_state_recent_it_was_not_built_for_to_the_loop() -> None:
    """A ``state.recent`` whose elements are not all ep4's record maps (a plain CEL map, a number)
    is counted, or refused, exactly as the loop does."""
    from engine.cel.values import _RecentList

    record = to_cel({"timestamp": 5, "attempted": True, "symbol": "BTCUSDT"})
    match = to_cel({"attempted": True, "symbol": "BTCUSDT"})
    kept, functions._COUNT_IN_C_FROM = functions._COUNT_IN_C_FROM, 0
    try:
        for odd in (celtypes.MapType({"timestamp": Decimal(6), "attempted": celtypes.BoolType(True), "symbol": celtypes.StringType("BTCUSDT")}),
                    Decimal(6), to_cel([1])):
            value = _RecentList([record, odd])
            value.ascending = [5, 6]
            expected = _outcome(_reference_recent_count, list(value), Decimal(1), match)
            assert _outcome(_recent_count, value, Decimal(1), match) == expected
    finally:
        functions._COUNT_IN_C_FROM = kept


# --- the ledger: what a decision reads costs its lookback window, not the whole ledger ---


def _steps(ledger: Ledger, run) -> int:
    """SQLite virtual-machine steps ``run()`` takes on the ledger's connection (counted in tens)."""
    count = [0]

    def tick() -> int:
        count[0] += 1
        return 0

    ledger._db.set_progress_handler(tick, 10)
    try:
        run()
    finally:
        ledger._db.set_progress_handler(None, 10)
    return count[0]


_NOW = 1_764_028_800_000 + 10 * 3_600_000


def _ledger_with(path: Path, older: int, refusals: int) -> Ledger:
    """30 recent rows (calls, some failures that arm the cooldown), ``older`` calls before the
    lookback, and ``refusals`` refused decisions (no call) newer than every call."""
    ledger = Ledger(path)
    db = ledger._db
    insert = ("INSERT INTO executions (decision_id, action_id, action_type, symbol, timestamp, status, result, reason_code, "
              "attempted, opens, trace_id, input_digest, bundle_digest, constraints_digest, arms_cooldown) "
              "VALUES (?, 'a', 'ACTION_OPEN_POSITION', 'BTCUSDT', ?, 'DONE', ?, 'X', ?, 0, 't', 'i', 'b', 'c', ?)")
    db.execute("BEGIN")
    db.executemany(insert, [(f"old-{i}", 1_764_028_800_000 + i, "SUCCESS", 1, 0) for i in range(older)])
    db.executemany(insert, [(f"new-{i}", _NOW - 60_000 + i, "FAILED_SAFE" if i % 7 == 0 else "SUCCESS", 1, int(i % 7 == 0))
                            for i in range(30)])
    db.executemany(insert, [(f"refused-{i}", _NOW - 1_000 + i % 900, "FAILED_SAFE", 0, 0) for i in range(refusals)])
    db.execute("COMMIT")
    return ledger


def test_a_state_view_costs_its_window_not_the_ledger(tmp_path: Path) -> None:
    """A state view, and the start-up search for a dead process's in-flight rows, take about as many
    SQLite steps on a ledger with 5,000 more rows (older calls; refusals newer than the last call) as
    on one with only the window: they are index searches. Without the partial indexes the newest
    cooldown-arming failure was found by reading every row (~50 ms per decision at 100,000 rows),
    and the newest call by reading back past every refusal."""
    small = _ledger_with(tmp_path / "small", 0, 0)
    older = _ledger_with(tmp_path / "older", 5_000, 0)
    refused = _ledger_with(tmp_path / "refused", 0, 5_000)

    def work(ledger: Ledger) -> int:
        return _steps(ledger, lambda: (ledger.view_with_refs("new-1", "a", _NOW, 3_600_000), ledger.in_flight_rows()))

    base = work(small)
    assert base > 0
    assert work(older) < 2 * base + 50, (work(older), base)
    assert work(refused) < 2 * base + 50, (work(refused), base)
    # the indexes answer as the table does
    for ledger in (small, older, refused):
        view = ledger.view(None, None, _NOW, 3_600_000)
        rows = ledger.records()
        assert view.last_execution_ms == max(r.timestamp for r in rows if r.attempted)
        assert view.last_failed_safe_ms == _NOW - 60_000 + 28  # the newest row that armed (i = 28)
        assert len(view.recent) == 30


def test_a_ledger_from_before_the_arming_column_opens_and_is_indexed(tmp_path: Path) -> None:
    """A ledger written before issue 7 (no arms_cooldown, no reconciled) gains the columns, then the
    indexes that name them; its rows follow the old arming rule."""
    import sqlite3

    from engine.ledger import _SCHEMA

    old = _SCHEMA.replace("    arms_cooldown      INTEGER,\n    reconciled         TEXT,\n", "")
    assert old != _SCHEMA
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    db.executescript(old)
    db.execute("INSERT INTO executions (decision_id, action_id, action_type, symbol, timestamp, status, result, reason_code, "
               "attempted, opens, trace_id, input_digest, bundle_digest, constraints_digest) VALUES "
               "('d', 'a', 'ACTION_OPEN_POSITION', 'BTCUSDT', 5, 'DONE', 'FAILED_SAFE', 'MIN_INTERVAL_NOT_ELAPSED', 0, 0, 't', 'i', 'b', 'c')")
    db.commit()
    db.close()
    ledger = Ledger(tmp_path)
    names = {row[0] for row in ledger._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"executions_attempted", "executions_arming", "executions_in_flight"} <= names
    assert ledger.view(None, None, 10, 3_600_000).last_failed_safe_ms == 5


# --- the audit record: values that bring their canonical text ---


def test_audit_record_texts_are_canonical_json_of_the_values() -> None:
    """Every corpus result (passes, refusals, errors), a shadow entry, an odd exchange reply and an
    odd decision text: each pre-serialised value is its plain dump and its text is canonical_json of
    it; the chained line and hash are what the plain record gives."""
    import copy

    from engine.audit import SerialisedDict, SerialisedList
    from engine.executor import audit_record
    from engine.models import ShadowGateOutcome

    checked = 0
    for name, (raw, context, config, state), ev in _corpus_evaluations():
        result = ev.result
        variants = [result]
        if checked == 0:
            shadow = ShadowGateOutcome(id="s\u2028", rule=4, category="c", passed=False, error='"x"\\', enforcement="audit")
            variants.append(result.model_copy(update={"gate_trace": (*result.gate_trace, shadow),
                                                      "exchange_response": {"gate_trace": [], "ü": ["1.10", None]}}))
        for r in variants:
            text = raw if isinstance(raw, str) else json.dumps(raw)
            rec = audit_record("execution", r, text=text + "\u2028\"", context=context, state=state, refs=None)
            assert type(rec["gate_trace"]) is SerialisedList and type(rec["result"]) is SerialisedDict
            assert rec["gate_trace"] == [g.model_dump(mode="json") for g in r.gate_trace]
            assert rec["result"] == r.model_dump(mode="json") and list(rec["result"]) == list(r.model_dump(mode="json"))
            assert rec["input"] == {"decision_text": text + "\u2028\"", "context": context.model_dump(mode="json")}
            for key in ("gate_trace", "result", "input"):
                assert rec[key].text == canonical_json(rec[key]), (name, key)
            full = {"seq": 3, "prev_hash": "sha256:0", **rec}
            plain = json.loads(json.dumps(full))  # the same values as plain dicts and lists
            digest, line = chained_record_text(full)
            assert digest == record_hash(plain) and line == canonical_json({**plain, "hash": digest})
            assert copy.deepcopy(rec["result"]) == rec["result"]
        checked += 1
    assert checked > 40


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.integers(), st.booleans(), st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=4),
                 st.lists(st.text(max_size=3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)))
def test_json_piece_is_canonical_json(value) -> None:
    from engine.numbers import json_piece

    assert json_piece(value) == canonical_json(value)


# --- values of a state view's records, continued from the previous view ---


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), st.booleans()), min_size=1, max_size=12))
def test_sliding_values_are_built_values_of_the_same_objects(steps) -> None:
    """Windows that slide (old records leave, new ones come), jump, shrink to nothing or hold an
    equal-but-other object: the values are always build() of exactly these objects, and only the
    objects not in the previous window are built."""
    from engine.memo import Sliding

    class Item:
        def __init__(self, n: int) -> None:
            self.n = n

        def __eq__(self, other: object) -> bool:  # equal but not the same: must not be reused
            return isinstance(other, Item) and other.n == self.n

        __hash__ = object.__hash__

    pool = [Item(i) for i in range(40)]
    built: list[Item] = []

    def build(item: Item) -> tuple[int, int]:
        built.append(item)
        return (id(item), item.n)

    sliding = Sliding(build)
    start, end, previous = 0, 3, ()
    for drop, add, twin in steps:
        start, end = min(start + drop, 40), min(end + add, 40)
        window = list(pool[start:end])
        if twin and window:
            window[len(window) // 2] = Item(window[len(window) // 2].n)  # an equal, different object
        window = tuple(window)
        built.clear()
        assert sliding.values(window) == [(id(x), x.n) for x in window]
        fresh = [x for x in window if not any(x is y for y in previous)]
        assert all(any(b is x for x in window) for b in built) and len(built) >= len(fresh)
        previous = window


def test_state_views_in_sequence_give_the_plain_values(tmp_path: Path) -> None:
    """A run of state views from the ledger (each one record longer, the oldest leaving the lookback):
    the activation's state.recent and the records' text are what the plain conversion gives."""
    from engine.activation import _recent_cel
    from engine.cel.values import from_cel
    from engine.pipeline import recent_json

    ledger = Ledger(tmp_path)
    for i in range(40):
        ledger.add(_record(i), trace_id=f"t{i}", input_digest="i", bundle_digest="b", constraints_digest="c", arms=False)
        view = ledger.view(None, None, 1_764_028_800_000 + i, 20)
        value = _recent_cel(view.recent)
        assert [from_cel(v) for v in value] == [from_cel(to_cel(r.model_dump())) for r in view.recent]
        assert value.ascending == [r.timestamp for r in view.recent]
        assert recent_json(view) == canonical_json([r.model_dump(mode="json") for r in view.recent])


# --- the ledger window kept between state views (Ledger._window_rows) ---

_KEYS = [f"k{i}" for i in range(6)]
_T = 1_764_028_800_000
_WHO = st.sampled_from([0, 0, 0, 1])  # mostly the ledger that views; the other one now and then
_op = st.one_of(
    st.tuples(st.just("write_ahead"), _WHO, st.sampled_from(_KEYS), st.integers(-5, 5), st.booleans()),
    st.tuples(st.just("complete"), _WHO, st.sampled_from(_KEYS), st.sampled_from(["SUCCESS", "FAILED_SAFE"]), st.booleans()),
    st.tuples(st.just("add"), _WHO, st.sampled_from(_KEYS), st.integers(-5, 5), st.booleans()),
    # a view `a` seconds after the previous one (mostly later, sometimes earlier), `b` seconds back
    st.tuples(st.just("view"), _WHO, st.none(), st.integers(-3, 6), st.integers(0, 12)),
)


def _plain_view(path: Path, low: int, high: int) -> tuple[list, list]:
    """The window as one SELECT over its own connection gives it: records' fields and refs."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        rows = db.execute(f"SELECT {Ledger._COLS} FROM executions WHERE attempted = 1 AND timestamp BETWEEN ? AND ? "
                          "ORDER BY timestamp, seq", (low, high)).fetchall()
    finally:
        db.close()
    fields = [(r[1], r[2], r[5], "FAILED_SAFE" if r[6] == "IN_FLIGHT" else r[7], "OUTCOME_UNKNOWN" if r[6] == "IN_FLIGHT" else r[8],
               bool(r[9]), bool(r[10])) for r in rows]
    return fields, [r[0] if r[6] == "DONE" else None for r in rows]


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, min_size=1, max_size=60))
def test_the_kept_window_is_the_window_read_whole(tmp_path_factory, ops) -> None:
    """Two ledgers on one directory (two processes) write, complete and view in random order, with
    views moving back and forth in time: every view each one gives equals one plain SELECT of its
    window, record for record (fields, in-flight rows as in doubt) and ref for ref. A ledger keeps
    its window while data_version shows no other writer and reads only its own new rows; the other
    ledger's writes, a view older than the kept rows, and its own updates must all show."""
    d = tmp_path_factory.mktemp("window")
    ledgers = [Ledger(d), Ledger(d)]
    now = _T
    try:
        for op, who, key, a, b in ops:
            ledger = ledgers[who]
            if op == "write_ahead":  # rows are written around the time of the last view
                ledger.write_ahead(_record(0, key, timestamp=now + a * 1000, opens=b, result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN"),
                                   client_order_id=None, trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c")
            elif op == "complete":
                ledger.complete(_record(0, key, result=a, reason_code="ORDER_ACCEPTED" if a == "SUCCESS" else "EXCHANGE_TIMEOUT"), arms=b)
            elif op == "add":
                ledger.add(_record(0, key, timestamp=now + a * 1000, attempted=b, result="FAILED_SAFE", reason_code="COOLDOWN_ACTIVE"),
                           trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c", arms=False)
            else:
                now, lookback = now + a * 1000, b * 1000
                view, refs = ledger.view_with_refs(None, None, now, lookback)
                got = [(r.decision_id, r.action_id, r.timestamp, r.result, r.reason_code, r.attempted, r.opens) for r in view.recent]
                assert (got, refs) == _plain_view(d / "ledger.sqlite", now - lookback, now)
    finally:
        for ledger in ledgers:
            ledger.close()


class _Interleaved:
    """A ledger's connection that lets another process commit just before a chosen statement runs
    (the moments between the reads a state view makes)."""

    def __init__(self, db, before: str, commit) -> None:
        self._db, self._before, self._commit = db, before, commit

    def execute(self, sql: str, *args):
        if self._before in sql and self._commit is not None:
            commit, self._commit = self._commit, None
            commit()
        return self._db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self._db, name)


@pytest.mark.parametrize("before", [
    "COALESCE(MAX(seq), 0)",  # between the window's rows and its highest seq (a whole read)
    "WHERE seq = ?",  # in the catch-up: before an own update is read back
    "WHERE seq > ?",  # in the catch-up: before the new rows are read
])
def test_a_commit_between_a_views_reads_is_never_half_seen_nor_missed(tmp_path: Path, before: str) -> None:
    """Another process may commit between the statements one state view runs; here it completes a
    row and writes a new one, in two commits. The view they land in is the window before both or
    after both (never the new row with the old outcome), and every later view holds both: the window
    is kept with the data_version read before its reads, and a catch-up is trusted only if
    data_version is the same after its reads."""
    mine, other = Ledger(tmp_path), Ledger(tmp_path)
    wa = dict(client_order_id=None, trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c")
    pending = dict(result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN")
    for key in ("k0", "k1"):
        mine.write_ahead(_record(0, key, timestamp=_T + 1000, **pending), **wa)
    other.write_ahead(_record(0, "theirs", timestamp=_T + 1000, **pending), **wa)
    if before != "COALESCE(MAX(seq), 0)":
        mine.view_with_refs(None, None, _T + 5000, 10_000)  # the window is kept
        assert mine._window is not None
        mine.complete(_record(0, "k0"), arms=False)  # an own update: the catch-up reads that row back
        mine.write_ahead(_record(0, "k2", timestamp=_T + 3000, **pending), **wa)  # and an own new row
    plain = {}

    def two_commits() -> None:
        plain["before"] = _plain_view(tmp_path / "ledger.sqlite", _T + 5000 - 10_000, _T + 5000)
        other.complete(_record(0, "theirs"), arms=False)
        other.write_ahead(_record(0, "late", timestamp=_T + 2000, **pending), **wa)
        plain["after"] = _plain_view(tmp_path / "ledger.sqlite", _T + 5000 - 10_000, _T + 5000)

    def fields(view) -> list:
        return [(r.decision_id, r.action_id, r.timestamp, r.result, r.reason_code, r.attempted, r.opens) for r in view.recent]

    mine._db = _Interleaved(mine._db, before, two_commits)
    view, refs = mine.view_with_refs(None, None, _T + 5000, 10_000)
    assert mine._db._commit is None  # the commits did land between its reads
    assert (fields(view), refs) in (plain["before"], plain["after"])
    for now in (_T + 5000, _T + 6000):  # every later view holds both
        view, refs = mine.view_with_refs(None, None, now, 10_000)
        assert (fields(view), refs) == _plain_view(tmp_path / "ledger.sqlite", now - 10_000, now)
    mine._db = mine._db._db
    mine.close()
    other.close()


@pytest.mark.parametrize("write", ["write_ahead", "add_attempted", "add_refusal", "complete", "complete_other", "nothing"])
def test_each_own_write_shows_in_the_next_view_of_a_kept_window(tmp_path: Path, write: str) -> None:
    """Every kind of write a ledger makes, between two views of its kept window: the second view is
    the plain SELECT of the window (a refusal, which the window does not hold, changes nothing)."""
    ledger = Ledger(tmp_path)
    wa = dict(client_order_id=None, trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c")
    pending = dict(result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN")
    ledger.write_ahead(_record(0, "k0", timestamp=_T + 1000, **pending), **wa)
    ledger.write_ahead(_record(0, "k1", timestamp=_T + 2000, **pending), **wa)
    ledger.view_with_refs(None, None, _T + 5000, 10_000)
    assert ledger._window is not None
    ids = dict(trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c", arms=False)
    {
        "write_ahead": lambda: ledger.write_ahead(_record(0, "new", timestamp=_T + 3000, **pending), **wa),
        "add_attempted": lambda: ledger.add(_record(0, "new", timestamp=_T + 3000, attempted=True), **ids),
        "add_refusal": lambda: ledger.add(_record(0, "new", timestamp=_T + 3000, attempted=False, result="REJECTED"), **ids),
        "complete": lambda: ledger.complete(_record(0, "k1"), arms=False),
        "complete_other": lambda: ledger.complete(_record(0, "k0", result="FAILED_SAFE", reason_code="EXCHANGE_TIMEOUT"), arms=True),
        "nothing": lambda: None,
    }[write]()
    view, refs = ledger.view_with_refs(None, None, _T + 5000, 10_000)
    got = [(r.decision_id, r.action_id, r.timestamp, r.result, r.reason_code, r.attempted, r.opens) for r in view.recent]
    assert (got, refs) == _plain_view(tmp_path / "ledger.sqlite", _T + 5000 - 10_000, _T + 5000)
    assert ledger._window is not None  # still kept: only this ledger wrote
    ledger.close()


def test_a_view_further_back_than_the_kept_window_reads_it_whole(tmp_path: Path) -> None:
    """A view drops the kept rows older than it asks for; a later view reaching back past them
    reads the window whole again, never a kept window missing them."""
    ledger = Ledger(tmp_path)
    wa = dict(client_order_id=None, trace_id="t", input_digest="i", bundle_digest="b", constraints_digest="c")
    for i in range(1, 6):
        ledger.write_ahead(_record(0, f"k{i}", timestamp=_T + i * 1000, result="FAILED_SAFE", reason_code="OUTCOME_UNKNOWN"), **wa)
    for now, lookback in ((_T + 6000, 6000), (_T + 6000, 1500), (_T + 6000, 6000), (_T + 7000, 3000), (_T + 5000, 4000)):
        view, refs = ledger.view_with_refs(None, None, now, lookback)
        got = [(r.decision_id, r.action_id, r.timestamp, r.result, r.reason_code, r.attempted, r.opens) for r in view.recent]
        assert (got, refs) == _plain_view(tmp_path / "ledger.sqlite", now - lookback, now), (now, lookback)
    ledger.close()


@settings(max_examples=600, deadline=None, database=None, derandomize=True)
@given(st.lists(st.one_of(st.none(), st.integers(-3, 3), st.integers()), max_size=70)
       | st.lists(st.integers(0, 10**15), max_size=300).map(sorted))
@example([])
@example([None])
@example([None, None])
@example([1, None])
@example([None, 1])
@example([1, 1, 2, 2])
@example([1, 2, None, 3])
def test_ascending_is_the_plain_check(times) -> None:
    from engine.activation import _ascending

    assert _ascending(list(times)) == (None not in times and all(a <= b for a, b in zip(times, times[1:])))


def _general_reading(text: str):
    """read_decision's general path, as it was before its common case was read first."""
    from engine.authorization_gate import RawDecision, _accepted, _ids, _rule1
    from engine.numbers import duplicate_keys, loads, repeats_seen

    before = repeats_seen()
    data = loads(text)  # the texts below are all valid JSON
    if not isinstance(data, dict):
        return RawDecision(data, None, None, "INPUT_NOT_OBJECT", f"expected a JSON object, got {type(data).__name__}")
    repeated = duplicate_keys(data) if repeats_seen() != before else []
    ids = _ids(data)
    unauthorized = _rule1(data, ids, repeated)
    if unauthorized is not None:
        return unauthorized
    if repeated:
        return RawDecision(data, *ids, "DUPLICATE_KEY", f"a key appears more than once, so the decision is ambiguous: {', '.join(repeated)}")
    return _accepted(data, *ids)


_JSON_VALUES = st.sampled_from(['"AUTHORIZED_ACTION"', '"HOLD"', '""', '"x"', "null", "true", "1", "1.5", "[]", "{}",
                                '["AUTHORIZED_ACTION"]', '{"action_id": "a"}', '{"action_id": ""}', '{"action_id": 7}'])


@settings(max_examples=600, deadline=None, derandomize=True)
@given(pairs=st.lists(st.tuples(st.sampled_from(["decision_code", "decision_id", "action", "other"]), _JSON_VALUES), max_size=6),
       inner=st.lists(st.tuples(st.sampled_from(["action_id", "type", "action_id"]), _JSON_VALUES), max_size=3))
@example(pairs=[("decision_code", '"AUTHORIZED_ACTION"'), ("decision_id", '"d"'), ("action", "{}")],
         inner=[("action_id", '"a"'), ("action_id", '"b"')])
@example(pairs=[("decision_code", '"AUTHORIZED_ACTION"'), ("decision_id", '""'), ("action", "{}")], inner=[("action_id", '""')])
@example(pairs=[("decision_code", '"AUTHORIZED_ACTION"'), ("decision_id", "7"), ("action", "{}")], inner=[("action_id", "[]")])
@example(pairs=[("decision_code", '"AUTHORIZED_ACTION"'), ("action", '"x"')], inner=[])
def test_read_decision_reads_its_common_case_as_the_general_path_does(pairs, inner) -> None:
    """Objects with and without decision_code (once, twice, of other types), ids of every type, an
    action that repeats a key inside: the RawDecision is the general path's, field for field."""
    from engine.authorization_gate import read_decision

    action = "{" + ",".join(f'"{k}":{v}' for k, v in inner) + "}"
    text = "{" + ",".join(f'"{k}":{action if v == "{}" and k == "action" else v}' for k, v in pairs) + "}"
    fast, plain = read_decision(text), _general_reading(text)
    assert type(fast) is type(plain) and fast == plain and list(fast.__dict__.items()) == list(plain.__dict__.items())
