"""The compiled evaluator against cel-python's interpreter (the reference): same outcome, same bytes.

1. Every case of tests/cases through the whole pipeline with each evaluator: identical results.
2. Every gate of every bundle (policies/, tests/cases/bundles/) against every case's activation:
   identical pass / fail / error text.
3. Generated expressions over the gate grammar against damaged activations (tests/cel_grammar.py);
   `make differential` runs the same with 100,000+ pairs.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cel_grammar import Grammar, activations, compile_for_test, outcome
from conftest import CASES, ROOT, case_inputs, case_names, load_case
from engine.activation import build_activation
from engine.authorization_gate import read_decision
from engine.bundle import load_bundle
from engine.cel import CelEvaluationError, FieldSpec, compile_expression, to_cel
from engine.intent import IntentError, resolve_intent
from engine.pipeline import Config, evaluate, result_json
from engine.schema_validation import SchemaFailure, schema_validation

BUNDLES = sorted((ROOT / "policies").glob("*.yaml")) + sorted((CASES / "bundles").glob("*.yaml"))


@pytest.mark.parametrize("name", case_names())
def test_case_results_are_byte_identical(name: str) -> None:
    raw, context, bundle, constraints, state = case_inputs(load_case(name))
    results = [result_json(evaluate(raw, context, Config(bundle, constraints, "dry-run", evaluator=e), state).result)
               for e in ("compiled", "interpreter")]
    assert results[0] == results[1]


def _activations():
    for name in case_names():
        raw, context, _bundle, constraints, state = case_inputs(load_case(name))
        decision = read_decision(raw)
        if decision.problem or not isinstance(decision.data, dict):
            continue
        checked = schema_validation(decision.data, context)
        if isinstance(checked, SchemaFailure) or checked.action.type == "ACTION_NOOP":
            continue
        try:
            intent = resolve_intent(checked.action, context)
        except IntentError:
            continue
        yield name, lambda b, c=checked, i=intent, x=context, s=state, k=constraints: build_activation(
            action=c.action, intent=i, context=x, bundle=b, state=s,
            constraints=k.symbols.get(i.symbol) if i.symbol else None,
        )


def _gate_outcome(gate, activation, evaluator):
    try:
        return "value", repr(gate.expression.evaluate(activation, evaluator))
    except CelEvaluationError as exc:
        return "error", str(exc)


@pytest.mark.parametrize("bundle_path", BUNDLES, ids=lambda p: p.name)
def test_every_gate_agrees_on_every_case(bundle_path: Path) -> None:
    bundle = load_bundle(bundle_path)
    compared = 0
    for _name, make in _activations():
        activation = make(bundle)
        for gate in bundle.risk_gates + bundle.constraint_checks:
            assert _gate_outcome(gate, activation, "compiled") == _gate_outcome(gate, activation, "interpreter"), (gate.id, _name)
            compared += 1
    assert compared > 500


GRAMMAR = Grammar()


@settings(max_examples=2500, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(text=st.sampled_from(["bool", "num", "any"]).flatmap(lambda k: GRAMMAR.expr(k, 3)), activation=activations())
def test_generated_expressions_agree(text: str, activation: dict) -> None:
    expression = compile_for_test(text)
    if expression is not None:
        assert outcome(expression, activation, "compiled") == outcome(expression, activation, "interpreter"), text


# --- the semantics the issue names, pinned on both evaluators ---

V = {"q": FieldSpec("decimal"), "m": FieldSpec("map", item=FieldSpec("any")), "l": FieldSpec("list")}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("true || m.missing > 1", True),  # true || error
        ("m.missing > 1 || true", True),  # error || true
        ("false || m.missing > 1", "no such member in mapping: 'missing'"),  # false || error
        ("m.missing > 1 || false", "no such member in mapping: 'missing'"),
        ("false && m.missing > 1", False),
        ("m.missing > 1 && false", False),
        ("m.a > 1 || m.b > 1", "no such member in mapping: 'a'"),  # error || error: the left error
        ("(m.missing > 1) ? true : false", "no such member in mapping: 'missing'"),
        ("true ? true : m.missing > 1", True),
        ("!m.missing", "no such member in mapping: 'missing'"),
        ("m.n == null && m.n != 1", True),
        ("has(m.n) && !has(m.missing)", True),
        ("q in [1, 2] && !(q in [])", True),
        ("l[0] == 1", "found no matching overload for _[_]"),  # list indexes are integers; gate numbers are decimals
        ("m['missing'] == 1", "no such key"),
        ("l.all(x, x > 0) && l.exists(x, x == 2) && l.exists_one(x, x == 3)", True),
        ("[1, 0].all(x, 1 / x > 0)", "modulus or divide by zero"),
        ("[0, 1].exists(x, 1 / x > 0)", True),  # exists absorbs the error: one element passes
        ("l.map(x, x * 2) == [2, 4, 6] && l.filter(x, x > 1).size() == 2", True),
        ("q / 3 > 0", "inexact decimal arithmetic"),  # never a rounded pass
        ("true || q / 3 > 0", True),  # an inexact result is an error value: absorbed like any other
        ("0.1 + 0.2 == 0.3 && q * 0.5 == 0.5", True),
        ("abs(-q) == q && min(q, 2) == 1 && max(q, 2) == 2", True),
        ("aligned(0.3, 0, 0.1) && !aligned(0.30000000000000004, 0, 0.1) && is_multiple(6, 3)", True),
        ("1 == true", True),  # cel-python compares a bool as the integer 1 (docs/cel.md)
        ("'a' == 1", False),
        ('{"a": [true], "b": (true)}.a == [true]', True),  # found by make differential: a list literal is not a literal
        ("[1] == 'a'", "found no matching overload for 'relation_eq'"),
        # null comparisons (the fast path tests identity for the types in runtime.NOT_NULL)
        ('q != null && m.n == null && l != null && m != null && "a" != null && true != null', True),
        ("q == null || m == null || l == null || false == null", False),
        ("l.map(x, x) == null", False),  # a plain ListType: compared, as before
        ("l.map(x, x) != null", "no such overload: ListType != "),  # cel-python raises on it; so do both
        # a macro over null raises a Python TypeError that escapes && and || (docs/cel.md); ?: does not evaluate it
        ("m.n != null && m.n.exists(x, x > 1)", "'NoneType' object is not iterable"),
        ("m.n == null || m.n.all(x, x > 1)", "'NoneType' object is not iterable"),
        ("m.n == null ? false : m.n.exists(x, x > 1)", False),
    ],
)
@pytest.mark.parametrize("evaluator", ["compiled", "interpreter"])
def test_pinned_semantics(text: str, expected, evaluator: str) -> None:
    expression = compile_expression(text, V, require_bool=False)
    activation = {"q": Decimal(1), "m": to_cel({"n": None}), "l": to_cel([1, 2, 3])}
    if isinstance(expected, str):
        with pytest.raises(CelEvaluationError) as info:
            expression.evaluate(activation, evaluator)
        assert str(info.value).startswith(expected) or expected in str(info.value)
    else:
        assert expression.evaluate(activation, evaluator) is expected


def test_the_types_the_fast_path_takes_for_not_null_compare_so() -> None:
    """runtime.NOT_NULL: for each type, ``x == None`` is False and ``x != None`` True, without
    raising, which is what the fast path's identity test stands for; a plain ListType, which raises
    on ``!= None``, is not one of them."""
    from celpy import celtypes

    from engine.cel.runtime import NOT_NULL
    from engine.cel.values import FALSE, TRUE, _List, _Map, _RecentList

    samples = [Decimal("0"), Decimal("-0.000"), Decimal("1E+5"), celtypes.StringType(""), celtypes.StringType("null"),
               TRUE, FALSE, _Map({}), _Map({"a": None}), _List([]), _List([None]), _RecentList([])]
    assert {type(v) for v in samples} == NOT_NULL
    for value in samples:
        assert (value == None) is False and (value != None) is True  # noqa: E711 - the comparison itself
    assert celtypes.ListType not in NOT_NULL and celtypes.MapType not in NOT_NULL
    with pytest.raises(TypeError):
        celtypes.ListType([]) != None  # noqa: E711, B015


def test_compiled_source_is_readable() -> None:
    expression = compile_expression('q > 1 || m.kind != "ORDER"', V)
    assert "def gate(act):" in expression.source
    assert "or_(gt(r_q, k1" in expression.source and "# k2 = StringType('ORDER')" in expression.source
    json.dumps(expression.source)  # plain text


# --- the activation holds only the fields a bundle's gates read (engine.cel.check.root_fields) ---


@pytest.mark.parametrize(
    "text,expected",
    [
        ("account.positions.size() > 0 && account.available_margin > 0", {"account": ("available_margin", "positions")}),
        ("(account).open_orders == []", {"account": None}),  # parenthesised: the root itself
        ("account['positions'] == []", {"account": None}),  # indexed
        ("size(account) > 0", {"account": None}),  # passed to a function
        ("account.size() > 0", {"account": None}),  # a method on the root
        ("has(health.api_latency_ms)", {"health": ("api_latency_ms",)}),
        ("[1].all(account, account > 0) && account.positions == []", {"account": ("positions",)}),  # a macro's own
        ("account.positions.all(account, account.x == 1)", {"account": ("positions",)}),
        ("account.positions.exists(p, p.symbol == context.symbol)", {"account": ("positions",), "context": ("symbol",)}),
        ("now > 0 && market.BTCUSDT.mark_price > 0", {"now": None, "market": ("BTCUSDT",)}),
    ],
)
def test_root_fields(text: str, expected: dict) -> None:
    from engine.cel import _env
    from engine.cel.check import root_fields

    assert dict(root_fields(_env().compile(text))) == expected


def _pruned(activation: dict, fields) -> dict:
    """Each map-valued root cut to the fields the expression reads off it, as the activation's
    builder does for the context's objects (here for every map: the rule is the same)."""
    out = dict(activation)
    for root, names in fields or ():
        value = out.get(root)
        if names is not None and isinstance(value, dict):
            out[root] = type(value)({k: v for k, v in value.items() if str(k) in names})
    return out


@settings(max_examples=1500, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(text=st.sampled_from(["bool", "num", "any"]).flatmap(lambda k: GRAMMAR.expr(k, 3)), activation=activations())
def test_fields_an_expression_does_not_read_cannot_change_its_outcome(text: str, activation: dict) -> None:
    expression = compile_for_test(text)
    if expression is None:
        return
    pruned = _pruned(activation, expression.fields)
    for evaluator in ("compiled", "interpreter"):
        assert outcome(expression, pruned, evaluator) == outcome(expression, activation, evaluator), (text, evaluator)


@pytest.mark.parametrize("bundle_path", BUNDLES, ids=lambda p: p.name)
def test_the_pipelines_activation_gives_every_gate_the_outcome_of_the_whole_one(bundle_path: Path) -> None:
    """build_activation with the bundle's roots and reads (what the pipeline builds) against every
    variable whole, on every case: the same outcome for every gate, on both evaluators."""
    bundle = load_bundle(bundle_path)
    compared = 0
    for name, _make in _activations():
        raw, context, _bundle, constraints, state = case_inputs(load_case(name))
        checked = schema_validation(read_decision(raw).data, context)
        intent = resolve_intent(checked.action, context)
        kwargs = dict(action=checked.action, intent=intent, context=context, bundle=bundle, state=state,
                      constraints=constraints.symbols.get(intent.symbol) if intent.symbol else None)
        whole = build_activation(**kwargs)
        built = build_activation(**kwargs, roots=bundle.roots, reads=bundle.reads)
        for gate in bundle.risk_gates + bundle.constraint_checks:
            for evaluator in ("compiled", "interpreter") if compared % 7 == 0 else ("compiled",):
                assert _gate_outcome(gate, built, evaluator) == _gate_outcome(gate, whole, evaluator), (gate.id, name)
            compared += 1
    assert compared > 500


# --- the gate chain with the fast expressions inline and the shared reads made once (engine.gate_chain) ---


def _chains(gates):
    from engine.gate_chain import _call_chain, _inline_chain

    calls = _call_chain(gates)
    return _inline_chain(gates, calls), calls


def _damaged(activation: dict, draw) -> dict:
    """The activation with a few of its variables or their fields removed, nulled or of another type."""
    out = dict(activation)
    others = [None, to_cel("x"), to_cel(Decimal("-1")), to_cel(True), to_cel([]), to_cel({}), to_cel([{"a": 1}])]
    for _ in range(draw(st.integers(1, 3))):
        root = draw(st.sampled_from(sorted(out)))
        value = out[root]
        how = draw(st.sampled_from(["drop", "replace", "field"] if isinstance(value, dict) and value else ["drop", "replace"]))
        if how == "drop":
            del out[root]
        elif how == "replace":
            out[root] = draw(st.sampled_from(others))
        else:
            value = type(value)(value)
            field = draw(st.sampled_from(sorted(value)))
            if draw(st.booleans()):
                del value[field]
            else:
                value[field] = draw(st.sampled_from(others))
            out[root] = value
        if not out:
            break
    return out


def test_the_inline_chain_is_made_for_every_bundle_and_shares_reads() -> None:
    for path in BUNDLES:
        bundle = load_bundle(path)
        for gates in (bundle.risk_gates, bundle.constraint_checks):
            inline, _ = _chains(gates)
            assert inline is not None, path.name
    default = load_bundle(ROOT / "policies" / "binance-perp-default.yaml")
    source = default.risk_chain.source
    assert "h1 = DGET(r_intent, " in source and "STR_EQ(h" in source  # intent.kind, read once for 13 gates


@pytest.mark.parametrize("bundle_path", BUNDLES, ids=lambda p: p.name)
def test_the_inline_chain_stops_where_the_chain_of_calls_stops_on_every_case(bundle_path: Path) -> None:
    from engine.cel import exact_arithmetic

    bundle = load_bundle(bundle_path)
    pairs = [_chains(gates) for gates in (bundle.risk_gates, bundle.constraint_checks)]
    compared = 0
    with exact_arithmetic():
        for name, make in _activations():
            activation = make(bundle)
            for (inline, calls), gates in zip(pairs, (bundle.risk_gates, bundle.constraint_checks)):
                for start in range(len(gates) + 1):
                    assert inline(activation, start) == calls(activation, start), (name, start)
                    compared += 1
    assert compared > 500


_DEFAULT_ACTIVATIONS: list = []


@settings(max_examples=600, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_inline_chain_stops_where_the_chain_of_calls_stops_on_damaged_activations(data) -> None:
    """Variables missing, of another type, fields missing or nulled: where a shared read fails the
    inline chain hands over to the chain of calls, and where it does not, both stop at the same gate."""
    from engine.cel import exact_arithmetic

    from engine.gate_chain import _call_chain

    if not _DEFAULT_ACTIVATIONS:
        bundle = load_bundle(ROOT / "policies" / "binance-perp-default.yaml")
        every = bundle.risk_gates + bundle.constraint_checks
        chains = [(bundle.risk_chain, _call_chain(bundle.risk_gates), len(bundle.risk_gates)),
                  (bundle.constraint_chain, _call_chain(bundle.constraint_checks), len(bundle.constraint_checks)),
                  (bundle.rules_chain, _call_chain(every), len(every))]
        assert all(hasattr(inline, "source") for inline, _, _ in chains)  # the bundle's chains are the inline ones
        _DEFAULT_ACTIVATIONS.append((chains, [make(bundle) for _, make in _activations()]))
    chains, made = _DEFAULT_ACTIVATIONS[0]
    activation = _damaged(data.draw(st.sampled_from(made)), data.draw)
    with exact_arithmetic():
        for inline, calls, count in chains:
            for start in range(count + 1):
                assert inline(activation, start) == calls(activation, start), start
        # the pipeline's chain over both rules stops where Rule 3's does, or where Rule 4's does after it
        (risk, _, n3), (checks, _, n4), (rules, _, _) = chains
        first = risk(activation, 0)
        assert rules(activation, 0) == (first if first < n3 else n3 + checks(activation, 0))
