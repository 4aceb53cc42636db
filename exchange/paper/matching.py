"""Fills, positions and margin for the paper account.

There is no order book: an order trades against the mark price. Incoming (taker) orders fill at
the mark price; resting LIMIT orders fill at their own price once the mark price crosses them.
Positions follow Binance: one-way mode keeps one signed ``BOTH`` row per symbol; hedge mode keeps a
``LONG`` row (amount >= 0) and a ``SHORT`` row (amount <= 0). Increases move the entry price to the
quantity-weighted average; reductions realize PnL into the wallet balance (no fees, no funding).
"""

from __future__ import annotations

from decimal import Decimal

from exchange.paper.decimals import DIVISION, ZERO
from exchange.paper.state import Account, Fill, Order, Position

__all__ = [
    "available_balance",
    "closable_qty",
    "closes_only",
    "fill_order",
    "opening_qty",
    "open_order_initial_margin",
    "position_initial_margin",
    "unrealized_pnl",
]


def closable_qty(account: Account, symbol: str, side: str, position_side: str) -> Decimal:
    """How much of the current position an order of ``side`` on ``position_side`` would close."""
    amount = account.position(symbol, position_side).amount
    if side == "SELL" and amount > 0:
        return amount
    if side == "BUY" and amount < 0:
        return -amount
    return ZERO


def closes_only(order: Order) -> bool:
    """Reduce-only in one-way mode; SELL LONG or BUY SHORT in hedge mode."""
    return order.reduce_only or (order.position_side, order.side) in (("LONG", "SELL"), ("SHORT", "BUY"))


def opening_qty(account: Account, order: Order, qty: Decimal) -> Decimal:
    """The part of ``qty`` that opens or increases a position (and so needs initial margin)."""
    if closes_only(order):
        return ZERO
    return max(ZERO, qty - closable_qty(account, order.symbol, order.side, order.position_side))


def fill_order(account: Account, order: Order, qty: Decimal, price: Decimal, now: int) -> None:
    """Execute ``qty`` of ``order`` at ``price``: update the order, the position and the balance."""
    if qty <= 0:
        return
    order.executed_qty += qty
    order.cum_quote += qty * price
    order.update_time = now
    position = account.position_for_fill(order.symbol, order.position_side)
    signed_qty = qty if order.side == "BUY" else -qty
    realized = _apply(position, signed_qty, price)
    position.update_time = now
    account.wallet_balance += realized
    account.fills.append(
        Fill(order.order_id, order.symbol, order.side, order.position_side, qty, price, realized, now)
    )


def unrealized_pnl(position: Position, mark: Decimal) -> Decimal:
    return (mark - position.entry_price) * position.amount if position.amount else ZERO


def position_initial_margin(account: Account, position: Position) -> Decimal:
    mark = account.mark_prices[position.symbol]
    return DIVISION.divide(abs(position.amount) * mark, account.leverage[position.symbol])


def open_order_initial_margin(
    account: Account, symbol: str | None = None, position_side: str | None = None
) -> Decimal:
    """Margin held by open orders: remaining notional / leverage of every order that can open.

    Binance nets open orders against the opposite position; this emulation does not, so it holds
    at least as much margin as Binance would.
    """
    total = ZERO
    for order in account.open_orders(symbol):
        if position_side in (None, order.position_side) and not closes_only(order):
            notional = order.remaining * Decimal(order.price)
            total += DIVISION.divide(notional, account.leverage[order.symbol])
    return total


def available_balance(account: Account) -> Decimal:
    """Wallet balance + unrealized PnL - position initial margin - open-order initial margin."""
    total = account.wallet_balance - open_order_initial_margin(account)
    for position in account.positions.values():
        if position.amount:
            total += unrealized_pnl(position, account.mark_prices[position.symbol])
            total -= position_initial_margin(account, position)
    return total


def _apply(position: Position, signed_qty: Decimal, price: Decimal) -> Decimal:
    """Add ``signed_qty`` at ``price`` to ``position``; return the realized PnL."""
    amount = position.amount
    new_amount = amount + signed_qty
    if amount == 0 or (amount > 0) == (signed_qty > 0):
        weighted = abs(amount) * position.entry_price + abs(signed_qty) * price
        position.entry_price = DIVISION.divide(weighted, abs(new_amount)).normalize()
        position.amount = new_amount
        return ZERO
    closed = min(abs(amount), abs(signed_qty))
    realized = (price - position.entry_price) * closed * (1 if amount > 0 else -1)
    if new_amount == 0:
        position.entry_price = ZERO
    elif (new_amount > 0) != (amount > 0):
        position.entry_price = price
    position.amount = new_amount
    return realized
