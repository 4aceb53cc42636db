"""The paper exchange, in-process (PaperTransport) and over a loopback socket (uvicorn)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from exchange.paper import (
    ApiCredential,
    Fault,
    FaultKind,
    PaperExchange,
    PaperServer,
    PaperTransport,
)
from exchange.signing import Ed25519Signer, hmac_signature

API_KEY = "paper-api-key"
SECRET = "paper-secret-for-tests-only"
T0 = 1_764_028_800_000
BASE_URL = "https://fapi.binance.com"


def symbol_entry(
    symbol: str, price_precision: int, quantity_precision: int, filters: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": symbol.removesuffix("USDT"),
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": price_precision,
        "quantityPrecision": quantity_precision,
        "filters": filters,
        "orderTypes": [
            "LIMIT",
            "MARKET",
            "STOP",
            "STOP_MARKET",
            "TAKE_PROFIT",
            "TAKE_PROFIT_MARKET",
            "TRAILING_STOP_MARKET",
        ],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


# BTCUSDT as in the February 2022 exchangeInfo capture; TESTUSDT is made up so that every filter
# rule can be hit on its own.
EXCHANGE_INFO: dict[str, Any] = {
    "timezone": "UTC",
    "serverTime": 1645233611962,
    "futuresType": "U_MARGINED",
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [
        symbol_entry(
            "BTCUSDT",
            2,
            3,
            [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "402",
                    "maxPrice": "1246396.60",
                    "tickSize": "0.10",
                },
                {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": "10"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierDown": "0.5454",
                    "multiplierUp": "1.1000",
                    "multiplierDecimal": "4",
                },
            ],
        ),
        symbol_entry(
            "TESTUSDT",
            1,
            3,
            [
                {"filterType": "PRICE_FILTER", "minPrice": "1", "maxPrice": "1000", "tickSize": "0.5"},
                {"filterType": "LOT_SIZE", "stepSize": "0.005", "maxQty": "100", "minQty": "0.010"},
                {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.005", "maxQty": "10", "minQty": "0.010"},
                {"filterType": "MIN_NOTIONAL", "notional": "5"},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierDown": "0.9",
                    "multiplierUp": "1.1",
                    "multiplierDecimal": 4,
                },
            ],
        ),
    ],
}
BRACKETS = [
    {
        "symbol": "BTCUSDT",
        "notionalCoef": 1.0,
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": 125,
                "notionalCap": 50000,
                "notionalFloor": 0,
                "maintMarginRatio": 0.004,
                "cum": 0.0,
            },
            {
                "bracket": 2,
                "initialLeverage": 100,
                "notionalCap": 600000,
                "notionalFloor": 50000,
                "maintMarginRatio": 0.005,
                "cum": 50.0,
            },
        ],
    },
]
MARKS = {"BTCUSDT": Decimal("64000.0"), "TESTUSDT": Decimal("100")}


def make_exchange(**overrides: Any) -> PaperExchange:
    config: dict[str, Any] = {
        "exchange_info": EXCHANGE_INFO,
        "mark_prices": MARKS,
        "credentials": [ApiCredential(API_KEY, hmac_secret=SECRET)],
        "initial_balance": Decimal("10000"),
        "leverage_brackets": BRACKETS,
        "clock": lambda: T0,
    }
    config.update(overrides)
    return PaperExchange(**config)


class Venue:
    """A signing test client bound to one paper exchange (in-process or over a socket)."""

    def __init__(self, exchange: PaperExchange, client: httpx.Client) -> None:
        self.exchange = exchange
        self.client = client

    def signed(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        *,
        in_body: bool = False,
        timestamp: int = T0,
        recv_window: int | None = None,
        key: str | None = API_KEY,
        secret: str = SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        pairs = list((params or {}).items())
        if recv_window is not None:
            pairs.append(("recvWindow", str(recv_window)))
        pairs.append(("timestamp", str(timestamp)))
        payload = urlencode(pairs)
        total = f"{payload}&signature={signature or hmac_signature(secret, payload)}"
        headers = {"X-MBX-APIKEY": key} if key else {}
        if in_body:
            headers["content-type"] = "application/x-www-form-urlencoded"
            return self.client.request(method, path, content=total, headers=headers)
        return self.client.request(method, f"{path}?{total}", headers=headers)

    def order(self, **params: str) -> httpx.Response:
        params.setdefault("symbol", "BTCUSDT")
        params.setdefault("newOrderRespType", "RESULT")
        return self.signed("POST", "/fapi/v1/order", params, in_body=True)

    def query(self, client_order_id: str, symbol: str = "BTCUSDT") -> httpx.Response:
        return self.signed("GET", "/fapi/v1/order", {"symbol": symbol, "origClientOrderId": client_order_id})


def in_process(exchange: PaperExchange, **client_args: Any) -> Venue:
    return Venue(exchange, httpx.Client(transport=PaperTransport(exchange), base_url=BASE_URL, **client_args))


@pytest.fixture
def venue() -> Iterator[Venue]:
    venue = in_process(make_exchange())
    with venue.client:
        yield venue


@pytest.fixture(params=["in_process", "loopback"])
def any_venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    """The same tests through both transports."""
    exchange = make_exchange()
    if request.param == "in_process":
        with in_process(exchange).client as client:
            yield Venue(exchange, client)
        return
    with PaperServer(exchange) as server, httpx.Client(base_url=server.base_url, timeout=5) as client:
        yield Venue(exchange, client)


def error(response: httpx.Response) -> tuple[int, int]:
    return response.status_code, response.json()["code"]


# -- public endpoints ---------------------------------------------------------------------------


def test_public_endpoints(any_venue: Venue) -> None:
    client = any_venue.client
    assert client.get("/fapi/v1/ping").json() == {}
    assert client.get("/fapi/v1/time").json() == {"serverTime": T0}
    info = client.get("/fapi/v1/exchangeInfo").json()
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "TESTUSDT"]
    mark = client.get("/fapi/v1/premiumIndex", params={"symbol": "BTCUSDT"}).json()
    assert mark["markPrice"] == "64000.0" and mark["symbol"] == "BTCUSDT"
    assert len(client.get("/fapi/v1/premiumIndex").json()) == 2
    assert error(client.get("/fapi/v1/premiumIndex", params={"symbol": "NOPE"})) == (400, -1121)
    assert client.get("/fapi/v1/nowhere").status_code == 404


# -- authentication -----------------------------------------------------------------------------


def test_signature_key_and_recv_window_checks(any_venue: Venue) -> None:
    v = any_venue
    assert v.signed("GET", "/fapi/v1/positionSide/dual").json() == {"dualSidePosition": False}
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", signature="0" * 64)) == (400, -1022)
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", secret="other")) == (400, -1022)
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", key=None)) == (401, -2014)
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", key="unknown")) == (401, -2015)
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", key="short!")) == (401, -2014)  # a malformed key (facts file)
    # a LONG parameter of 5,000 digits: -1102, never a 500 (int() of it raised ValueError)
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", timestamp="9" * 5000)) == (400, -1102)  # type: ignore[arg-type]
    assert error(v.signed("GET", "/fapi/v1/positionSide/dual", recv_window="9" * 5000)) == (400, -1130)  # type: ignore[arg-type]
    huge = v.signed("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": "9" * 5000})
    assert error(huge) == (400, -1102), huge.text
    unsigned = v.client.get(
        "/fapi/v1/positionSide/dual", params={"timestamp": T0}, headers={"X-MBX-APIKEY": API_KEY}
    )
    assert error(unsigned) == (400, -1102)
    # Accept only if timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow.
    assert v.signed("GET", "/fapi/v2/account", timestamp=T0 - 5000).status_code == 200
    late = v.signed("GET", "/fapi/v2/account", timestamp=T0 - 5001)
    assert error(late) == (400, -1021) and "recvWindow" in late.json()["msg"]
    assert v.signed("GET", "/fapi/v2/account", timestamp=T0 + 999).status_code == 200
    early = v.signed("GET", "/fapi/v2/account", timestamp=T0 + 1000)
    assert error(early) == (400, -1021) and "ahead" in early.json()["msg"]
    assert v.signed("GET", "/fapi/v2/account", timestamp=T0 - 59000, recv_window=60000).status_code == 200
    assert error(v.signed("GET", "/fapi/v2/account", recv_window=60001)) == (400, -1130)


def test_signature_covers_query_then_body_and_query_wins() -> None:
    venue = in_process(make_exchange())
    query = "symbol=BTCUSDT&side=BUY&type=MARKET"
    body = f"symbol=ETHUSDT&quantity=0.010&newOrderRespType=RESULT&timestamp={T0}"
    signature = hmac_signature(SECRET, query + body)
    response = venue.client.post(
        f"/fapi/v1/order?{query}",
        content=f"{body}&signature={signature}",
        headers={"X-MBX-APIKEY": API_KEY, "content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and response.json()["symbol"] == "BTCUSDT"
    wrong = hmac_signature(SECRET, query + "&" + body)  # a separator is not part of totalParams
    response = venue.client.post(
        f"/fapi/v1/order?{query}",
        content=f"{body}&signature={wrong}",
        headers={"X-MBX-APIKEY": API_KEY, "content-type": "application/x-www-form-urlencoded"},
    )
    assert error(response) == (400, -1022)


def test_ed25519_key_with_percent_encoded_signature() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    exchange = make_exchange(credentials=[ApiCredential("ed-key", ed25519_public_key_pem=public_pem)])
    venue = in_process(exchange)
    payload = f"timestamp={T0}"
    signature = Ed25519Signer(private_pem).sign(payload)
    url = f"/fapi/v1/positionSide/dual?{payload}&signature={quote(signature, safe='')}"
    assert venue.client.get(url, headers={"X-MBX-APIKEY": "ed-key"}).status_code == 200
    tampered = f"/fapi/v1/positionSide/dual?timestamp={T0 + 1}&signature={quote(signature, safe='')}"
    assert error(venue.client.get(tampered, headers={"X-MBX-APIKEY": "ed-key"})) == (400, -1022)


def test_clock_none_follows_the_request_timestamp() -> None:
    venue = in_process(make_exchange(clock=None))
    stamp = 1_000_000_000_000
    response = venue.order(side="BUY", type="MARKET", quantity="0.010", newClientOrderId="c1")
    assert response.json()["updateTime"] == T0
    response = venue.signed("GET", "/fapi/v2/account", timestamp=stamp)
    assert response.status_code == 200
    assert venue.client.get("/fapi/v1/time").json() == {"serverTime": stamp}


# -- filters ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"quantity": "0"}, -4003),
        ({"quantity": "0.005"}, -4004),
        ({"quantity": "100.5"}, -4005),
        ({"type": "MARKET", "quantity": "10.5", "price": None, "timeInForce": None}, -4005),  # MARKET_LOT_SIZE maxQty 10
        ({"type": "MARKET", "price": None}, -1106),  # timeInForce with a MARKET order: "sent when not required"
        ({"quantity": "0.012"}, -4023),
        ({"quantity": "0.0105"}, -1111),
        ({"quantity": "1e-2"}, -1100),
        ({"quantity": "-1"}, -1100),
        ({"price": "0.5"}, -4013),
        ({"price": "1000.5"}, -4002),
        ({"price": "100.3"}, -4014),
        ({"price": "100.25"}, -1111),
        ({"side": "BUY", "price": "110.5"}, -4016),
        ({"side": "SELL", "price": "89.5"}, -4024),
        ({"quantity": "0.010", "price": "100"}, -4164),
        ({"type": "STOP_MARKET"}, -4120),
        ({"type": "LIMIT_MAKER"}, -1116),
        ({"side": "HOLD"}, -1117),
        ({"timeInForce": "GTD"}, -1115),
        ({"newOrderRespType": "FULL"}, -1136),
        ({"symbol": "NOPEUSDT"}, -1121),
        ({"stopPrice": "90"}, -1106),
        ({"type": "MARKET"}, -1106),  # price with a MARKET order
        ({"timeInForce": None}, -1102),
    ],
)
def test_order_filters_reject_with_binance_codes(
    venue: Venue, params: dict[str, str | None], code: int
) -> None:
    order = {
        "symbol": "TESTUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "95",
    }
    order.update(params)
    response = venue.order(**{k: v for k, v in order.items() if v is not None})
    assert error(response) == (400, code)
    assert venue.exchange.orders == []


def test_filter_boundaries_are_accepted(venue: Venue) -> None:
    base = {"symbol": "TESTUSDT", "type": "LIMIT", "timeInForce": "GTC"}
    assert (
        venue.order(side="BUY", quantity="0.050", price="110", **base).status_code == 200
    )  # cap, min notional 5.5
    assert venue.order(side="SELL", quantity="100", price="90", **base).status_code == 200
    # Trailing zeros are not precision: 0.0100 and 99.50 pass -1111, and reach MIN_NOTIONAL (0.995).
    assert error(venue.order(side="BUY", quantity="0.0100", price="99.50", **base)) == (400, -4164)
    message = venue.order(side="BUY", quantity="0.010", price="101", **base).json()["msg"]
    assert message == "Order's notional must be no smaller than 5 (unless you choose reduce only)"
    assert error(venue.order(side="BUY", type="MARKET", quantity="0.0001")) == (
        400,
        -1111,
    )  # BTCUSDT precision 3


# -- fills and responses ------------------------------------------------------------------------


def test_market_order_result_echoes_exact_decimals(any_venue: Venue) -> None:
    body = any_venue.order(side="BUY", type="MARKET", quantity="0.010", newClientOrderId="ep4-a-1").json()
    assert body["status"] == "FILLED"
    assert (body["origQty"], body["executedQty"], body["cumQty"]) == ("0.010", "0.010", "0.010")
    assert (body["avgPrice"], body["cumQuote"], body["price"]) == ("64000.0", "640.0000", "0")
    assert body["clientOrderId"] == "ep4-a-1" and body["orderId"] == 1 and body["updateTime"] == T0
    expected_keys = {
        "clientOrderId",
        "cumQty",
        "cumQuote",
        "executedQty",
        "orderId",
        "avgPrice",
        "origQty",
        "price",
        "reduceOnly",
        "side",
        "positionSide",
        "status",
        "stopPrice",
        "closePosition",
        "symbol",
        "timeInForce",
        "type",
        "origType",
        "updateTime",
        "workingType",
        "priceProtect",
        "priceMatch",
        "selfTradePreventionMode",
        "goodTillDate",
    }
    assert set(body) == expected_keys
    assert body["reduceOnly"] is False and body["positionSide"] == "BOTH"
    risk = any_venue.signed("GET", "/fapi/v2/positionRisk", {"symbol": "BTCUSDT"}).json()
    assert [(r["positionAmt"], r["entryPrice"], r["marginType"]) for r in risk] == [
        ("0.010", "64000", "cross")
    ]


def test_ack_is_the_accepted_order_and_query_shows_the_fill(venue: Venue) -> None:
    ack = venue.order(
        side="BUY", type="MARKET", quantity="0.002", newOrderRespType="ACK", newClientOrderId="ack-1"
    ).json()
    assert (ack["status"], ack["executedQty"], ack["avgPrice"]) == ("NEW", "0", "0")
    queried = venue.query("ack-1").json()
    assert (queried["status"], queried["executedQty"], queried["time"]) == ("FILLED", "0.002", T0)
    by_id = venue.signed(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": str(ack["orderId"])}
    ).json()
    assert by_id == queried
    assert error(venue.query("never-sent")) == (400, -2013)


def test_limit_orders_rest_fill_and_expire(venue: Venue) -> None:
    resting = venue.order(
        side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="63000.0"
    ).json()
    assert (resting["status"], resting["executedQty"]) == ("NEW", "0")
    taker = venue.order(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="64500.0").json()
    assert (taker["status"], taker["avgPrice"]) == ("FILLED", "64000.0")  # fills at the mark
    ioc = venue.order(side="SELL", type="LIMIT", timeInForce="IOC", quantity="0.010", price="65000.0").json()
    assert (ioc["status"], ioc["executedQty"]) == ("EXPIRED", "0")
    assert error(
        venue.order(side="BUY", type="LIMIT", timeInForce="GTX", quantity="0.010", price="64100.0")
    ) == (400, -5022)
    assert (
        venue.order(side="BUY", type="LIMIT", timeInForce="GTX", quantity="0.010", price="63900.0").json()[
            "status"
        ]
        == "NEW"
    )
    open_ids = [
        o["orderId"] for o in venue.signed("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}).json()
    ]
    assert open_ids == [resting["orderId"], 4]
    venue.exchange.set_mark_price("BTCUSDT", "62900.0")
    filled = venue.signed(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": str(resting["orderId"])}
    ).json()
    assert (filled["status"], filled["avgPrice"]) == ("FILLED", "63000.0")  # a maker fills at its price
    assert venue.exchange.position("BTCUSDT").amount == Decimal("0.030")


def test_ioc_partial_fill_with_limited_liquidity(venue: Venue) -> None:
    venue.exchange.set_liquidity("BTCUSDT", "0.004")
    ioc = venue.order(side="BUY", type="LIMIT", timeInForce="IOC", quantity="0.010", price="64100.0").json()
    assert (ioc["status"], ioc["executedQty"], ioc["origQty"]) == ("EXPIRED", "0.004", "0.010")
    gtc = venue.order(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="64100.0").json()
    assert (gtc["status"], gtc["executedQty"]) == ("PARTIALLY_FILLED", "0.004")
    assert error(
        venue.order(side="BUY", type="LIMIT", timeInForce="FOK", quantity="0.010", price="64100.0")
    ) == (400, -5021)
    venue.exchange.set_liquidity("BTCUSDT", None)
    fok = venue.order(side="BUY", type="LIMIT", timeInForce="FOK", quantity="0.010", price="64100.0").json()
    assert fok["status"] == "FILLED"
    assert venue.exchange.position("BTCUSDT").amount == Decimal("0.018")


def test_positions_average_entry_and_realize_pnl(venue: Venue) -> None:
    exchange = venue.exchange
    venue.order(symbol="TESTUSDT", side="BUY", type="MARKET", quantity="1")
    exchange.set_mark_price("TESTUSDT", "103")
    venue.order(symbol="TESTUSDT", side="BUY", type="MARKET", quantity="2")
    assert exchange.position("TESTUSDT").entry_price == Decimal("102")
    exchange.set_mark_price("TESTUSDT", "110")
    venue.order(symbol="TESTUSDT", side="SELL", type="MARKET", quantity="4")  # flip to short 1 @ 110
    position = exchange.position("TESTUSDT")
    assert (position.amount, position.entry_price) == (Decimal("-1"), Decimal("110"))
    assert exchange.wallet_balance == Decimal("10024")  # (110 - 102) * 3
    account = venue.signed("GET", "/fapi/v2/account").json()
    assert account["totalWalletBalance"] == "10024"
    row = next(p for p in account["positions"] if p["symbol"] == "TESTUSDT")
    assert (row["positionAmt"], row["entryPrice"], row["leverage"]) == ("-1", "110", "20")


def test_reduce_only(venue: Venue) -> None:
    assert error(venue.order(side="SELL", type="MARKET", quantity="0.010", reduceOnly="true")) == (400, -2022)
    venue.order(side="BUY", type="MARKET", quantity="0.010")
    assert error(venue.order(side="BUY", type="MARKET", quantity="0.001", reduceOnly="true")) == (400, -2022)
    assert error(venue.order(side="SELL", type="MARKET", quantity="0.011", reduceOnly="true")) == (400, -2022)
    small = venue.order(side="SELL", type="MARKET", quantity="0.001", reduceOnly="true").json()
    assert (small["status"], small["reduceOnly"]) == ("FILLED", True)  # notional 64 >= 10 anyway
    assert error(venue.order(side="SELL", type="MARKET", quantity="0.010", reduceOnly="maybe")) == (
        400,
        -1130,
    )


def test_reduce_only_waives_min_notional(venue: Venue) -> None:
    venue.order(symbol="TESTUSDT", side="BUY", type="MARKET", quantity="1")
    assert error(venue.order(symbol="TESTUSDT", side="SELL", type="MARKET", quantity="0.010")) == (400, -4164)
    closed = venue.order(symbol="TESTUSDT", side="SELL", type="MARKET", quantity="0.010", reduceOnly="true")
    assert closed.json()["status"] == "FILLED"


def test_client_order_ids(venue: Venue) -> None:
    limit = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010", "price": "60000.0"}
    assert venue.order(newClientOrderId="dup-1", **limit).status_code == 200
    assert error(venue.order(newClientOrderId="dup-1", **limit)) == (400, -4116)
    assert error(venue.order(newClientOrderId="bad id", **limit)) == (400, -4015)
    assert error(venue.order(newClientOrderId="x" * 37, **limit)) == (400, -4015)
    assert venue.order(newClientOrderId="x" * 36, **limit).status_code == 200
    assert venue.order(newClientOrderId=".A:/z0_-", **limit).status_code == 200
    canceled = venue.signed(
        "DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "dup-1"}
    ).json()
    assert canceled["status"] == "CANCELED"
    assert venue.order(newClientOrderId="dup-1", **limit).status_code == 200  # unique among OPEN orders only
    assert error(venue.signed("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": "1"})) == (
        400,
        -2011,
    )
    assert venue.order(**limit).json()["clientOrderId"] == "paper_5"


def test_cancel_all_open_orders(venue: Venue) -> None:
    for price in ("60000.0", "61000.0"):
        venue.order(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=price)
    done = venue.signed("DELETE", "/fapi/v1/allOpenOrders", {"symbol": "BTCUSDT"}).json()
    assert done == {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert venue.signed("GET", "/fapi/v1/openOrders").json() == []
    assert {o.status for o in venue.exchange.orders} == {"CANCELED"}
    assert error(venue.signed("DELETE", "/fapi/v1/allOpenOrders")) == (400, -1102)


def test_hedge_mode() -> None:
    venue = in_process(make_exchange(dual_side_position=True))
    assert venue.signed("GET", "/fapi/v1/positionSide/dual").json() == {"dualSidePosition": True}
    assert error(venue.order(side="BUY", type="MARKET", quantity="0.010")) == (400, -4061)
    assert error(venue.order(side="BUY", type="MARKET", quantity="0.010", positionSide="BOTH")) == (
        400,
        -4061,
    )
    assert error(venue.order(side="BUY", type="MARKET", quantity="0.010", positionSide="UP")) == (400, -4060)
    sent_reduce_only = venue.order(
        side="BUY", type="MARKET", quantity="0.010", positionSide="LONG", reduceOnly="false"
    )
    assert error(sent_reduce_only) == (400, -1106)
    assert sent_reduce_only.json()["msg"] == "Parameter 'reduceonly' sent when not required."
    assert venue.order(side="BUY", type="MARKET", quantity="0.010", positionSide="LONG").status_code == 200
    assert venue.order(side="SELL", type="MARKET", quantity="0.004", positionSide="SHORT").status_code == 200
    assert error(venue.order(side="SELL", type="MARKET", quantity="0.011", positionSide="LONG")) == (
        400,
        -2022,
    )
    closed = venue.order(side="SELL", type="MARKET", quantity="0.002", positionSide="LONG").json()
    assert (closed["positionSide"], closed["status"]) == ("LONG", "FILLED")
    rows = venue.signed("GET", "/fapi/v2/positionRisk", {"symbol": "BTCUSDT"}).json()
    assert [(r["positionSide"], r["positionAmt"]) for r in rows] == [("LONG", "0.008"), ("SHORT", "-0.004")]
    # A resting close never outlives its position (no flip of the LONG row).
    take_profit = venue.order(
        side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.008", price="65000.0", positionSide="LONG"
    )
    venue.order(side="SELL", type="MARKET", quantity="0.008", positionSide="LONG")
    venue.exchange.set_mark_price("BTCUSDT", "65000.0")
    assert venue.exchange.position("BTCUSDT", "LONG").amount == 0
    assert venue.query(take_profit.json()["clientOrderId"]).json()["status"] == "EXPIRED"
    one_way = in_process(make_exchange())
    assert error(one_way.order(side="BUY", type="MARKET", quantity="0.010", positionSide="LONG")) == (
        400,
        -4061,
    )


def test_margin_is_checked_against_available_balance() -> None:
    venue = in_process(make_exchange(initial_balance="100", leverage={"TESTUSDT": 10}))
    resting = {"symbol": "TESTUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "95"}
    too_big = venue.order(**{**resting, "price": "100", "quantity": "10.005"})  # 1000.5 / 10 > 100
    assert error(too_big) == (400, -2019) and too_big.json()["msg"] == "Margin is insufficient."
    assert venue.order(quantity="6", **resting).status_code == 200  # holds 57 of 100
    assert error(venue.order(symbol="TESTUSDT", side="BUY", type="MARKET", quantity="5")) == (400, -2019)
    assert venue.order(symbol="TESTUSDT", side="BUY", type="MARKET", quantity="4.3").status_code == 200
    account = venue.signed("GET", "/fapi/v2/account").json()
    margins = (
        account["totalOpenOrderInitialMargin"],
        account["totalPositionInitialMargin"],
        account["availableBalance"],
    )
    assert [Decimal(m) for m in margins] == [57, 43, 0]
    # Closing needs no margin.
    assert venue.order(symbol="TESTUSDT", side="SELL", type="MARKET", quantity="4.3").status_code == 200


def test_leverage_brackets_and_account(venue: Venue) -> None:
    assert venue.signed("GET", "/fapi/v1/leverageBracket").json() == BRACKETS
    single = venue.signed("GET", "/fapi/v1/leverageBracket", {"symbol": "BTCUSDT"}).json()
    assert single["symbol"] == "BTCUSDT" and single["brackets"][1]["cum"] == 50.0
    assert venue.signed("GET", "/fapi/v1/leverageBracket", {"symbol": "TESTUSDT"}).json()["brackets"] == []
    venue.order(side="BUY", type="MARKET", quantity="1")
    account = venue.signed("GET", "/fapi/v2/account").json()
    row = next(p for p in account["positions"] if p["symbol"] == "BTCUSDT")
    assert Decimal(row["maintMargin"]) == 270  # 64000 * 0.005 - 50
    assert Decimal(row["positionInitialMargin"]) == 3200  # 64000 / 20
    assert Decimal(account["availableBalance"]) == 6800


# -- persistence --------------------------------------------------------------------------------


def test_state_round_trip(tmp_path: Path) -> None:
    venue = in_process(make_exchange())
    venue.order(side="BUY", type="MARKET", quantity="0.010", newClientOrderId="keep-1")
    venue.order(
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.020",
        price="60000.0",
        newClientOrderId="rest-1",
    )
    path = tmp_path / "paper.json"
    venue.exchange.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["paper.json"]  # the temp file was renamed away
    document = json.loads(path.read_text())
    assert document["account"]["wallet_balance"] == "10000"
    assert document["account"]["orders"][1]["orig_qty"] == "0.020"
    assert "paper-secret" not in path.read_text()

    again = in_process(
        PaperExchange.load(path, credentials=[ApiCredential(API_KEY, hmac_secret=SECRET)], clock=lambda: T0)
    )
    assert again.query("keep-1").json() == venue.query("keep-1").json()
    assert error(
        again.order(
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.020",
            price="60000.0",
            newClientOrderId="rest-1",
        )
    ) == (400, -4116)
    assert again.order(side="SELL", type="MARKET", quantity="0.010").json()["orderId"] == 3
    assert again.exchange.position("BTCUSDT").amount == 0
    again.exchange.save(path)
    assert PaperExchange.load(path).orders == again.exchange.orders


# -- faults -------------------------------------------------------------------------------------


def place(venue: Venue, client_order_id: str = "f-1") -> httpx.Response:
    return venue.order(side="BUY", type="MARKET", quantity="0.010", newClientOrderId=client_order_id)


def orders_named(venue: Venue, client_order_id: str = "f-1") -> int:
    return sum(o.client_order_id == client_order_id for o in venue.exchange.orders)


@pytest.mark.parametrize(
    ("kind", "status", "executed"),
    [
        (FaultKind.HTTP_500, 500, False),
        (FaultKind.HTTP_502, 502, False),
        (FaultKind.HTTP_503_UNKNOWN, 503, True),
        (FaultKind.HTTP_503_UNAVAILABLE, 503, False),
        (FaultKind.BACKEND_TIMEOUT, 408, True),
        (FaultKind.RATE_LIMIT_429, 429, False),
        (FaultKind.IP_BAN_418, 418, False),
        (FaultKind.MALFORMED_BODY, 200, True),
    ],
)
def test_http_faults(any_venue: Venue, kind: FaultKind, status: int, executed: bool) -> None:
    any_venue.exchange.inject(kind)
    response = place(any_venue)
    assert response.status_code == status
    assert orders_named(any_venue) == (1 if executed else 0)
    if kind is FaultKind.HTTP_503_UNKNOWN:
        assert response.json() == {
            "timestamp": T0,
            "path": "/fapi/v1/order",
            "msg": "Unknown error, please check your request or try again later.",
        }
    if kind in (FaultKind.RATE_LIMIT_429, FaultKind.IP_BAN_418):
        assert response.json()["code"] == -1003 and "retry-after" in response.headers
    if kind is FaultKind.HTTP_502:
        assert response.text.startswith("<html>")
    if kind is FaultKind.MALFORMED_BODY:
        with pytest.raises(json.JSONDecodeError):
            response.json()
    # The fault is spent: the next request is answered normally, and a retry with the same id is
    # a duplicate only while that order is open (a filled MARKET order is not).
    assert any_venue.exchange.pending_faults() == ()
    assert place(any_venue).status_code == 200


def test_read_timeout_in_process_executes_once(venue: Venue) -> None:
    venue.exchange.inject("read_timeout")
    with pytest.raises(httpx.ReadTimeout):
        place(venue)
    assert orders_named(venue) == 1
    assert venue.query("f-1").json()["status"] == "FILLED"
    venue.exchange.inject(Fault(FaultKind.READ_TIMEOUT, executes=False))
    with pytest.raises(httpx.ReadTimeout):
        place(venue, "f-2")
    assert orders_named(venue, "f-2") == 0


def test_connection_drop_in_process_executes_once(venue: Venue) -> None:
    venue.exchange.inject("connection_drop")
    with pytest.raises(httpx.RemoteProtocolError):
        place(venue)
    assert orders_named(venue) == 1


def test_latency_in_process_sleeps_or_times_out() -> None:
    exchange = make_exchange()
    slept: list[float] = []
    client = httpx.Client(
        transport=PaperTransport(exchange, sleep=slept.append),
        base_url=BASE_URL,
        timeout=httpx.Timeout(5, read=1.0),
    )
    venue = Venue(exchange, client)
    exchange.inject("latency", delay_ms=250)
    assert place(venue).status_code == 200 and slept == [0.25]
    exchange.inject("latency", delay_ms=1500)
    with pytest.raises(httpx.ReadTimeout):
        place(venue, "f-2")
    assert slept == [0.25, 1.0] and orders_named(venue, "f-2") == 1


def test_fault_selection_and_counts(venue: Venue) -> None:
    exchange = venue.exchange
    exchange.inject("http_500", count=2)
    assert venue.client.get("/fapi/v1/time").status_code == 200  # public: not a trade request
    assert venue.signed("GET", "/fapi/v2/account").status_code == 200  # signed, but not a trade
    assert place(venue).status_code == 500 and place(venue).status_code == 500
    assert place(venue).status_code == 200
    exchange.inject(Fault(FaultKind.HTTP_503_UNKNOWN, match="GET /fapi/v1/order"))
    assert venue.query("f-1").status_code == 503
    exchange.inject(Fault(FaultKind.HTTP_500, executes=True))
    assert place(venue, "f-9").status_code == 500 and orders_named(venue, "f-9") == 1
    exchange.inject("rate_limit_429", match="any")
    exchange.clear_faults()
    assert exchange.pending_faults() == ()
    with pytest.raises(ValueError):
        Fault(FaultKind.LATENCY, executes=False)


# -- over a real socket -------------------------------------------------------------------------


def test_loopback_read_timeout_executes_once() -> None:
    exchange = make_exchange()
    with PaperServer(exchange) as server:
        with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(5, read=0.3)) as client:
            venue = Venue(exchange, client)
            exchange.inject("read_timeout", delay_ms=5000)
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                place(venue)
            assert time.monotonic() - started < 2
            assert orders_named(venue) == 1
            assert venue.query("f-1").json()["status"] == "FILLED"
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3  # the stalled request ended when the client left


def test_loopback_connection_drop_executes_once() -> None:
    exchange = make_exchange()
    with (
        PaperServer(exchange, log_level="critical") as server,
        httpx.Client(base_url=server.base_url, timeout=5) as client,
    ):
        venue = Venue(exchange, client)
        exchange.inject("connection_drop")
        with pytest.raises(httpx.RemoteProtocolError):
            place(venue)
        assert orders_named(venue) == 1
        assert venue.query("f-1").status_code == 200  # the client reconnects


def test_loopback_latency() -> None:
    exchange = make_exchange()
    with PaperServer(exchange) as server, httpx.Client(base_url=server.base_url, timeout=5) as client:
        exchange.inject("latency", delay_ms=150)
        started = time.monotonic()
        assert place(Venue(exchange, client)).status_code == 200
        assert time.monotonic() - started >= 0.15


def test_serve_refuses_non_loopback_hosts() -> None:
    from exchange.paper import serve

    with pytest.raises(ValueError, match="loopback"):
        serve(make_exchange(), host="0.0.0.0", port=1)


def test_max_num_orders_limits_open_orders_per_symbol() -> None:
    """MAX_NUM_ORDERS (facts file: open orders per symbol per account) -> -2025 for the order past it;
    a filled order or another symbol's does not count, and a cancel makes room again."""
    info = json.loads(json.dumps(EXCHANGE_INFO))
    for f in info["symbols"][0]["filters"]:
        if f["filterType"] == "MAX_NUM_ORDERS":
            f["limit"] = 2
    venue = in_process(make_exchange(exchange_info=info))
    with venue.client:
        resting = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010"}
        assert venue.order(newClientOrderId="r-1", price="60000.0", **resting).status_code == 200
        assert venue.order(side="BUY", type="MARKET", quantity="0.010").status_code == 200  # fills: not open
        assert venue.order(newClientOrderId="r-2", price="60100.0", **resting).status_code == 200
        assert error(venue.order(newClientOrderId="r-3", price="60200.0", **resting)) == (400, -2025)
        assert venue.order(newClientOrderId="r-3", price="60200.0", **resting).json()["msg"] == "Reach max open order limit."
        assert len([o for o in venue.exchange.orders if o.status == "NEW"]) == 2
        venue.signed("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "r-1"})
        assert venue.order(newClientOrderId="r-3", price="60200.0", **resting).status_code == 200


def test_query_order_forgets_old_unfilled_cancels_and_every_order_past_90_days() -> None:
    """GET /fapi/v1/order (facts file §2): -2013 for a CANCELED or EXPIRED order with no fill created more
    than 3 days ago, and for any order created more than 90 days ago."""
    now = {"ms": T0}
    venue = in_process(make_exchange(clock=lambda: now["ms"]))
    day = 24 * 3600 * 1000
    with venue.client:
        resting = {"side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010"}
        assert venue.order(newClientOrderId="c-1", price="60000.0", **resting).status_code == 200
        venue.signed("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "c-1"})
        assert venue.order(newClientOrderId="f-1", side="BUY", type="MARKET", quantity="0.010").status_code == 200
        assert venue.order(newClientOrderId="o-1", price="60000.0", **resting).status_code == 200

        def at(ms: int, cid: str) -> Any:
            now["ms"] = ms
            reply = venue.signed("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": cid}, timestamp=ms)
            return reply.json()["status"] if reply.status_code == 200 else error(reply)

        for cid in ("c-1", "f-1", "o-1"):
            assert at(T0 + 3 * day, cid) in ("CANCELED", "FILLED", "NEW")  # 3 days exactly: still there
        assert at(T0 + 3 * day + 1, "c-1") == (400, -2013)  # cancelled, never filled, older than 3 days
        assert at(T0 + 3 * day + 1, "f-1") == "FILLED" and at(T0 + 3 * day + 1, "o-1") == "NEW"
        assert at(T0 + 90 * day, "f-1") == "FILLED"
        assert at(T0 + 90 * day + 1, "f-1") == (400, -2013) and at(T0 + 90 * day + 1, "o-1") == (400, -2013)


def test_a_position_above_the_brackets_cap_at_its_leverage_is_refused_2027() -> None:
    """Facts file §4: -2027 MAX_LEVERAGE_RATIO, "position too big for current leverage" (each bracket
    caps the notional allowed at a leverage). At 125x BTCUSDT's cap is 50,000: 6 BTC at 9,000 was
    filled and reported with maxNotionalValue 50000 (review 2026-11-28)."""
    venue = in_process(make_exchange(initial_balance="100000", leverage={"BTCUSDT": 125}))
    with venue.client:
        market = {"type": "MARKET", "side": "BUY"}
        assert error(venue.order(quantity="1", **market)) == (400, -2027)  # 64,000 > 50,000
        assert venue.order(quantity="0.5", newClientOrderId="a", **market).status_code == 200  # 32,000
        refused = venue.order(quantity="0.5", **market)  # 64,000 in all
        assert error(refused) == (400, -2027)
        assert refused.json()["msg"] == "Exceeded the maximum allowable position at current leverage."
        assert venue.order(quantity="0.2", side="SELL", type="MARKET").status_code == 200  # reducing is never refused so
        assert venue.order(quantity="0.9", side="SELL", type="MARKET").status_code == 200  # a flip to -0.6: 38,400
        assert error(venue.order(quantity="0.3", side="SELL", type="MARKET")) == (400, -2027)  # -0.9: 57,600
    venue = in_process(make_exchange(initial_balance="100000", leverage={"BTCUSDT": 100}))
    with venue.client:
        assert venue.order(quantity="1", type="MARKET", side="BUY").status_code == 200  # 600,000 at 100x


def test_responses_carry_binances_rate_limit_headers() -> None:
    """Facts file §3: ``X-MBX-USED-WEIGHT-(n)(unit)`` (per-IP weight) on responses and
    ``X-MBX-ORDER-COUNT-(n)(unit)`` on orders; weights per endpoint from §2 (a new order weighs 0 and
    counts one order; openOrders without a symbol 40). The windows are fixed: a new minute starts at 0.
    The paper exchange sent only content-type (review 2026-11-28)."""
    now = {"ms": T0 - T0 % 60_000 + 1_000}
    venue = in_process(make_exchange(clock=lambda: now["ms"]))
    with venue.client:
        t = now["ms"]
        first = venue.signed("GET", "/fapi/v2/account", timestamp=t)
        assert first.headers["x-mbx-used-weight-1m"] == "5"
        placed = venue.signed("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}, timestamp=t)
        assert placed.status_code == 200
        assert (placed.headers["x-mbx-used-weight-1m"], placed.headers["x-mbx-order-count-10s"], placed.headers["x-mbx-order-count-1m"]) == ("5", "1", "1")
        refused = venue.signed("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "-1"}, timestamp=t)
        assert refused.status_code == 400 and refused.headers["x-mbx-order-count-1m"] == "1"  # a refused order counts none
        assert venue.signed("GET", "/fapi/v1/openOrders", timestamp=t).headers["x-mbx-used-weight-1m"] == "45"
        assert venue.signed("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}, timestamp=t).headers["x-mbx-used-weight-1m"] == "46"
        now["ms"] += 10_000  # a new 10-second window, the same minute
        again = venue.signed("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}, timestamp=now["ms"])
        assert (again.headers["x-mbx-order-count-10s"], again.headers["x-mbx-order-count-1m"]) == ("1", "2")
        now["ms"] += 60_000  # a new minute
        assert venue.signed("GET", "/fapi/v1/time", timestamp=now["ms"]).headers["x-mbx-used-weight-1m"] == "1"


def test_open_order_answers_for_an_open_order_only(venue: Venue) -> None:
    """Facts file §2: ``GET /fapi/v1/openOrder`` returns "Order does not exist" if the order is already
    filled or cancelled. The paper exchange had no such route (404 -5000; review 2026-11-28)."""
    resting = venue.order(side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="63000.0", newClientOrderId="rest-1").json()
    one = venue.signed("GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT", "origClientOrderId": "rest-1"})
    assert one.status_code == 200 and one.json() == venue.query("rest-1").json() and one.json()["status"] == "NEW"
    assert venue.signed("GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT", "orderId": str(resting["orderId"])}).json() == one.json()
    venue.order(side="BUY", type="MARKET", quantity="0.002", newClientOrderId="filled-1")
    for client_id in ("filled-1", "never-sent"):
        gone = venue.signed("GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT", "origClientOrderId": client_id})
        assert error(gone) == (400, -2013) and gone.json()["msg"] == "Order does not exist."
    venue.signed("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "rest-1"})
    assert error(venue.signed("GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT", "origClientOrderId": "rest-1"})) == (400, -2013)
    assert error(venue.signed("GET", "/fapi/v1/openOrder", {"symbol": "BTCUSDT"}))[1] == -1102


def test_an_unexpected_error_in_process_is_a_500_not_an_exception_out_of_the_client(monkeypatch, caplog) -> None:
    """Review: an exception inside the paper exchange (a ValueError once, from a 5,000-digit orderId) came
    out of BinanceClient.send_signed in-process, where over HTTP uvicorn answers 500. Now in-process is
    the same: a 500, which Rule 6 reads as an unknown status, and the traceback logged."""
    from exchange import BinanceClient, Credentials

    exchange = make_exchange()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("boom")

    monkeypatch.setattr(exchange, "handle", broken)
    client = BinanceClient(BASE_URL, Credentials.hmac(API_KEY, SECRET), transport=PaperTransport(exchange),
                           connect_timeout_ms=1000, read_timeout_ms=1000)
    reply = client.send_signed("POST", "/fapi/v1/order", [("symbol", "BTCUSDT"), ("recvWindow", "5000"), ("timestamp", str(T0))])
    assert (reply.outcome, reply.http_status, reply.body) == ("response", 500, "Internal Server Error")
    assert "paper exchange: unexpected error on POST /fapi/v1/order" in caplog.text
