"""What an action means on the exchange, resolved against the position snapshot (pure).

The intent is the mechanical reading of an action (spec §3.2) against the context: which side,
which quantity, reduce-only or not, the position before and after. Ambiguity is never guessed away
(spec §6.1/§6.2 "ambiguous state"): it yields a FAILED_SAFE reason instead of an intent.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields as dataclass_fields
from decimal import Decimal, DecimalException, localcontext
from typing import Any

from .models import (
    AdjustPositionAction,
    CancelOrdersAction,
    ClosePositionAction,
    ExecutionContext,
    OpenPositionAction,
    Position,
)
from .memo import memo
from .numbers import EXACT

__all__ = ["Intent", "IntentError", "resolve_intent"]


class IntentError(Exception):
    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message


@dataclass(frozen=True)
class Intent:
    kind: str  # ORDER | CANCEL
    action_type: str
    symbol: str | None
    side: str | None = None  # BUY | SELL
    position_side: str | None = None  # BOTH | LONG | SHORT
    order_type: str | None = None  # MARKET | LIMIT
    quantity: Decimal | None = None
    price: Decimal | None = None
    time_in_force: str | None = None
    reduce_only: bool = False
    mark_price: Decimal | None = None
    reference_price: Decimal | None = None
    order_notional: Decimal | None = None
    position_before: Decimal = Decimal(0)
    position_after: Decimal = Decimal(0)
    notional_after: Decimal | None = None
    increases_exposure: bool = False
    opens_position: bool = False
    leverage: Decimal | None = None
    margin_mode: str | None = None
    working_same_side: Decimal = Decimal(0)
    worst_case_position_after: Decimal = Decimal(0)
    worst_case_notional_after: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# every field of Intent with its default (None for the required ones), in field order
_INTENT_DEFAULTS: dict[str, Any] = {f.name: (None if f.default is MISSING else f.default) for f in dataclass_fields(Intent)}
_REQUIRED = frozenset(f.name for f in dataclass_fields(Intent) if f.default is MISSING)


def _new_intent(**fields: Any) -> Intent:
    """``Intent(**fields)`` without the frozen dataclass's per-field ``object.__setattr__`` (a third
    of resolving an intent): the same fields, in the same order, the same values. Only for the
    fixed keyword sets of :func:`_resolve` (tests/test_performance.py checks it equals Intent(...))."""
    intent = object.__new__(Intent)
    values = dict(_INTENT_DEFAULTS)
    values.update(fields)
    if len(values) != len(_INTENT_DEFAULTS) or not _REQUIRED <= fields.keys():
        raise TypeError(f"Intent fields: unknown {sorted(set(values) - set(_INTENT_DEFAULTS))}, missing {sorted(_REQUIRED - fields.keys())}")
    intent.__dict__.update(values)
    return intent


def _sign(x: Decimal) -> int:
    return (x > 0) - (x < 0)


def _rows(context: ExecutionContext, symbol: str) -> tuple[Position | None, Position | None, Position | None]:
    """(one-way row, hedge LONG row, hedge SHORT row) for ``symbol``; duplicates are ambiguous.

    A context is immutable: the rows of a symbol (or why they are ambiguous) are worked out once per
    (context, symbol) and kept with the context (engine.memo)."""
    rows, problem = memo(context, ("rows", symbol), lambda: _read_rows(context, symbol))
    if problem is not None:
        raise IntentError(*problem)
    return rows


def _read_rows(context: ExecutionContext, symbol: str) -> tuple[tuple[Any, Any, Any], tuple[str, str] | None]:
    rows = [p for p in context.account.positions if p.symbol == symbol]
    by_side: dict[str, Position] = {}
    for p in rows:
        if p.position_side in by_side:
            return _NO_ROWS, ("AMBIGUOUS_POSITION", f"the context lists {symbol} {p.position_side} twice")
        by_side[p.position_side] = p
    hedge = context.account.position_mode == "HEDGE"
    if hedge and by_side.get("BOTH") is not None and by_side["BOTH"].quantity != 0:
        return _NO_ROWS, ("AMBIGUOUS_POSITION", f"hedge-mode account with a one-way ({symbol} BOTH) position row")
    if not hedge and ({"LONG", "SHORT"} & by_side.keys()):
        return _NO_ROWS, ("AMBIGUOUS_POSITION", f"one-way account with a hedge ({symbol} LONG/SHORT) position row")
    long_row, short_row = by_side.get("LONG"), by_side.get("SHORT")
    if long_row is not None and long_row.quantity < 0 or short_row is not None and short_row.quantity > 0:
        return _NO_ROWS, ("AMBIGUOUS_POSITION", f"{symbol} hedge rows must be LONG >= 0 and SHORT <= 0")
    # an open order on a hedge position side (LONG / SHORT) in a one-way account is counted on no side
    # by the exposure ceilings (_working: one-way orders act on BOTH), so it would go unseen by them:
    # the state is ambiguous (spec §6.2), not guessed. (In hedge mode, BOTH is also what an order row
    # without position_side reads as, so it cannot tell a stated BOTH from an omitted side: such an
    # order stays counted on neither side there, as the shipped corpus's hedge cases pin.)
    if not hedge:
        for o in context.account.open_orders:
            if o.symbol == symbol and o.position_side != "BOTH":
                return _NO_ROWS, ("AMBIGUOUS_POSITION", f"one-way account with a {symbol} open order on position side "
                                                        f"{o.position_side} ({o.client_order_id}): the exposure ceilings could not count it")
    return (by_side.get("BOTH"), long_row, short_row), None


_NO_ROWS = (None, None, None)


def _held(context: ExecutionContext, symbol: str) -> tuple[Position | None, str]:
    """The one position a CLOSE or ADJUST acts on, and its positionSide."""
    both, long_row, short_row = _rows(context, symbol)
    if context.account.position_mode == "ONE_WAY":
        if both is None or both.quantity == 0:
            raise IntentError("NO_POSITION", f"no {symbol} position in the context")
        return both, "BOTH"
    live = [(r, s) for r, s in ((long_row, "LONG"), (short_row, "SHORT")) if r is not None and r.quantity != 0]
    if not live:
        raise IntentError("NO_POSITION", f"no {symbol} position in the context")
    if len(live) > 1:
        raise IntentError("AMBIGUOUS_POSITION", f"hedge mode holds both a LONG and a SHORT {symbol} position")
    return live[0]


def resolve_intent(action: Any, context: ExecutionContext, *, exact_entered: bool = False) -> Intent:
    """Resolve a validated non-NOOP action (spec §3.2) into an :class:`Intent` or raise IntentError.

    Every arithmetic step runs in :data:`EXACT`: a result that would need rounding (a quantity of
    more than 60 significant digits, say) is FAILED_SAFE, never a rounded number sent to the exchange
    (spec §4 Rule 4: no rounding heuristics). ``exact_entered``: the caller already runs inside
    ``decimal.localcontext(EXACT)`` (engine.cel.exact_arithmetic), as the pipeline does for Rules 3-4."""
    try:
        if exact_entered:
            return _resolve(action, context)
        with localcontext(EXACT):
            return _resolve(action, context)
    except DecimalException as exc:
        raise IntentError(
            "ARITHMETIC_INEXACT",
            f"the action's numbers cannot be worked with exactly ({type(exc).__name__}): nothing is rounded, nothing is sent",
        ) from None


def _resolve(action: Any, context: ExecutionContext) -> Intent:
    if isinstance(action, CancelOrdersAction):
        return _new_intent(kind="CANCEL", action_type=action.type, symbol=action.symbol)

    symbol = action.symbol
    market = context.market.get(symbol)
    if market is None:
        raise IntentError("MARK_PRICE_UNAVAILABLE", f"the context has no mark price for {symbol}")
    mark = market.mark_price

    price = time_in_force = None
    if isinstance(action, OpenPositionAction):
        side = "BUY" if action.side == "LONG" else "SELL"
        direction = 1 if side == "BUY" else -1
        both, long_row, short_row = _rows(context, symbol)
        if context.account.position_mode == "HEDGE":
            row, position_side = (long_row, "LONG") if action.side == "LONG" else (short_row, "SHORT")
        else:
            row, position_side = both, "BOTH"
        before = row.quantity if row is not None else _ZERO
        quantity, order_type, price, reduce_only = action.quantity, action.order_type, action.limit_price, False
        after = EXACT.add(before, quantity * direction)
        time_in_force = action.time_in_force if order_type == "LIMIT" else None
    elif isinstance(action, ClosePositionAction):
        row, position_side = _held(context, symbol)
        before = row.quantity
        quantity = action.quantity if action.quantity is not None else abs(before)
        if quantity > abs(before):
            raise IntentError(
                "CLOSE_EXCEEDS_POSITION", f"close quantity {quantity} exceeds the {symbol} position {abs(before)}"
            )
        side, order_type, reduce_only = "SELL" if before > 0 else "BUY", "MARKET", True
        after = EXACT.subtract(before, quantity * _sign(before))
    elif isinstance(action, AdjustPositionAction):
        row, position_side = _held(context, symbol)
        before, delta = row.quantity, action.delta_quantity
        if delta < 0 and -delta > abs(before):
            raise IntentError(
                "ADJUST_WOULD_FLIP", f"decrease {-delta} exceeds the {symbol} position {abs(before)}"
            )
        grows = delta > 0
        side = ("BUY" if before > 0 else "SELL") if grows else ("SELL" if before > 0 else "BUY")
        quantity, order_type, reduce_only = abs(delta), "MARKET", not grows
        after = EXACT.add(before, delta * _sign(before))
    else:  # pragma: no cover - the union is closed
        raise TypeError(f"no intent for {type(action).__name__}")

    reference = price or mark
    sign_before, sign_after = _sign(before), _sign(after)
    flips = sign_before != 0 and sign_after == -sign_before
    # what the context says of this symbol, side and position side (its settings row, its working
    # orders) does not change between decisions on it: worked out once and kept with it (engine.memo)
    leverage, margin_mode, working = memo(
        context, ("order_side", symbol, side, position_side), lambda: _order_side(context, symbol, side, position_side))
    direction = 1 if side == "BUY" else -1
    worst = after + direction * working
    # Intent(...) with every field, in field order (tests/test_performance.py compares it)
    intent = _NEW(Intent)
    intent.__dict__.update({
        "kind": "ORDER", "action_type": action.type, "symbol": symbol, "side": side, "position_side": position_side,
        "order_type": order_type, "quantity": quantity, "price": price,
        "time_in_force": time_in_force, "reduce_only": reduce_only,
        "mark_price": mark, "reference_price": reference,
        "order_notional": EXACT.multiply(quantity, reference),
        "position_before": before, "position_after": after,
        "notional_after": EXACT.multiply(abs(after), reference),
        "increases_exposure": abs(after) > abs(before) or flips,
        "opens_position": (before == 0 and after != 0) or flips,
        "leverage": leverage, "margin_mode": margin_mode,
        "working_same_side": working,
        "worst_case_position_after": worst,
        "worst_case_notional_after": EXACT.multiply(abs(worst), reference),
    })
    return intent


_NEW = object.__new__
_ZERO = Decimal(0)


def _order_side(context: ExecutionContext, symbol: str, side: str, position_side: str) -> tuple[Decimal | None, str | None, Decimal]:
    """(leverage, margin mode) of the position row the order acts on, and the quantity of the
    context's open orders on the same side of it (FIA: limits count what can still fill)."""
    row = _settings_row(context, symbol, position_side)
    return (
        Decimal(row.leverage) if row and row.leverage else None,
        row.margin_mode if row else None,
        _working(context, symbol, side, position_side),
    )


def _working(context: ExecutionContext, symbol: str, side: str, position_side: str) -> Decimal:
    """Total quantity of the context's open orders on this symbol, side and position side (in the
    caller's EXACT context: an inexact sum raises, and is not kept)."""
    return sum(
        (o.quantity for o in context.account.open_orders
         if o.symbol == symbol and o.side == side and o.position_side == position_side),
        Decimal(0),
    )


def _settings_row(context: ExecutionContext, symbol: str, position_side: str) -> Position | None:
    for p in context.account.positions:
        if p.symbol == symbol and p.position_side == position_side:
            return p
    return None
