"""The variables a gate can read, and how they are built from explicit inputs only (spec §8.1).

:data:`VARIABLES` is the single description of the gate environment: the bundle loader checks
expressions against it, and ``docs/bundles.md`` documents it.
"""

from __future__ import annotations

import operator
from decimal import Decimal as _DECIMAL
from typing import Any, Mapping

from .cel import FieldSpec as F
from .cel import to_cel
from .cel.values import _STRINGS, FALSE, TRUE, _Map, _RecentList
from .constraints import SymbolConstraints
from .intent import Intent
from .memo import Sliding, memo, memo_of
from .models import ExecutionContext, StateView

__all__ = ["VARIABLES", "build_activation", "variables_for", "variables_markdown"]

D, S, B = F("decimal"), F("string"), F("bool")

_QTY = F("object", fields={"min_qty": D, "max_qty": D, "step_size": D}, nullable=True)

VARIABLES: dict[str, F] = {
    "action": F("map", "the validated action, its §3.2 fields plus `type` (decimals exact)", item=F("any")),
    "intent": F(
        "object",
        "the action resolved against the position snapshot (engine/intent.py)",
        fields={
            "kind": F("string", "ORDER or CANCEL"),
            "action_type": F("string", "the §3.1 action type"),
            "symbol": F("string", "symbol, null for a cancel across all symbols", nullable=True),
            "side": F("string", "BUY or SELL (orders)", nullable=True),
            "position_side": F("string", "BOTH (one-way) or LONG/SHORT (hedge)", nullable=True),
            "order_type": F("string", "MARKET or LIMIT", nullable=True),
            "quantity": F("decimal", "order quantity, always positive", nullable=True),
            "price": F("decimal", "limit price (LIMIT orders only)", nullable=True),
            "time_in_force": F("string", "GTC or IOC (LIMIT orders only)", nullable=True),
            "reduce_only": F("bool", "the order can only reduce the position"),
            "mark_price": F("decimal", "mark price from the context", nullable=True),
            "reference_price": F("decimal", "limit price for LIMIT, mark price for MARKET", nullable=True),
            "order_notional": F("decimal", "quantity x reference_price", nullable=True),
            "position_before": F("decimal", "signed position before (+ long, - short)"),
            "position_after": F("decimal", "signed position if the order fills completely"),
            "notional_after": F("decimal", "abs(position_after) x reference_price", nullable=True),
            "increases_exposure": F("bool", "abs(position) grows, or the position flips"),
            "opens_position": F("bool", "flat before and not after (or a flip)"),
            "leverage": F("decimal", "leverage of the position row (null if unknown)", nullable=True),
            "margin_mode": F("string", "ISOLATED or CROSSED of the position row (null if unknown)", nullable=True),
            "working_same_side": F("decimal", "total quantity of the account's open orders on this symbol, side and position side (0 for cancels)"),
            "worst_case_position_after": F("decimal", "position_after plus every same-side open order filled too (signed)"),
            "worst_case_notional_after": F("decimal", "abs(worst_case_position_after) x reference_price", nullable=True),
        },
    ),
    "context": F(
        "object",
        "spec §2.1 context fields",
        fields={"exchange": S, "symbol": S, "timestamp": D, "account_id": S},
    ),
    "now": F("decimal", "context.timestamp: the only clock (ms since the epoch, UTC)"),
    "account": F(
        "object",
        "account snapshot from the context",
        fields={
            "position_mode": F("string", "ONE_WAY or HEDGE"),
            "available_margin": D,
            "positions": F("list", "[{symbol, quantity, entry_price, leverage, margin_mode, position_side}], at most 200", max_items=200),
            "open_orders": F("list", "[{symbol, client_order_id, side, quantity, price, position_side}], at most 1000", max_items=1000),
        },
    ),
    "market": F("map", "symbol -> {mark_price}", item=F("object", fields={"mark_price": D})),
    "health": F("object", "exchange health snapshot", fields={"api_latency_ms": D, "order_rejection_rate": D}),
    "state": F(
        "object",
        "ledger view (spec §8.1: history as explicit input)",
        fields={
            "recent": F("list", "[{decision_id, action_id, action_type, symbol, result, reason_code, timestamp, attempted, opens}]: the exchange calls made (or, in dry-run, that would have been) within the lookback, oldest first"),
            "last_execution_ms": F("decimal", "time of the last attempted exchange call", nullable=True),
            "last_failed_safe_ms": F("decimal", "time of the last FAILED_SAFE that arms the cooldown", nullable=True),
        },
    ),
    "constraints": F(
        "object",
        "exchange constraints of the intent's symbol (null for a cancel across all symbols)",
        nullable=True,
        fields={
            "symbol": S,
            "status": S,
            "lot_size": _QTY,
            "market_lot_size": _QTY,
            "price_filter": F("object", fields={"min_price": D, "max_price": D, "tick_size": D}, nullable=True),
            "min_notional": F("decimal", nullable=True),
            "percent_price": F("object", fields={"multiplier_up": D, "multiplier_down": D}, nullable=True),
            "order_types": F("list", max_items=32),
            "time_in_force": F("list", max_items=16),
            "leverage_brackets": F("list", "[{bracket, initial_leverage, notional_floor, notional_cap}]", nullable=True, max_items=64),
        },
    ),
    "lot": F(
        "object",
        "quantity filter that applies to this order: MARKET_LOT_SIZE for MARKET orders where the snapshot has it, else LOT_SIZE",
        nullable=True,
        fields={"min_qty": D, "max_qty": D, "step_size": D},
    ),
    "settings": F(
        "object",
        "bundle settings",
        fields={"cooldown_ms": D, "lookback_ms": D, "execution_mode": S},
    ),
}


def variables_for(param_specs: Mapping[str, F]) -> dict[str, F]:
    """The gate environment of one bundle: :data:`VARIABLES` plus its typed ``params``."""
    out = dict(VARIABLES)
    out["params"] = F("object", "the bundle's typed parameters (per-symbol values resolved)", fields=dict(param_specs))
    return out




def _context_value(context: ExecutionContext, name: str, only: tuple[str, ...] | None) -> Any:
    """The context root ``name`` as a CEL value; for ``context``, ``account`` and ``health`` (objects
    whose every field is always there) only the fields in ``only`` when it is given: the fields the
    bundle's gates read off it (Bundle.reads). A gate cannot observe a field it does not read, and
    every field it reads is there, so its value is the same; a context's 1,000 open orders are not
    converted per decision for gates that never read them."""
    if name == "now":
        return to_cel(context.timestamp)
    if name == "context":
        fields = {"exchange": context.exchange, "symbol": context.symbol, "timestamp": context.timestamp,
                  "account_id": context.account_id}
        return to_cel(fields if only is None else {k: v for k, v in fields.items() if k in only})
    if name in ("account", "health"):
        model = getattr(context, name)
        return to_cel(model.model_dump() if only is None else model.model_dump(include=set(only)))
    return to_cel({k: v.model_dump() for k, v in context.market.items()})  # market: a map, keys not fixed


def _context_values(context: ExecutionContext) -> dict[str, Any]:
    """Every context root, whole."""
    return {name: _context_value(context, name, None) for name in ("context", "now", "account", "market", "health")}


def _lot(constraints: SymbolConstraints, order_type: str | None) -> Any:
    chosen = constraints.market_lot_size if order_type == "MARKET" and constraints.market_lot_size else constraints.lot_size
    return to_cel(chosen.model_dump()) if chosen is not None else None


def build_activation(
    *,
    action: Any,
    intent: Intent,
    context: ExecutionContext,
    bundle: Any,
    state: StateView,
    constraints: SymbolConstraints | None,
    roots: Any = None,
    reads: Any = None,
) -> dict[str, Any]:
    """CEL activation from explicit inputs only (spec §8.1); every number an exact Decimal.

    Only the variables in ``roots`` are built (default: all; the pipeline passes the bundle's
    ``roots``, the variables its gates read), and of the context's objects only the fields in
    ``reads`` (the bundle's ``reads``; default: every field). What cannot change between decisions is converted once
    and kept with the immutable object it comes from: the context's snapshot, the bundle's params per
    symbol and settings, a symbol's constraints."""
    names = _ALL_ROOTS if roots is None else roots
    symbol = intent.symbol or context.symbol
    lot_for = (intent.order_type,) if intent.kind == "ORDER" else None  # lot is null for a cancel
    # what does not change between decisions on this context (its snapshot, the bundle's params for
    # the symbol and settings, the symbol's constraints and lot filter) is assembled once per
    # (bundle, constraints, symbol, order type, roots) and kept with the context; it holds the bundle
    # and the constraints it was built from, so their ids name them for as long as it is kept (an id
    # cannot be reused by another object while the object it names is alive)
    if names is getattr(bundle, "roots", None) and reads is getattr(bundle, "reads", None):
        # the pipeline's call: the bundle's own (immutable, cached) roots and reads, which the bundle
        # kept in the entry determines; its id stands for them without hashing the reads every time
        key: tuple[Any, ...] = ("activation", id(bundle), id(constraints), symbol, lot_for)
    else:
        key = ("activation", id(bundle), id(constraints), symbol, lot_for, names, reads)
    made = memo(context, key, lambda: (
        bundle, constraints, _fixed(names, context, bundle, constraints, symbol, lot_for, reads),
        _intent_converter(reads) if reads is None else memo(bundle, ("intent", reads), lambda: _intent_converter(reads))))
    out = made[2].copy()
    if "intent" in names:
        out["intent"] = made[3](intent)
    if "state" in names:
        out["state"] = memo_of(state, "cel", _state_cel)
    if "action" in names:
        out["action"] = to_cel(action.model_dump())
    return out


def _state_cel(state: StateView) -> Any:
    """The state view's CEL value, once per (immutable) view: a view handed out again for unchanged
    contents (engine.state.MemoryState) is not converted again. A record is immutable and the ledger
    hands out the same object for an unchanged row: its CEL value is built once (to_cel of its dump,
    as before), not per view."""
    return _Map({
        "recent": _recent_cel(state.recent),
        "last_execution_ms": to_cel(state.last_execution_ms),
        "last_failed_safe_ms": to_cel(state.last_failed_safe_ms),
    })


def intent_cel(intent: Intent) -> Any:
    """``to_cel`` of the intent's fields, value by value. An intent holds only Decimals, strings,
    booleans and None: a finite Decimal, a boolean and None are converted inline, a string through
    the kept StringTypes, anything else (a non-finite Decimal, which to_cel refuses) by to_cel
    itself; the same values as ``to_cel`` of each (tests/test_performance.py compares them)."""
    return _Map({
        attr: value if type(value) is _DECIMAL and value.is_finite() else (
            TRUE if value is True else FALSE if value is False else None if value is None
            else _kept_string(value) or to_cel(value) if type(value) is str else to_cel(value))
        for attr, value in intent.__dict__.items()
    })


_INTENT_FIELDS = tuple(VARIABLES["intent"].fields or {})  # Intent's fields, in its order


def _intent_converter(reads: Any) -> Any:
    """:func:`intent_cel`, or, when every gate reads the intent only as ``intent.f`` (``reads``, the
    bundle's: engine.cel.check.root_fields), a function that converts only those fields, in the
    intent's field order: no gate can observe the others. Each field's value is converted by the
    case its declared type makes likely (a finite Decimal, True or False, a str, None where it may be
    null), and any other value by what intent_cel does with it: the same CEL value either way
    (tests/test_performance.py compares them on every corpus intent and on odd ones)."""
    fields = dict(reads).get("intent", None) if reads is not None else None
    if fields is None or not set(fields) <= set(_INTENT_FIELDS):
        return intent_cel
    wanted = [name for name in _INTENT_FIELDS if name in fields]
    pieces = []
    for name in wanted:
        spec = VARIABLES["intent"].fields[name]  # type: ignore[index]
        read = f"(v := d[{name!r}])"
        if spec.kind == "decimal":
            case = f"v if type({read}) is D and v.is_finite() else G(v)"
        elif spec.kind == "bool":
            case = f"T if {read} is True else F if v is False else G(v)"
        else:  # string
            case = f"(K(v) or G(v)) if type({read}) is str else G(v)"
        if spec.nullable:
            case = case.replace(read, "v", 1)
            case = f"None if {read} is None else {case}"
        pieces.append(f"        {name!r}: ({case}),")
    source = "\n".join(["def convert(intent):", "    d = intent.__dict__", "    try:", "        return M({"]
                       + ["    " + p for p in pieces] + ["        })", "    except KeyError:  # not an Intent's fields: all of them, as they are",
                                                         "        return G_ALL(intent)"]) + "\n"
    namespace = {"D": _DECIMAL, "T": TRUE, "F": FALSE, "K": _kept_string, "G": _intent_value, "M": _Map, "G_ALL": intent_cel}
    exec(compile(source, "<ep4 intent converter>", "exec"), namespace)
    convert = namespace["convert"]
    convert.source = source
    return convert


def _intent_value(value: Any) -> Any:
    """One intent value as :func:`intent_cel` converts it."""
    return value if type(value) is _DECIMAL and value.is_finite() else (
        TRUE if value is True else FALSE if value is False else None if value is None
        else _kept_string(value) or to_cel(value) if type(value) is str else to_cel(value))


def _fixed(names: Any, context: ExecutionContext, bundle: Any, constraints: SymbolConstraints | None, symbol: str,
           lot_for: tuple[str | None] | None, reads: Any = None) -> dict[str, Any]:
    """The variables in ``names`` that depend only on the context, the bundle and the constraints."""
    out: dict[str, Any] = {}
    only = dict(reads) if reads is not None else {}
    for name in names:
        if name in _CONTEXT_ROOTS:
            selected = only.get(name)
            out[name] = memo(context, ("context", name, selected), lambda: _context_value(context, name, selected))
        elif name == "params":
            out[name] = memo(bundle, ("params", symbol), lambda: to_cel(bundle.params_for(symbol)))
        elif name == "settings":
            out[name] = memo(bundle, "settings", lambda: to_cel(bundle.settings()))
        elif name == "constraints":
            out[name] = None if constraints is None else memo(constraints, "value", lambda: to_cel(constraints.model_dump()))
        elif name == "lot":
            out[name] = None if constraints is None or lot_for is None else memo(
                constraints, ("lot", lot_for[0]), lambda: _lot(constraints, lot_for[0]))
    return out


def _recent_cel(records: Any) -> _RecentList:
    """``state.recent`` as CEL values (each record's kept with it), and its timestamps when they are
    ints in ascending order. Both continue the previous view's (engine.memo.Sliding): only the
    records that entered the lookback since are looked at one by one."""
    pairs = _RECENT.values(records)
    value = _RecentList(map(_first, pairs))
    times = list(map(_second, pairs))
    if _ascending(times):
        value.ascending = times
    return value


def _ascending(times: list[int | None]) -> bool:
    """No None in ``times`` and each at most the next: ``None not in times and all(map(operator.le,
    times, times[1:]))``, in C. Sorting compares every element of a list of two or more at least once,
    and a comparison with None raises; a stable sort of a list already in order is that list."""
    if len(times) < 2:
        return not times or times[0] is not None
    try:
        return sorted(times) == times
    except TypeError:
        return False


def _record_cel(record: Any) -> Any:
    return to_cel(record.model_dump())


def _recent_pair(record: Any) -> tuple[Any, int | None]:
    """A record's CEL value and its timestamp (None unless a plain int)."""
    return memo_of(record, "cel", _record_cel), record.timestamp if type(record.timestamp) is int else None


_RECENT = Sliding(_recent_pair)
_first, _second = operator.itemgetter(0), operator.itemgetter(1)


_kept_string = _STRINGS.get

_CONTEXT_ROOTS = frozenset({"context", "now", "account", "market", "health"})
_ALL_ROOTS = (*VARIABLES, "params")


def variables_markdown() -> str:
    """docs/gate-variables.md, generated from :data:`VARIABLES` and the CEL helper table."""
    from .cel import HELPER_FUNCTIONS

    lines = [
        "# Variables and helpers a gate can use",
        "",
        "Generated by `ep4 docs gate-variables` from `engine/activation.py` and `engine/cel/functions.py`;",
        "`tests/test_docs.py` fails when this file is stale. Every number is an exact decimal.",
        "`ep4 check` rejects a gate that reads a variable or a field not listed here.",
        "",
        "| variable | type | meaning |",
        "|---|---|---|",
    ]

    def walk(prefix: str, spec: F) -> None:
        null = " or null" if spec.nullable else ""
        lines.append(f"| `{prefix}` | {spec.kind}{null} | {spec.doc} |")
        if spec.kind == "object" and spec.fields:
            for name, sub in spec.fields.items():
                walk(f"{prefix}.{name}", sub)
        elif spec.kind == "map" and spec.item is not None and spec.item.fields:
            for name, sub in spec.item.fields.items():
                walk(f"{prefix}[KEY].{name}", sub)

    for name, spec in VARIABLES.items():
        walk(name, spec)
    lines.append("| `params.NAME` | per declared type | the bundle's `spec.params`; `per_symbol_decimal` values are resolved for the action's symbol (absent if the symbol has no entry and no `*` default: any gate reading it then fails safe) |")
    lines += ["", "## Helper functions (exact decimal arithmetic, registered in the CEL environment)", "",
              "| function | what it does |", "|---|---|"]
    for h in HELPER_FUNCTIONS.values():
        lines.append(f"| `{h.signature}` | {h.doc} |")
    lines += [
        "",
        "Standard CEL also works: `&&`, `||`, `!`, `? :`, comparisons, `in`, `has()`, and the macros",
        "`all`, `exists`, `exists_one`, `map`, `filter`, plus `contains`, `startsWith`, `endsWith`, `matches`",
        "on strings. Numeric literals are exact decimals (`0.1` is one tenth). Arithmetic that cannot be exact",
        "(`1 / 3`) is an evaluation error, and an evaluation error fails the gate.",
    ]
    return "\n".join(lines) + "\n"
