"""Exchange-constraints snapshot (spec §2.1 ExecutionConfig, §4 Rule 4).

Built from raw Binance USDⓈ-M responses, exactly as Binance returns them:
``GET /fapi/v1/exchangeInfo`` (symbol filters) and ``GET /fapi/v1/leverageBracket`` (brackets).
Filter values are kept as exact decimals; a missing filter stays ``None`` (the check is skipped by
the Rule 4 expression that reads it, and the docs say which).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .models import ExactDecimal
from .numbers import DecimalParseError, parse_decimal, sha256_digest

__all__ = ["ConstraintsError", "ConstraintsSnapshot", "SymbolConstraints", "build_constraints", "with_leverage_brackets"]


class ConstraintsError(ValueError):
    """A constraints input that cannot be turned into a snapshot."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QtyFilter(_Frozen):
    min_qty: ExactDecimal
    max_qty: ExactDecimal
    step_size: ExactDecimal


class PriceFilter(_Frozen):
    min_price: ExactDecimal
    max_price: ExactDecimal
    tick_size: ExactDecimal


class PercentPrice(_Frozen):
    multiplier_up: ExactDecimal
    multiplier_down: ExactDecimal


class Bracket(_Frozen):
    bracket: int
    initial_leverage: ExactDecimal
    notional_floor: ExactDecimal
    notional_cap: ExactDecimal


class SymbolConstraints(_Frozen):
    symbol: str
    status: str
    lot_size: QtyFilter | None = None
    market_lot_size: QtyFilter | None = None
    price_filter: PriceFilter | None = None
    min_notional: ExactDecimal | None = None
    percent_price: PercentPrice | None = None
    order_types: tuple[str, ...] = Field(default=(), max_length=32)
    time_in_force: tuple[str, ...] = Field(default=(), max_length=16)
    leverage_brackets: tuple[Bracket, ...] | None = Field(default=None, max_length=64)


class ConstraintsSnapshot(_Frozen):
    symbols: dict[str, SymbolConstraints]

    @property
    def digest(self) -> str:
        return sha256_digest(self.model_dump(mode="json"))


def _dec(raw: dict[str, Any], key: str, where: str) -> Decimal:
    if key not in raw:
        raise ConstraintsError(f"{where}: missing '{key}'")
    value = raw[key]
    if isinstance(value, float):  # a host's dict: a binary float is already inexact, so it is refused
        raise ConstraintsError(f"{where}.{key}: {value!r} is a binary float; pass Binance's decimal string")
    try:
        return parse_decimal(value)
    except DecimalParseError as exc:
        raise ConstraintsError(f"{where}.{key}: {exc}") from None


def _symbol_from_exchange_info(raw: dict[str, Any]) -> SymbolConstraints:
    name = raw.get("symbol")
    if not isinstance(name, str):
        raise ConstraintsError("exchangeInfo symbol entry without a 'symbol' string")
    fields: dict[str, Any] = {"symbol": name, "status": str(raw.get("status", "UNKNOWN"))}
    for f in raw.get("filters", []):
        kind = f.get("filterType")
        where = f"{name}.{kind}"
        if kind in ("LOT_SIZE", "MARKET_LOT_SIZE"):
            fields[kind.lower()] = QtyFilter(
                min_qty=_dec(f, "minQty", where), max_qty=_dec(f, "maxQty", where), step_size=_dec(f, "stepSize", where)
            )
        elif kind == "PRICE_FILTER":
            fields["price_filter"] = PriceFilter(
                min_price=_dec(f, "minPrice", where), max_price=_dec(f, "maxPrice", where), tick_size=_dec(f, "tickSize", where)
            )
        elif kind == "MIN_NOTIONAL":
            # futures spell it "notional"; spot's "minNotional" is accepted for robustness
            fields["min_notional"] = _dec(f, "notional" if "notional" in f else "minNotional", where)
        elif kind == "PERCENT_PRICE":
            fields["percent_price"] = PercentPrice(
                multiplier_up=_dec(f, "multiplierUp", where), multiplier_down=_dec(f, "multiplierDown", where)
            )
    fields["order_types"] = tuple(raw.get("orderTypes", raw.get("OrderType", ())))
    fields["time_in_force"] = tuple(raw.get("timeInForce", ()))
    return SymbolConstraints(**fields)


def _brackets(raw: Any) -> dict[str, tuple[Bracket, ...]]:
    entries = [raw] if isinstance(raw, dict) else raw
    if not isinstance(entries, list):
        raise ConstraintsError("leverageBracket: expected a JSON array (or one object for a single symbol)")
    out: dict[str, tuple[Bracket, ...]] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("symbol"), str):
            raise ConstraintsError("leverageBracket: every entry needs a 'symbol' and 'brackets'")
        sym = entry["symbol"]
        items = []
        for b in entry.get("brackets", []):
            where = f"{sym}.brackets[{b.get('bracket')}]"
            items.append(
                Bracket(
                    bracket=int(b.get("bracket", 0)),
                    initial_leverage=_dec(b, "initialLeverage", where),
                    notional_floor=_dec(b, "notionalFloor", where),
                    notional_cap=_dec(b, "notionalCap", where),
                )
            )
        out[sym] = tuple(sorted(items, key=lambda x: x.notional_floor))
    return out


def build_constraints(exchange_info: Any, leverage_brackets: Any | None = None) -> ConstraintsSnapshot:
    """Turn raw Binance responses (already parsed with :func:`engine.numbers.loads`) into a snapshot.

    ``exchange_info`` may also be a snapshot previously written by ep4 (``{"symbols": {...}}``).
    """
    if isinstance(exchange_info, dict) and isinstance(exchange_info.get("symbols"), dict):
        try:
            snap = ConstraintsSnapshot.model_validate(exchange_info)
        except ValidationError as exc:
            raise ConstraintsError(f"constraints snapshot: {exc.errors()[0]['msg']}") from None
    else:
        if not isinstance(exchange_info, dict) or not isinstance(exchange_info.get("symbols"), list):
            raise ConstraintsError(
                "expected a Binance GET /fapi/v1/exchangeInfo response (an object with a 'symbols' array)"
            )
        try:
            symbols = {s.symbol: s for s in map(_symbol_from_exchange_info, exchange_info["symbols"])}
        except ValidationError as exc:
            raise ConstraintsError(f"exchangeInfo: {exc.errors()[0]['msg']}") from None
        except (AttributeError, TypeError, ValueError, KeyError) as exc:  # a part that is not the shape Binance sends
            raise ConstraintsError(f"exchangeInfo: a symbol entry is not the shape Binance sends ({type(exc).__name__}: {exc})") from None
        snap = ConstraintsSnapshot(symbols=symbols)
    return snap if leverage_brackets is None else with_leverage_brackets(snap, leverage_brackets)


def with_leverage_brackets(snap: ConstraintsSnapshot, leverage_brackets: Any) -> ConstraintsSnapshot:
    """``snap`` with each symbol's brackets from a raw Binance GET /fapi/v1/leverageBracket response."""
    try:
        by_symbol = _brackets(leverage_brackets)
    except ConstraintsError:
        raise
    except (AttributeError, TypeError, ValueError, KeyError) as exc:  # a part that is not the shape Binance sends
        raise ConstraintsError(f"leverageBracket: an entry is not the shape Binance sends ({type(exc).__name__}: {exc})") from None
    return ConstraintsSnapshot(
        symbols={
            name: s.model_copy(update={"leverage_brackets": by_symbol.get(name, s.leverage_brackets)})
            for name, s in snap.symbols.items()
        }
    )
