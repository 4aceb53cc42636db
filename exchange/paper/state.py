"""The paper account: balance, positions, orders and fills, and their JSON form (decimals as text)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exchange.paper.decimals import ZERO, text

__all__ = ["Account", "Fill", "Order", "Position", "OPEN_STATUSES"]

OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})


@dataclass
class Order:
    """One order as Binance keeps it. ``orig_qty`` and ``price`` keep the exact text received."""

    order_id: int
    symbol: str
    client_order_id: str
    side: str  # BUY | SELL
    position_side: str  # BOTH | LONG | SHORT
    type: str  # LIMIT | MARKET
    time_in_force: str
    orig_qty: str
    price: str  # "0" for MARKET
    reduce_only: bool
    self_trade_prevention_mode: str
    time: int
    update_time: int
    status: str = "NEW"
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return Decimal(self.orig_qty) - self.executed_qty


@dataclass
class Position:
    """One position row. ``amount`` is signed: positive long, negative short (hedge SHORT rows too)."""

    symbol: str
    position_side: str
    amount: Decimal = ZERO
    entry_price: Decimal = ZERO
    update_time: int = 0


@dataclass
class Fill:
    order_id: int
    symbol: str
    side: str
    position_side: str
    qty: Decimal
    price: Decimal
    realized_pnl: Decimal
    time: int


@dataclass
class Account:
    """Everything that changes while trading; saved and loaded as one JSON document."""

    wallet_balance: Decimal
    dual_side_position: bool
    leverage: dict[str, int]
    margin_type: dict[str, str]  # CROSSED | ISOLATED
    mark_prices: dict[str, Decimal]
    liquidity: dict[str, Decimal] = field(default_factory=dict)
    positions: dict[tuple[str, str], Position] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    next_order_id: int = 1
    server_time: int = 0

    def position(self, symbol: str, position_side: str) -> Position:
        """The position row, or a detached empty one when the row was never traded."""
        return self.positions.get((symbol, position_side)) or Position(symbol, position_side)

    def position_for_fill(self, symbol: str, position_side: str) -> Position:
        """The stored position row, created on first use."""
        return self.positions.setdefault((symbol, position_side), Position(symbol, position_side))

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.is_open and symbol in (None, o.symbol)]

    def to_json(self) -> dict[str, Any]:
        return {
            "wallet_balance": text(self.wallet_balance),
            "dual_side_position": self.dual_side_position,
            "leverage": dict(self.leverage),
            "margin_type": dict(self.margin_type),
            "mark_prices": {s: text(p) for s, p in self.mark_prices.items()},
            "liquidity": {s: text(q) for s, q in self.liquidity.items()},
            "positions": [_dump(p) for p in self.positions.values()],
            "orders": [_dump(o) for o in self.orders.values()],
            "fills": [_dump(f) for f in self.fills],
            "next_order_id": self.next_order_id,
            "server_time": self.server_time,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        positions = [_load(Position, p) for p in data["positions"]]
        orders = [_load(Order, o) for o in data["orders"]]
        return cls(
            wallet_balance=Decimal(data["wallet_balance"]),
            dual_side_position=bool(data["dual_side_position"]),
            leverage={s: int(v) for s, v in data["leverage"].items()},
            margin_type=dict(data["margin_type"]),
            mark_prices={s: Decimal(p) for s, p in data["mark_prices"].items()},
            liquidity={s: Decimal(q) for s, q in data["liquidity"].items()},
            positions={(p.symbol, p.position_side): p for p in positions},
            orders={o.order_id: o for o in orders},
            fills=[_load(Fill, f) for f in data["fills"]],
            next_order_id=int(data["next_order_id"]),
            server_time=int(data["server_time"]),
        )


def _dump(obj: Any) -> dict[str, Any]:
    return {
        f.name: text(v) if isinstance(v, Decimal) else v
        for f in dataclasses.fields(obj)
        for v in [getattr(obj, f.name)]
    }


def _load(cls: type, data: dict[str, Any]) -> Any:
    # Annotations are strings here (postponed evaluation), so "Decimal" names the decimal fields.
    return cls(
        **{
            f.name: Decimal(data[f.name]) if f.type == "Decimal" else data[f.name]
            for f in dataclasses.fields(cls)
            if f.name in data
        }
    )
