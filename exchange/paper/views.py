"""Response bodies in Binance's JSON shapes: decimals as strings, ids and times as numbers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from exchange.paper.decimals import DIVISION, ZERO, config_decimal, text
from exchange.paper.matching import (
    available_balance,
    open_order_initial_margin,
    position_initial_margin,
    unrealized_pnl,
)
from exchange.paper.state import Account, Order, Position

__all__ = ["Brackets", "account_view", "order_view", "position_risk_view", "premium_index_view"]


def order_view(order: Order, *, query: bool = False) -> dict[str, Any]:
    """The order object of POST/DELETE /fapi/v1/order (``query=False``) or GET (``query=True``)."""
    executed = text(order.executed_qty)
    view: dict[str, Any] = {
        "orderId": order.order_id,
        "symbol": order.symbol,
        "status": order.status,
        "clientOrderId": order.client_order_id,
        "price": order.price,
        "avgPrice": text(DIVISION.divide(order.cum_quote, order.executed_qty)) if order.executed_qty else "0",
        "origQty": order.orig_qty,
        "executedQty": executed,
        "cumQuote": text(order.cum_quote),
        "timeInForce": order.time_in_force,
        "type": order.type,
        "reduceOnly": order.reduce_only,
        "closePosition": False,
        "side": order.side,
        "positionSide": order.position_side,
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": order.type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": order.self_trade_prevention_mode,
        "goodTillDate": 0,
        "updateTime": order.update_time,
    }
    if query:
        view["time"] = order.time
    else:
        view["cumQty"] = executed
    return view


class Brackets:
    """Leverage brackets as given at construction, for leverageBracket, maintMargin and maxNotional."""

    def __init__(self, raw: list[dict[str, Any]] | None) -> None:
        self.raw = list(raw or [])
        self._by_symbol = {entry["symbol"]: entry.get("brackets", []) for entry in self.raw}

    def maint_margin(self, symbol: str, notional: Decimal) -> Decimal:
        """notional * maintMarginRatio - cum, in the bracket holding ``notional``."""
        for bracket in self._by_symbol.get(symbol, []):
            if config_decimal(bracket["notionalFloor"]) <= notional < config_decimal(bracket["notionalCap"]):
                return notional * config_decimal(bracket["maintMarginRatio"]) - config_decimal(bracket["cum"])
        return ZERO

    def max_notional(self, symbol: str, leverage: int) -> Decimal:
        caps = [
            config_decimal(b["notionalCap"])
            for b in self._by_symbol.get(symbol, [])
            if int(b["initialLeverage"]) >= leverage
        ]
        return max(caps, default=ZERO)


def position_risk_view(account: Account, brackets: Brackets, position: Position) -> dict[str, Any]:
    """One row of GET /fapi/v2/positionRisk."""
    symbol = position.symbol
    mark = account.mark_prices[symbol]
    isolated = account.margin_type[symbol] == "ISOLATED"
    margin = position_initial_margin(account, position)
    return {
        "symbol": symbol,
        "positionAmt": text(position.amount),
        "entryPrice": text(position.entry_price),
        "breakEvenPrice": text(position.entry_price),
        "markPrice": text(mark),
        "unRealizedProfit": text(unrealized_pnl(position, mark)),
        "liquidationPrice": "0",
        "leverage": str(account.leverage[symbol]),
        "maxNotionalValue": text(brackets.max_notional(symbol, account.leverage[symbol])),
        "marginType": "isolated" if isolated else "cross",
        "isolatedMargin": text(margin if isolated else ZERO),
        "isAutoAddMargin": "false",
        "positionSide": position.position_side,
        "notional": text(position.amount * mark),
        "isolatedWallet": text(margin if isolated else ZERO),
        "updateTime": position.update_time,
    }


def account_view(account: Account, brackets: Brackets, positions: list[Position]) -> dict[str, Any]:
    """GET /fapi/v2/account for a single-asset (USDT) account."""
    rows = []
    totals = {"im": ZERO, "mm": ZERO, "upnl": ZERO}
    for position in positions:
        symbol = position.symbol
        mark = account.mark_prices[symbol]
        position_margin = position_initial_margin(account, position)
        order_margin = open_order_initial_margin(account, symbol, position.position_side)
        maint = brackets.maint_margin(symbol, abs(position.amount) * mark)
        upnl = unrealized_pnl(position, mark)
        totals["im"] += position_margin + order_margin
        totals["mm"] += maint
        totals["upnl"] += upnl
        rows.append(
            {
                "symbol": symbol,
                "initialMargin": text(position_margin + order_margin),
                "maintMargin": text(maint),
                "unrealizedProfit": text(upnl),
                "positionInitialMargin": text(position_margin),
                "openOrderInitialMargin": text(order_margin),
                "leverage": str(account.leverage[symbol]),
                "isolated": account.margin_type[symbol] == "ISOLATED",
                "entryPrice": text(position.entry_price),
                "maxNotional": text(brackets.max_notional(symbol, account.leverage[symbol])),
                "bidNotional": "0",
                "askNotional": "0",
                "positionSide": position.position_side,
                "positionAmt": text(position.amount),
                "updateTime": position.update_time,
            }
        )
    wallet = account.wallet_balance
    order_margin_total = open_order_initial_margin(account)
    available = available_balance(account)
    amounts = {
        "totalInitialMargin": totals["im"],
        "totalMaintMargin": totals["mm"],
        "totalWalletBalance": wallet,
        "totalUnrealizedProfit": totals["upnl"],
        "totalMarginBalance": wallet + totals["upnl"],
        "totalPositionInitialMargin": totals["im"] - order_margin_total,
        "totalOpenOrderInitialMargin": order_margin_total,
        "totalCrossWalletBalance": wallet,
        "totalCrossUnPnl": totals["upnl"],
        "availableBalance": available,
        "maxWithdrawAmount": max(ZERO, min(wallet, available)),
    }
    asset = {
        "asset": "USDT",
        "walletBalance": text(wallet),
        "unrealizedProfit": text(totals["upnl"]),
        "marginBalance": text(wallet + totals["upnl"]),
        "maintMargin": text(totals["mm"]),
        "initialMargin": text(totals["im"]),
        "positionInitialMargin": text(totals["im"] - order_margin_total),
        "openOrderInitialMargin": text(order_margin_total),
        "crossWalletBalance": text(wallet),
        "crossUnPnl": text(totals["upnl"]),
        "availableBalance": text(available),
        "maxWithdrawAmount": text(amounts["maxWithdrawAmount"]),
        "marginAvailable": True,
        "updateTime": account.server_time,
    }
    return {
        "feeTier": 0,
        "canTrade": True,
        "canDeposit": True,
        "canWithdraw": True,
        "updateTime": 0,
        "multiAssetsMargin": False,
        "tradeGroupId": -1,
        **{name: text(value) for name, value in amounts.items()},
        "assets": [asset],
        "positions": rows,
    }


def premium_index_view(account: Account, symbol: str, now: int) -> dict[str, Any]:
    """GET /fapi/v1/premiumIndex: the mark price doubles as index and settle price; no funding."""
    mark = text(account.mark_prices[symbol])
    return {
        "symbol": symbol,
        "markPrice": mark,
        "indexPrice": mark,
        "estimatedSettlePrice": mark,
        "lastFundingRate": "0",
        "interestRate": "0",
        "nextFundingTime": 0,
        "time": now,
    }
