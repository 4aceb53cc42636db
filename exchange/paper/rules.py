"""Symbol filters from ``GET /fapi/v1/exchangeInfo`` and the checks Binance applies to a new order.

[FUT common-definition "Symbol Filters"], with the futures error codes:

- PRICE_FILTER: price >= minPrice (-4013), <= maxPrice (-4002), (price - minPrice) % tickSize == 0
  (-4014); a field equal to 0 disables its rule.
- LOT_SIZE (LIMIT) / MARKET_LOT_SIZE (MARKET): quantity > 0 (-4003), >= minQty (-4004),
  <= maxQty (-4005), (quantity - minQty) % stepSize == 0 (-4023).
- PERCENT_PRICE: BUY price <= markPrice * multiplierUp (-4016); SELL price >= markPrice *
  multiplierDown (-4024).
- MIN_NOTIONAL (field ``notional``): price * quantity >= notional, MARKET orders at the mark price
  (-4164), waived for reduce-only orders.
- pricePrecision / quantityPrecision bound the decimals a request may carry (-1111).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from exchange.paper.decimals import ZERO, config_decimal, decimal_places
from exchange.paper.errors import reject

__all__ = ["LotRule", "SymbolRules"]


@dataclass(frozen=True)
class LotRule:
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal

    def check(self, qty: Decimal) -> None:
        if qty <= 0:
            raise reject(-4003)
        if self.min_qty and qty < self.min_qty:
            raise reject(-4004)
        if self.max_qty and qty > self.max_qty:
            raise reject(-4005)
        if self.step_size and (qty - self.min_qty) % self.step_size != 0:
            raise reject(-4023)


@dataclass(frozen=True)
class SymbolRules:
    """The trading rules of one symbol, read from its exchangeInfo entry."""

    symbol: str
    status: str
    price_precision: int
    quantity_precision: int
    min_price: Decimal
    max_price: Decimal
    tick_size: Decimal
    lot: LotRule
    market_lot: LotRule
    min_notional: Decimal
    min_notional_text: str
    multiplier_up: Decimal
    multiplier_down: Decimal
    max_num_orders: int | None = None  # MAX_NUM_ORDERS: open orders per symbol per account (None: no filter)

    @classmethod
    def from_exchange_info(cls, entry: dict[str, Any]) -> SymbolRules:
        filters = {f["filterType"]: f for f in entry.get("filters", [])}
        price = filters.get("PRICE_FILTER", {})
        lot = _lot(filters.get("LOT_SIZE", {}))
        percent = filters.get("PERCENT_PRICE", {})
        notional = filters.get("MIN_NOTIONAL", {}).get("notional", "0")
        return cls(
            symbol=entry["symbol"],
            status=entry.get("status", "TRADING"),
            price_precision=int(entry["pricePrecision"]),
            quantity_precision=int(entry["quantityPrecision"]),
            min_price=_num(price, "minPrice"),
            max_price=_num(price, "maxPrice"),
            tick_size=_num(price, "tickSize"),
            lot=lot,
            market_lot=_lot(filters["MARKET_LOT_SIZE"]) if "MARKET_LOT_SIZE" in filters else lot,
            min_notional=config_decimal(notional),
            min_notional_text=str(notional),
            multiplier_up=_num(percent, "multiplierUp"),
            multiplier_down=_num(percent, "multiplierDown"),
            max_num_orders=int(filters["MAX_NUM_ORDERS"]["limit"]) if "limit" in filters.get("MAX_NUM_ORDERS", {}) else None,
        )

    def check_precision(self, quantity: Decimal, price: Decimal | None) -> None:
        if decimal_places(quantity) > self.quantity_precision:
            raise reject(-1111)
        if price is not None and decimal_places(price) > self.price_precision:
            raise reject(-1111)

    def check_quantity(self, qty: Decimal, *, market: bool) -> None:
        (self.market_lot if market else self.lot).check(qty)

    def check_price(self, price: Decimal) -> None:
        if price <= 0:
            raise reject(-4001)
        if self.min_price and price < self.min_price:
            raise reject(-4013)
        if self.max_price and price > self.max_price:
            raise reject(-4002)
        if self.tick_size and (price - self.min_price) % self.tick_size != 0:
            raise reject(-4014)

    def check_percent_price(self, side: str, price: Decimal, mark: Decimal) -> None:
        if side == "BUY" and self.multiplier_up and price > mark * self.multiplier_up:
            raise reject(-4016)
        if side == "SELL" and self.multiplier_down and price < mark * self.multiplier_down:
            raise reject(-4024)

    def check_min_notional(self, notional: Decimal) -> None:
        if notional < self.min_notional:
            minimum = self.min_notional_text
            raise reject(
                -4164, f"Order's notional must be no smaller than {minimum} (unless you choose reduce only)"
            )


def _num(source: dict[str, Any], key: str) -> Decimal:
    return config_decimal(source[key]) if key in source else ZERO


def _lot(source: dict[str, Any]) -> LotRule:
    return LotRule(_num(source, "minQty"), _num(source, "maxQty"), _num(source, "stepSize"))
