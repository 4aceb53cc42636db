"""``POST /fapi/v1/order`` and order cancels: validation in Binance's terms, then execution.

Supported: ``type`` LIMIT (``timeInForce`` GTC, IOC, FOK, GTX) and MARKET. Conditional types
(STOP*, TAKE_PROFIT*, TRAILING_STOP_MARKET) answer -4120, as Binance now routes them to the algo
order API. Behaviour per [FUT trade/rest-api New-Order]:

- ``positionSide`` defaults to BOTH in one-way mode and must be LONG/SHORT in hedge mode (-4061).
- ``reduceOnly`` cannot be sent in hedge mode at all (-1106 "Parameter 'reduceonly' sent when not
  required.", even with "false"); in one-way mode a reduce-only order that would open or flip the
  position is -2022. In hedge mode, closing more than the position (SELL LONG / BUY SHORT) is -2022.
- ``newClientOrderId`` must match ``^[\\.A-Z\\:/a-z0-9_-]{1,36}$`` (-4015) and be unique among open
  orders (-4116).
- The symbol's MAX_NUM_ORDERS filter limits its open orders per account (-2025), counted before the
  new one.
- Initial margin (opening notional / leverage) must fit the available balance (-2019).
- IOC leftovers expire (status EXPIRED, possibly with executedQty > 0); a FOK that cannot fill in
  full is -5021; a GTX (post-only) that would trade at once is -5022.
"""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from typing import Callable

from exchange.paper.decimals import DIVISION, ZERO, param_decimal
from exchange.paper.errors import invalid_param, mandatory, not_required, reject
from exchange.paper.matching import available_balance, closable_qty, closes_only, fill_order, opening_qty
from exchange.paper.params import Params
from exchange.paper.rules import SymbolRules
from exchange.paper.state import Account, Order

__all__ = ["cancel_all", "cancel_order", "find_order", "match_resting", "past_query_history", "place_order"]

# matched whole (fullmatch): "$" alone would take a trailing newline ("abc\n"), which Binance refuses (-4015)
CLIENT_ORDER_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_ALGO_TYPES = frozenset({"STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"})
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "GTX"})
_STP_MODES = frozenset({"NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"})
# Parameters of order kinds the paper exchange does not emulate; sending one is -1106.
_UNSUPPORTED = ("stopPrice", "activationPrice", "callbackRate", "closePosition", "priceMatch", "goodTillDate")


def place_order(
    account: Account, rules: SymbolRules, params: Params, now: int, max_notional: Callable[[str, int], Decimal] | None = None,
) -> tuple[Order, Order]:
    """Validate and execute a new order. Returns (the order as accepted, the order after matching).
    ``max_notional(symbol, leverage)``: the leverage brackets' cap on a position's notional at that
    leverage (0 when the symbol has no brackets: not checked)."""
    order = _read_new_order(account, rules, params, now)
    mark = account.mark_prices[rules.symbol]
    qty = Decimal(order.orig_qty)
    price = mark if order.type == "MARKET" else Decimal(order.price)
    if closes_only(order) and qty > closable_qty(account, order.symbol, order.side, order.position_side):
        raise reject(-2022)
    if not order.reduce_only:
        rules.check_min_notional(qty * price)
    opening_notional = opening_qty(account, order, qty) * price
    if opening_notional:
        initial_margin = DIVISION.divide(opening_notional, account.leverage[rules.symbol])
        if initial_margin > available_balance(account):
            raise reject(-2019)
        # -2027 MAX_LEVERAGE_RATIO (facts file §4: "position too big for current leverage"): the position
        # this order leaves, at the order's price, above what the bracket of the current leverage allows
        cap = max_notional(rules.symbol, account.leverage[rules.symbol]) if max_notional is not None else ZERO
        if cap > 0:
            held = account.position(order.symbol, order.position_side).amount
            closing = closable_qty(account, order.symbol, order.side, order.position_side)
            after = opening_qty(account, order, qty) + (abs(held) if closing == 0 else ZERO)
            if after * price > cap:
                raise reject(-2027)
    _match_new(account, order, mark, now)
    account.next_order_id += 1
    account.orders[order.order_id] = order
    accepted = replace(order, status="NEW", executed_qty=ZERO, cum_quote=ZERO, update_time=now)
    return accepted, order


def _read_new_order(account: Account, rules: SymbolRules, params: Params, now: int) -> Order:
    """The new order the parameters describe, after every parameter and symbol-filter check."""
    side = params.require("side")
    if side not in ("BUY", "SELL"):
        raise reject(-1117)
    order_type = params.require("type")
    if order_type in _ALGO_TYPES:
        raise reject(-4120)
    if order_type not in ("LIMIT", "MARKET"):
        raise reject(-1116)
    for name in _UNSUPPORTED:
        if name in params:
            raise not_required(name)
    position_side = _position_side(account, params)
    reduce_only = _reduce_only(account, params)
    client_order_id = params.get("newClientOrderId")
    if client_order_id is not None and not CLIENT_ORDER_ID.fullmatch(client_order_id):
        raise reject(-4015)
    stp_mode = params.get("selfTradePreventionMode", "NONE")
    if stp_mode not in _STP_MODES:
        raise invalid_param("selfTradePreventionMode")

    qty_text = params.require("quantity")
    qty = param_decimal("quantity", qty_text)
    if order_type == "LIMIT":
        time_in_force = params.require("timeInForce")
        if time_in_force not in _TIME_IN_FORCE:
            raise reject(-1115)
        price_text = params.require("price")
        price = param_decimal("price", price_text)
    else:
        for name in ("price", "timeInForce"):  # Binance: -1106 "Parameter 'timeInForce' sent when not required."
            if name in params:
                raise not_required(name)
        time_in_force, price_text, price = "GTC", "0", None

    if rules.status != "TRADING":
        raise reject(-1122)
    rules.check_precision(qty, price)
    rules.check_quantity(qty, market=price is None)
    if price is not None:
        rules.check_price(price)
        rules.check_percent_price(side, price, account.mark_prices[rules.symbol])
    if client_order_id is not None and any(
        o.client_order_id == client_order_id for o in account.open_orders()
    ):
        raise reject(-4116)
    if rules.max_num_orders is not None and len(account.open_orders(rules.symbol)) >= rules.max_num_orders:
        raise reject(-2025)
    return Order(
        order_id=account.next_order_id,
        symbol=rules.symbol,
        client_order_id=client_order_id or f"paper_{account.next_order_id}",
        side=side,
        position_side=position_side,
        type=order_type,
        time_in_force=time_in_force,
        orig_qty=qty_text,
        price=price_text,
        reduce_only=reduce_only,
        self_trade_prevention_mode=stp_mode,
        time=now,
        update_time=now,
    )


def find_order(account: Account, symbol: str, params: Params) -> Order | None:
    """The order named by ``orderId`` or ``origClientOrderId`` (latest with that id), if any."""
    order_id = params.get("orderId")
    client_id = params.get("origClientOrderId")
    if not order_id and not client_id:
        raise reject(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    if order_id:
        if not order_id.isascii() or not order_id.isdigit() or len(order_id) > 19:  # a LONG: int() of 5,000 digits raised
            raise mandatory("orderId")
        order = account.orders.get(int(order_id))
        return order if order is not None and order.symbol == symbol else None
    matches = [o for o in account.orders.values() if o.symbol == symbol and o.client_order_id == client_id]
    return matches[-1] if matches else None


_DAY_MS = 24 * 3600 * 1000


def past_query_history(order: Order, now: int) -> bool:
    """``GET /fapi/v1/order`` answers -2013 for it (facts file §2): a CANCELED or EXPIRED order without
    a fill created more than 3 days ago, and any order created more than 90 days ago."""
    age = now - order.time
    return age > 90 * _DAY_MS or (age > 3 * _DAY_MS and order.status in ("CANCELED", "EXPIRED") and not order.executed_qty)


def cancel_order(account: Account, symbol: str, params: Params, now: int) -> Order:
    order = find_order(account, symbol, params)
    if order is None or not order.is_open:
        raise reject(-2011)
    order.status = "CANCELED"
    order.update_time = now
    return order


def cancel_all(account: Account, symbol: str, now: int) -> None:
    for order in account.open_orders(symbol):
        order.status = "CANCELED"
        order.update_time = now


def match_resting(account: Account, symbol: str, now: int) -> None:
    """Fill resting LIMIT orders that the current mark price has crossed, at their own price."""
    mark = account.mark_prices[symbol]
    for order in account.open_orders(symbol):
        price = Decimal(order.price)
        if not _marketable(order.side, price, mark):
            continue
        qty = order.remaining
        if closes_only(order):
            qty = min(qty, closable_qty(account, symbol, order.side, order.position_side))
        fill_order(account, order, qty, price, now)
        # A closing order never outlives the position it closes.
        order.status = "FILLED" if order.remaining == 0 else "EXPIRED"
        order.update_time = now


def _match_new(account: Account, order: Order, mark: Decimal, now: int) -> None:
    """Trade a new order against the mark price, capped by the symbol's liquidity setting."""
    qty = Decimal(order.orig_qty)
    liquidity = account.liquidity.get(order.symbol)
    takeable = qty if liquidity is None else min(qty, liquidity)
    marketable = order.type == "MARKET" or _marketable(order.side, Decimal(order.price), mark)
    if order.time_in_force == "GTX" and marketable:
        raise reject(-5022)
    if order.time_in_force == "FOK" and not (marketable and takeable == qty):
        raise reject(-5021)
    if marketable:
        fill_order(account, order, takeable, mark, now)
    if order.remaining == 0:
        order.status = "FILLED"
    elif order.type == "MARKET" or order.time_in_force == "IOC":
        order.status = "EXPIRED"
    elif order.executed_qty:
        order.status = "PARTIALLY_FILLED"


def _marketable(side: str, price: Decimal, mark: Decimal) -> bool:
    return price >= mark if side == "BUY" else price <= mark


def _position_side(account: Account, params: Params) -> str:
    value = params.get("positionSide")
    if value is not None and value not in ("BOTH", "LONG", "SHORT"):
        raise reject(-4060)
    if account.dual_side_position:
        if value not in ("LONG", "SHORT"):
            raise reject(-4061)
        return value
    if value not in (None, "BOTH"):
        raise reject(-4061)
    return "BOTH"


def _reduce_only(account: Account, params: Params) -> bool:
    value = params.get("reduceOnly")
    if value is None:
        return False
    if account.dual_side_position:
        raise not_required("reduceonly")
    if value.lower() not in ("true", "false"):
        raise invalid_param("reduceOnly")
    return value.lower() == "true"
