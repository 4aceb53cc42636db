"""Random gate expressions and random activations, for the differential proof compiled == interpreter.

Expressions are drawn over the gate grammar: the variables of ``engine/activation.py`` (valid field
paths of the default bundle's environment), literals (exact decimals from tiny to 60+ digits,
strings, booleans, null), every operator, ``?:``, indexing, ``has()``, the five macros with their
bound variable, every helper of ``HELPER_FUNCTIONS`` and the string methods — mostly well typed, often
not (a wrong type, a missing key, a null, a division that cannot be exact).

Activations start from real ones (the pipeline's own activation for several decisions) and are then
damaged: values set to null, keys removed, types swapped, lists emptied, decimals made huge or tiny.

Used by ``tests/test_cel_differential.py`` (a few thousand pairs in ``make test``) and by
``tests/differential.py`` (``make differential``: 100,000+ pairs, fixed seed).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from engine.activation import build_activation, variables_for
from celpy.evaluation import CELEvalError

from engine.cel import CelCompileError, CelEvaluationError, FieldSpec, compile_expression, error_message, from_cel, to_cel
from engine.cli.inputs import load_config_bundle, load_constraints, load_context
from engine.intent import resolve_intent
from engine.models import ExecutionRecord, PolicyDecision, StateView
from engine.numbers import loads

ROOT = Path(__file__).resolve().parent.parent

# --- the environment -------------------------------------------------------------------------

NUM_PATHS = [
    "now", "intent.quantity", "intent.price", "intent.mark_price", "intent.reference_price",
    "intent.order_notional", "intent.position_before", "intent.position_after", "intent.notional_after",
    "intent.leverage", "account.available_margin", "health.api_latency_ms", "health.order_rejection_rate",
    "state.last_execution_ms", "state.last_failed_safe_ms", "settings.cooldown_ms", "settings.lookback_ms",
    "params.max_position_qty", "params.max_notional", "params.max_leverage", "params.max_open_positions",
    "params.min_interval_ms", "params.max_api_latency_ms", "params.max_order_rejection_rate",
    "lot.min_qty", "lot.max_qty", "lot.step_size", "constraints.min_notional",
    "constraints.price_filter.tick_size", "constraints.price_filter.min_price",
    "constraints.percent_price.multiplier_up", "context.timestamp", "market.BTCUSDT.mark_price",
    "action.quantity", "action.limit_price", "action.delta_quantity",
]
BOOL_PATHS = [
    "intent.reduce_only", "intent.increases_exposure", "intent.opens_position",
    "params.session_windows_enabled", "action.reduce_only",
]
STR_PATHS = [
    "intent.kind", "intent.side", "intent.symbol", "intent.order_type", "intent.time_in_force",
    "intent.margin_mode", "intent.position_side", "context.symbol", "context.exchange",
    "constraints.status", "account.position_mode", "params.required_margin_mode", "action.type",
    "settings.execution_mode",
]
LIST_PATHS = [
    "account.positions", "account.open_orders", "state.recent", "constraints.order_types",
    "constraints.time_in_force", "constraints.leverage_brackets", "params.session_windows",
]
MAP_PATHS = ["action", "market", "intent", "lot", "constraints", "constraints.price_filter", "params", "health"]
RECORD_FIELDS = [
    "quantity", "symbol", "leverage", "margin_mode", "price", "side", "timestamp", "attempted", "opens",
    "action_type", "notional_cap", "notional_floor", "initial_leverage", "start", "end", "nope",
]
NUM_LITERALS = [
    "0", "1", "2", "3", "-1", "10", "0.1", "0.5", "1.0", "0.001", "60000", "1e3", "2.5e-3", "1e-70",
    "1e61", "0x10", "7u", "1764028800000", "123456789012345678901234567890123456789012345678901234567890123",
    "0.30000000000000004",
]
STR_LITERALS = ['"ORDER"', '"CANCEL"', '"BUY"', '"SELL"', '"TRADING"', '"LIMIT"', '"GTC"', '""', "'BTCUSDT'", '"é\\u00e9"', 'r"\\d+"', '"[a-z"']
MACROS = ["all", "exists", "exists_one", "map", "filter"]


def _paren(s: str) -> str:
    return f"({s})"


class Grammar:
    """Strategies for expressions of a wanted kind: bool, num, str, list, map or any."""

    def __init__(self, max_depth: int = 3) -> None:
        self.max_depth = max_depth

    @lru_cache(maxsize=None)  # noqa: B019 - a handful of (kind, depth, scope) keys per run
    def expr(self, kind: str, depth: int, scope: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
        leaf = self.leaf(kind, scope)
        if depth <= 0:
            return leaf
        sub = lambda k: st.deferred(lambda: self.expr(k, depth - 1, scope))  # noqa: E731
        anyk = st.sampled_from(["bool", "num", "str", "list", "map"]).flatmap(sub)
        options = [leaf]
        if kind in ("bool", "any"):
            options += [
                st.tuples(sub("num"), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), sub("num")).map(lambda t: _paren(f"{t[0]} {t[1]} {t[2]}")),
                st.tuples(anyk, st.sampled_from(["==", "!="]), anyk).map(lambda t: _paren(f"{t[0]} {t[1]} {t[2]}")),
                st.tuples(sub("bool"), st.sampled_from(["&&", "||"]), sub("bool")).map(lambda t: _paren(f"{t[0]} {t[1]} {t[2]}")),
                st.tuples(anyk, st.sampled_from(["&&", "||"]), anyk).map(lambda t: _paren(f"{t[0]} {t[1]} {t[2]}")),
                sub("bool").map(lambda a: f"!{a}"),
                st.tuples(anyk, sub("list")).map(lambda t: _paren(f"{t[0]} in {t[1]}")),
                st.tuples(anyk, sub("map")).map(lambda t: _paren(f"{t[0]} in {t[1]}")),
                st.sampled_from(["intent", "lot", "constraints", "action", "params"]).flatmap(
                    lambda m: st.sampled_from(["price", "quantity", "min_qty", "status", "type", "max_notional", "nope"]).map(lambda f: f"has({m}.{f})")
                ).filter(lambda s: _compiles(s)),
                st.tuples(sub("num"), sub("num")).map(lambda t: f"is_multiple({t[0]}, {t[1]})"),
                st.tuples(sub("num"), sub("num"), sub("num")).map(lambda t: f"aligned({t[0]}, {t[1]}, {t[2]})"),
                st.tuples(sub("num"), sub("list")).map(lambda t: f"in_windows({t[0]}, {t[1]})"),
                st.tuples(sub("str"), st.sampled_from(["contains", "startsWith", "endsWith", "matches"]), sub("str")).map(lambda t: f"{t[0]}.{t[1]}({t[2]})"),
            ]
        if kind in ("num", "any"):
            options += [
                st.tuples(sub("num"), st.sampled_from(["+", "-", "*", "/", "%"]), sub("num")).map(lambda t: _paren(f"{t[0]} {t[1]} {t[2]}")),
                st.tuples(anyk, st.sampled_from(["+", "-", "*"]), anyk).map(lambda t: _paren(f"{t[0]} {t[1]} {t[2]}")),
                sub("num").map(lambda a: f"-{a}"),
                st.tuples(st.sampled_from(["abs", "size", "minute_of_day", "dec"]), anyk).map(lambda t: f"{t[0]}({t[1]})"),
                st.tuples(st.sampled_from(["min", "max"]), sub("num"), sub("num")).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
                st.tuples(sub("list"), sub("num")).map(lambda t: f"{t[0]}[{t[1]}]"),
                sub("list").map(lambda a: f"{a}.size()"),
                st.tuples(sub("num"), sub("map")).map(lambda t: f"recent_count(state.recent, {t[0]}, {t[1]})"),
                st.sampled_from(['dec("0.001")', 'dec("x")', 'dec("1e5")', "dec(1)"]),
            ]
        if kind in ("str", "any"):
            options += [
                st.tuples(sub("str"), sub("str")).map(lambda t: _paren(f"{t[0]} + {t[1]}")),
                st.tuples(sub("map"), st.sampled_from(STR_LITERALS)).map(lambda t: f"{t[0]}[{t[1]}]"),
            ]
        if kind in ("list", "any"):
            options += [
                st.lists(anyk, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
                st.lists(sub("num"), max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
                st.tuples(sub("list"), sub("list")).map(lambda t: _paren(f"{t[0]} + {t[1]}")),
            ]
        if kind in ("map", "any"):
            options += [
                st.lists(st.tuples(st.sampled_from(['"attempted"', '"symbol"', '"opens"', '"a"', "1", "true"]), anyk), max_size=3).map(
                    lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
                ),
            ]
        # field selection on any expression, and the ternary
        options.append(st.tuples(sub("map"), st.sampled_from(RECORD_FIELDS)).map(lambda t: f"{t[0]}.{t[1]}"))
        options.append(st.tuples(sub("bool"), sub(kind if kind != "any" else "num"), sub(kind if kind != "any" else "str")).map(
            lambda t: _paren(f"{t[0]} ? {t[1]} : {t[2]}")))
        # macros, with their bound variable in scope for the body
        var = f"x{len(scope)}"
        inner = scope + (var,)
        body = lambda k: st.deferred(lambda: self.expr(k, depth - 1, inner))  # noqa: E731
        if kind in ("bool", "any"):
            options.append(st.tuples(sub("list"), st.sampled_from(["all", "exists", "exists_one"]), body("bool")).map(
                lambda t: f"{t[0]}.{t[1]}({var}, {t[2]})"))
            options.append(st.tuples(sub("map"), st.sampled_from(["all", "exists"]), body("any")).map(
                lambda t: f"{t[0]}.{t[1]}({var}, {t[2]})"))
        if kind in ("list", "any"):
            options.append(st.tuples(sub("list"), st.sampled_from(["map", "filter"]), body("any")).map(
                lambda t: f"{t[0]}.{t[1]}({var}, {t[2]})"))
        return st.one_of(options)

    def leaf(self, kind: str, scope: tuple[str, ...]) -> st.SearchStrategy[str]:
        nums = st.sampled_from(NUM_LITERALS + NUM_PATHS)
        bools = st.sampled_from(["true", "false"] + BOOL_PATHS)
        strs = st.sampled_from(STR_LITERALS + STR_PATHS)
        lists = st.sampled_from(LIST_PATHS + ["[]", "[1, 2, 3]", '["LIMIT", "MARKET"]'])
        maps = st.sampled_from(MAP_PATHS + ["{}", '{"a": 1}'])
        by_kind = {"num": nums, "bool": bools, "str": strs, "list": lists, "map": maps}
        base = by_kind.get(kind, st.one_of(*by_kind.values()))
        extra = [st.just("null")]
        if scope:
            extra.append(st.sampled_from(scope))
            extra.append(st.tuples(st.sampled_from(scope), st.sampled_from(RECORD_FIELDS)).map(lambda t: f"{t[0]}.{t[1]}"))
        return st.one_of(base, *extra)


# --- activations -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> tuple[Any, list[dict[str, Any]]]:
    """The default bundle's gate variables, and real activations (as plain data) to start from."""
    bundle = load_config_bundle(None)
    constraints = load_constraints(None, None)
    context = load_context(ROOT / "examples" / "context.json")
    specs = {n: FieldSpec("list" if k == "session_windows" else "bool" if k == "bool" else "string" if k == "string" else "decimal")
             for n, (k, _v) in bundle.params.items()}
    variables = variables_for(specs)
    recent = tuple(
        ExecutionRecord(decision_id=f"d{i}", action_id="a", action_type=t, symbol="BTCUSDT", result="SUCCESS",
                        reason_code="ORDER_FILLED", timestamp=context.timestamp - 1000 * i, attempted=bool(i % 2), opens=i < 2)
        for i, t in enumerate(["ACTION_OPEN_POSITION", "ACTION_CANCEL_OPEN_ORDERS", "ACTION_CLOSE_POSITION"])
    )
    state = StateView(recent=recent, last_execution_ms=context.timestamp - 1000, last_failed_safe_ms=None)
    decisions = [
        {"type": "ACTION_OPEN_POSITION", "action_id": "a1", "symbol": "BTCUSDT", "side": "LONG", "quantity": "0.010",
         "order_type": "LIMIT", "limit_price": "64000.1", "reduce_only": False, "time_in_force": "GTC"},
        {"type": "ACTION_CLOSE_POSITION", "action_id": "a2", "symbol": "BTCUSDT", "quantity": None, "order_type": "MARKET", "reduce_only": True},
        {"type": "ACTION_ADJUST_POSITION", "action_id": "a3", "symbol": "BTCUSDT", "delta_quantity": "-0.005"},
        {"type": "ACTION_CANCEL_OPEN_ORDERS", "action_id": "a4", "symbol": "BTCUSDT"},
    ]
    bases = []
    for action in decisions:
        decision = PolicyDecision.model_validate(loads(_json({"decision_id": "d", "decision_code": "AUTHORIZED_ACTION", "action": action})))
        intent = resolve_intent(decision.action, context)
        act = build_activation(
            action=decision.action, intent=intent, context=context, bundle=bundle, state=state,
            constraints=constraints.symbols.get("BTCUSDT"),
        )
        bases.append({k: from_cel(v) for k, v in act.items()})
    return variables, bases


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


DAMAGE = [
    None, "", "x", True, False, Decimal(0), Decimal(-1), Decimal("1E-70"), Decimal("1E+61"),
    Decimal("123456789012345678901234567890123456789012345678901234567890.5"), Decimal("1E+999999"), [], {}, [Decimal(1), "a"],
]


@st.composite
def activations(draw: Any) -> dict[str, Any]:
    """A real activation, damaged in a few places (CEL values, ready for both evaluators)."""
    _variables, bases = environment()
    data = copy.deepcopy(bases[draw(st.integers(0, len(bases) - 1))])
    for _ in range(draw(st.integers(0, 4))):
        _damage(data, draw)
    return {k: to_cel(v) for k, v in data.items()}


def _damage(data: dict[str, Any], draw: Any) -> None:
    node: Any = data
    key: Any = draw(st.sampled_from(sorted(data)))
    while isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
        node = node[key]
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
    if isinstance(node, dict) and draw(st.integers(0, 5)) == 0:
        del node[key]
    else:
        node[key] = copy.deepcopy(draw(st.sampled_from(DAMAGE)))


# --- running both ----------------------------------------------------------------------------


def _compiles(text: str) -> bool:
    try:
        compile_expression(text, environment()[0], require_bool=False)
        return True
    except CelCompileError:
        return False


def outcome(expression: Any, activation: dict[str, Any], evaluator: str) -> tuple[str, str]:
    """What an evaluator makes of it: ("value", canonical text) or ("error", message)."""
    try:
        value = expression.evaluate(activation, evaluator)
    except CelEvaluationError as exc:
        return "error", str(exc)
    return "value", canonical(value)


def canonical(value: Any) -> str:
    """Type-exact text of a result (Decimal('1.0') and Decimal('1.00') differ; True and 1 differ)."""
    if isinstance(value, CELEvalError):  # an error value kept inside a map literal
        return f"error:{error_message(value)}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{canonical(k)}: {canonical(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(canonical(v) for v in value) + "]"
    return f"{type(value).__name__}:{value!r}"


def compile_for_test(text: str) -> Any | None:
    """The compiled expression, or None when the checker refuses it (counted, not compared)."""
    try:
        return compile_expression(text, environment()[0], require_bool=False)
    except CelCompileError:
        return None
