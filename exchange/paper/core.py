"""``PaperExchange``: a Binance USDⓈ-M compatible account behind one ``handle()`` call.

The core is transport-free: ``handle(method, path, query, body, headers)`` returns a
``PaperResponse``. ``PaperTransport`` (in-process httpx) and ``paper_asgi_app`` (uvicorn, loopback)
only carry bytes to and from it, and carry out the delay or disruption a fault asks for.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from exchange.paper import orders
from exchange.paper.auth import ApiCredential, check_signed_request
from exchange.paper.decimals import config_decimal
from exchange.paper.errors import BinanceError, reject
from exchange.paper.faults import Fault, FaultKind, FaultQueue
from exchange.paper.params import Params, split_signature
from exchange.paper.response import PaperResponse, json_response
from exchange.paper.rules import SymbolRules
from exchange.paper.state import Account, Fill, Order, Position
from exchange.paper.views import Brackets, account_view, order_view, position_risk_view, premium_index_view

__all__ = ["PaperExchange", "STATE_VERSION"]

STATE_VERSION = 1
DEFAULT_LEVERAGE = 20  # Binance's default for a symbol never configured


@dataclass(frozen=True)
class _Route:
    handler: Callable[[PaperExchange, Params, int], Any]
    signed: bool
    trade: bool = False
    weight: int = 1  # IP weight (facts file §2); a new order weighs 0 there and counts as an order
    weight_without_symbol: int | None = None  # openOrders 40, premiumIndex 10 without a symbol


class PaperExchange:
    """A paper Binance USDⓈ-M account: balances, positions (one-way or hedge), orders, fills.

    ``clock`` returns the server time in ms; ``clock=None`` makes the server time the request's own
    ``timestamp`` (the last one seen, for unsigned requests), so runs replay exactly.
    """

    def __init__(
        self,
        *,
        exchange_info: Mapping[str, Any],
        mark_prices: Mapping[str, Decimal | str],
        credentials: Iterable[ApiCredential] = (),
        initial_balance: Decimal | str = Decimal("10000"),
        leverage: Mapping[str, int] | None = None,
        margin_type: Mapping[str, str] | None = None,
        dual_side_position: bool = False,
        leverage_brackets: list[dict[str, Any]] | None = None,
        liquidity: Mapping[str, Decimal | str] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        symbols = [entry["symbol"] for entry in exchange_info["symbols"]]
        missing = [s for s in symbols if s not in mark_prices]
        if missing:
            raise ValueError(f"no mark price for {', '.join(missing)}")
        leverage = {s: int((leverage or {}).get(s, DEFAULT_LEVERAGE)) for s in symbols}
        if any(not 1 <= value <= 125 for value in leverage.values()):
            raise ValueError("leverage must be between 1 and 125")
        margin_type = dict(margin_type or {})
        for symbol, kind in margin_type.items():
            if kind not in ("CROSSED", "ISOLATED"):
                raise ValueError(f"margin type of {symbol} must be CROSSED or ISOLATED, not {kind!r}")
        account = Account(
            wallet_balance=config_decimal(initial_balance),
            dual_side_position=dual_side_position,
            leverage=leverage,
            margin_type={s: margin_type.get(s, "CROSSED") for s in symbols},
            mark_prices={s: config_decimal(mark_prices[s]) for s in symbols},
            liquidity={s: config_decimal(q) for s, q in (liquidity or {}).items()},
        )
        self._init(exchange_info, leverage_brackets, account, credentials, clock)
        self.account_id = uuid.uuid4().hex
        self.account_id_saved = False  # whether a saved file holds it (save: True)

    def _init(
        self,
        exchange_info: Mapping[str, Any],
        leverage_brackets: list[dict[str, Any]] | None,
        account: Account,
        credentials: Iterable[ApiCredential],
        clock: Callable[[], int] | None,
    ) -> None:
        self._exchange_info = copy.deepcopy(dict(exchange_info))
        self._rules = {e["symbol"]: SymbolRules.from_exchange_info(e) for e in self._exchange_info["symbols"]}
        self._brackets = Brackets(copy.deepcopy(leverage_brackets))
        self._account = account
        self._credentials = {c.api_key: c for c in credentials}
        self._clock = clock
        self._faults = FaultQueue()
        self._lock = threading.RLock()
        # the rate-limit counters Binance reports in headers (facts file §3): per-IP weight per minute, new
        # orders per 10 s and per minute, each a fixed window [start, used]; reported, not enforced
        self._used: dict[str, list[int]] = {}

    # -- persistence -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        credentials: Iterable[ApiCredential] = (),
        clock: Callable[[], int] | None = None,
    ) -> PaperExchange:
        """An exchange from a file written by ``save``. Keys and clock are not stored; pass them."""
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if document.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: not a paper exchange state file of version {STATE_VERSION}")
        exchange = cls.__new__(cls)
        account = Account.from_json(document["account"])
        exchange._init(document["exchange_info"], document["leverage_brackets"], account, credentials, clock)
        # which paper account this is (ep4 reconcile asks only the account an order went to); a file
        # written before it was kept gets one now, kept from its next save on
        kept = document.get("account_id")
        exchange.account_id = kept if isinstance(kept, str) and kept else uuid.uuid4().hex
        exchange.account_id_saved = isinstance(kept, str) and bool(kept)
        return exchange

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole state as JSON (decimals as strings) atomically: temp file + os.replace."""
        with self._lock:
            document = {
                "version": STATE_VERSION,
                "account_id": self.account_id,
                "exchange_info": self._exchange_info,
                "leverage_brackets": self._brackets.raw,
                "account": self._account.to_json(),
            }
        target = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, sort_keys=True)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
        self.account_id_saved = True

    # -- the one entry point -----------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, body: bytes, headers: Mapping[str, str]
    ) -> PaperResponse:
        """Answer one HTTP request exactly as Binance would (or as the next matching fault says)."""
        method = method.upper()
        route = _ROUTES.get((method, path))
        if route is None:
            return json_response(404, {"code": -5000, "msg": f"Path {path}, Method {method} is invalid"})
        with self._lock:
            fault = self._faults.take(method, path, trade=route.trade, signed=route.signed)
            result = None
            if fault is None or fault.executes:
                result = self._dispatch(route, query, body, headers)
            if fault is None:
                assert result is not None
                return self._with_usage(route, method, path, query, result)
            return fault.respond(result, path=path, now=self._now())

    # Binance's rate-limit headers (facts file §3 "Rate limits"); the windows are fixed ones
    _WINDOWS = {"X-MBX-USED-WEIGHT-1M": 60_000, "X-MBX-ORDER-COUNT-10S": 10_000, "X-MBX-ORDER-COUNT-1M": 60_000}

    def _count(self, header: str, now: int, amount: int) -> int:
        window = self._WINDOWS[header]
        start = now - now % window
        used = self._used.setdefault(header, [start, 0])
        if used[0] != start:
            used[:] = [start, 0]
        used[1] += amount
        return used[1]

    def _with_usage(self, route: _Route, method: str, path: str, query: str, result: PaperResponse) -> PaperResponse:
        """The response with ``X-MBX-USED-WEIGHT-1M`` (every request), and ``X-MBX-ORDER-COUNT-10S`` /
        ``-1M`` on new-order responses (an accepted order counts one; Binance does not promise them on
        rejected orders, which count none here)."""
        now = self._now()
        weight = route.weight
        if route.weight_without_symbol is not None and "&symbol=" not in f"&{query}":
            weight = route.weight_without_symbol
        headers = {"X-MBX-USED-WEIGHT-1M": str(self._count("X-MBX-USED-WEIGHT-1M", now, weight))}
        if (method, path) == ("POST", "/fapi/v1/order"):
            placed = 1 if result.status == 200 else 0
            for name in ("X-MBX-ORDER-COUNT-10S", "X-MBX-ORDER-COUNT-1M"):
                headers[name] = str(self._count(name, now, placed))
        return replace(result, headers={**result.headers, **headers})

    def _dispatch(self, route: _Route, query: str, body: bytes, headers: Mapping[str, str]) -> PaperResponse:
        body_text = body.decode("utf-8", "replace")
        try:
            params = Params(query, body_text)
            if route.signed:
                lowered = {k.lower(): v for k, v in headers.items()}
                signed = split_signature(query, body_text)
                now = check_signed_request(self._credentials, lowered, params, signed, self._clock)
                self._account.server_time = now
            else:
                now = self._now()
            return json_response(200, route.handler(self, params, now))
        except BinanceError as error:
            return json_response(error.status, error.body())

    def _now(self) -> int:
        return self._account.server_time if self._clock is None else self._clock()

    # -- test and operator controls ----------------------------------------------------------

    def inject(self, fault: Fault | FaultKind | str, count: int = 1, **fields: Any) -> None:
        """Queue ``fault`` for the next ``count`` matching requests (default: trade requests).

        ``exchange.inject("read_timeout")``, ``exchange.inject("latency", delay_ms=200)``,
        ``exchange.inject(Fault(FaultKind.HTTP_500, executes=True), count=2)``.
        """
        if not isinstance(fault, Fault):
            fault = Fault(FaultKind(fault), **fields)
        elif fields:
            raise TypeError("pass fields either in the Fault or as keywords, not both")
        with self._lock:
            self._faults.add(fault, count)

    def pending_faults(self) -> tuple[Fault, ...]:
        with self._lock:
            return self._faults.pending()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_mark_price(self, symbol: str, price: Decimal | str) -> None:
        """Move the mark price; resting LIMIT orders it crosses fill at their own price."""
        with self._lock:
            self._rules_for(symbol)
            self._account.mark_prices[symbol] = config_decimal(price)
            orders.match_resting(self._account, symbol, self._now())

    def set_liquidity(self, symbol: str, qty: Decimal | str | None) -> None:
        """Cap what one incoming order can take (None: unlimited); IOC/MARKET leftovers expire."""
        with self._lock:
            self._rules_for(symbol)
            if qty is None:
                self._account.liquidity.pop(symbol, None)
            else:
                self._account.liquidity[symbol] = config_decimal(qty)

    @property
    def orders(self) -> list[Order]:
        """Every order ever accepted, oldest first (copies)."""
        with self._lock:
            return [copy.copy(o) for o in self._account.orders.values()]

    @property
    def fills(self) -> list[Fill]:
        with self._lock:
            return list(self._account.fills)

    def position(self, symbol: str, position_side: str = "BOTH") -> Position:
        with self._lock:
            return copy.copy(self._account.position(symbol, position_side))

    @property
    def wallet_balance(self) -> Decimal:
        with self._lock:
            return self._account.wallet_balance

    @property
    def dual_side_position(self) -> bool:
        return self._account.dual_side_position

    # -- endpoint handlers -------------------------------------------------------------------

    def _rules_for(self, symbol: str) -> SymbolRules:
        rules = self._rules.get(symbol)
        if rules is None:
            raise reject(-1121)
        return rules

    def _optional_symbol(self, params: Params) -> list[str]:
        symbol = params.get("symbol")
        return list(self._rules) if symbol is None else [self._rules_for(symbol).symbol]

    def _position_rows(self, symbols: list[str]) -> list[Position]:
        sides = ("LONG", "SHORT") if self._account.dual_side_position else ("BOTH",)
        return [self._account.position(s, side) for s in symbols for side in sides]

    def _new_order(self, params: Params, now: int) -> Any:
        rules = self._rules_for(params.require("symbol"))
        response_type = params.get("newOrderRespType", "ACK")
        if response_type not in ("ACK", "RESULT"):
            raise reject(-1136)
        accepted, final = orders.place_order(self._account, rules, params, now, self._brackets.max_notional)
        return order_view(final if response_type == "RESULT" else accepted)

    def _cancel_order(self, params: Params, now: int) -> Any:
        symbol = self._rules_for(params.require("symbol")).symbol
        return order_view(orders.cancel_order(self._account, symbol, params, now))

    def _query_order(self, params: Params, now: int) -> Any:
        return self._named_order(params, lambda order: orders.past_query_history(order, now))

    def _named_order(self, params: Params, gone: Callable[[Order], bool]) -> Any:
        """The order ``orderId`` / ``origClientOrderId`` names on ``symbol``; -2013 "Order does not
        exist." when there is none, or when ``gone(order)`` says the endpoint no longer shows it."""
        symbol = self._rules_for(params.require("symbol")).symbol
        order = orders.find_order(self._account, symbol, params)
        if order is None or gone(order):
            raise reject(-2013)
        return order_view(order, query=True)

    def _open_order(self, params: Params, now: int) -> Any:
        """GET /fapi/v1/openOrder: one order that is still open; -2013 "Order does not exist." once it
        is filled or cancelled (facts file §2), as for one never placed."""
        return self._named_order(params, lambda order: not order.is_open)

    def _cancel_all(self, params: Params, now: int) -> Any:
        symbol = self._rules_for(params.require("symbol")).symbol
        orders.cancel_all(self._account, symbol, now)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _open_orders(self, params: Params, now: int) -> Any:
        symbol = params.get("symbol")
        if symbol is not None:
            self._rules_for(symbol)
        return [order_view(o, query=True) for o in self._account.open_orders(symbol)]

    def _account_info(self, params: Params, now: int) -> Any:
        rows = self._position_rows(list(self._rules))
        return account_view(self._account, self._brackets, rows)

    def _position_risk(self, params: Params, now: int) -> Any:
        rows = self._position_rows(self._optional_symbol(params))
        return [position_risk_view(self._account, self._brackets, p) for p in rows]

    def _leverage_bracket(self, params: Params, now: int) -> Any:
        symbol = params.get("symbol")
        if symbol is None:
            return self._brackets.raw
        self._rules_for(symbol)
        found = [e for e in self._brackets.raw if e["symbol"] == symbol]
        return found[0] if found else {"symbol": symbol, "brackets": []}

    def _dual_side(self, params: Params, now: int) -> Any:
        return {"dualSidePosition": self._account.dual_side_position}

    def _exchange_info_view(self, params: Params, now: int) -> Any:
        return {**self._exchange_info, "serverTime": now}

    def _premium_index(self, params: Params, now: int) -> Any:
        views = [premium_index_view(self._account, s, now) for s in self._optional_symbol(params)]
        return views if params.get("symbol") is None else views[0]

    def _time(self, params: Params, now: int) -> Any:
        return {"serverTime": now}

    def _ping(self, params: Params, now: int) -> Any:
        return {}


_ROUTES: dict[tuple[str, str], _Route] = {  # weights: facts file §2
    ("GET", "/fapi/v1/ping"): _Route(PaperExchange._ping, signed=False),
    ("GET", "/fapi/v1/time"): _Route(PaperExchange._time, signed=False),
    ("GET", "/fapi/v1/exchangeInfo"): _Route(PaperExchange._exchange_info_view, signed=False),
    ("GET", "/fapi/v1/premiumIndex"): _Route(PaperExchange._premium_index, signed=False, weight_without_symbol=10),
    ("POST", "/fapi/v1/order"): _Route(PaperExchange._new_order, signed=True, trade=True, weight=0),
    ("DELETE", "/fapi/v1/order"): _Route(PaperExchange._cancel_order, signed=True, trade=True),
    ("DELETE", "/fapi/v1/allOpenOrders"): _Route(PaperExchange._cancel_all, signed=True, trade=True),
    ("GET", "/fapi/v1/order"): _Route(PaperExchange._query_order, signed=True),
    ("GET", "/fapi/v1/openOrder"): _Route(PaperExchange._open_order, signed=True),
    ("GET", "/fapi/v1/openOrders"): _Route(PaperExchange._open_orders, signed=True, weight_without_symbol=40),
    ("GET", "/fapi/v2/account"): _Route(PaperExchange._account_info, signed=True, weight=5),
    ("GET", "/fapi/v2/positionRisk"): _Route(PaperExchange._position_risk, signed=True, weight=5),
    ("GET", "/fapi/v1/leverageBracket"): _Route(PaperExchange._leverage_bracket, signed=True),
    ("GET", "/fapi/v1/positionSide/dual"): _Route(PaperExchange._dual_side, signed=True, weight=30),
}
