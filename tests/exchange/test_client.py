"""BinanceClient: exact signed query strings, one request per call, failures as replies, no leaks;
the read-only helpers against the paper exchange (in-process and over a loopback socket)."""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from exchange import (
    BASE_URLS,
    ApiCredential,
    BinanceClient,
    Credentials,
    CredentialsError,
    ExchangeReadError,
    ExchangeReply,
    PaperExchange,
    PaperServer,
    PaperTransport,
    fetch_constraints_raw,
    fetch_context,
    fetch_server_time,
    hmac_signature,
)
from exchange.signing import verify_ed25519

# [FUT general-info "Signed Endpoint Examples for POST /fapi/v1/order - HMAC Keys"], example 1.
DOC_API_KEY = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83"
DOC_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
DOC_PARAMS = [
    ("symbol", "BTCUSDT"),
    ("side", "BUY"),
    ("type", "LIMIT"),
    ("quantity", "1"),
    ("price", "9000"),
    ("timeInForce", "GTC"),
    ("recvWindow", "5000"),
    ("timestamp", "1591702613943"),
]
DOC_SIGNATURE = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"

# Distinctive strings that must never show up in any text the client produces.
API_KEY = "KEY-leakcheck-4b1d9e0a77"
SECRET = "SECRET-leakcheck-c0ffee5eed"
T0 = 1_764_028_800_000
SIGNED = [("recvWindow", "5000"), ("timestamp", str(T0))]
HEALTH = {"api_latency_ms": 85, "order_rejection_rate": "0"}


def ed25519_pem() -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private, public


class Recorder:
    """An httpx.MockTransport that records every request and answers with ``handler``."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler or (lambda request: httpx.Response(200, json={}))
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._handler(request)


def mock_client(recorder: Recorder, credentials: Credentials | None = None) -> BinanceClient:
    creds = credentials if credentials is not None else Credentials.hmac(API_KEY, SECRET)
    return BinanceClient(
        BASE_URLS["binance"],
        creds,
        transport=recorder.transport,
        connect_timeout_ms=500,
        read_timeout_ms=2000,
    )


# --- signing and the exact request --------------------------------------------------------------


def test_hmac_signs_the_exact_query_string_sent() -> None:
    recorder = Recorder()
    with mock_client(recorder, Credentials.hmac(DOC_API_KEY, DOC_SECRET)) as client:
        reply = client.send_signed("POST", "/fapi/v1/order", DOC_PARAMS)
    [request] = recorder.requests
    query = request.url.query.decode("ascii")
    payload, _, signature = query.rpartition("&signature=")
    assert payload == (
        "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
        "&recvWindow=5000&timestamp=1591702613943"
    )
    assert signature == DOC_SIGNATURE == hmac_signature(DOC_SECRET, payload)
    assert (
        request.method == "POST"
        and request.url.host == "fapi.binance.com"
        and request.url.path == "/fapi/v1/order"
    )
    assert request.read() == b""
    assert request.headers["X-MBX-APIKEY"] == DOC_API_KEY
    assert (
        reply.outcome == "response"
        and reply.http_status == 200
        and reply.body == "{}"
        and reply.error is None
    )
    assert reply.request == {
        "method": "POST",
        "path": "/fapi/v1/order",
        "params": [list(p) for p in DOC_PARAMS],
    }


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
def test_every_method_sends_everything_in_the_query(method: str) -> None:
    recorder = Recorder()
    with mock_client(recorder) as client:
        client.send_signed(method.lower(), "/fapi/v1/order", [("symbol", "BTCUSDT"), *SIGNED])
    [request] = recorder.requests
    assert request.method == method and request.read() == b""
    payload, _, signature = request.url.query.decode().rpartition("&signature=")
    assert payload == f"symbol=BTCUSDT&recvWindow=5000&timestamp={T0}"
    assert signature == hmac_signature(SECRET, payload)


def test_ed25519_signature_is_percent_encoded_and_verifies() -> None:
    private, public = ed25519_pem()
    recorder = Recorder()
    with mock_client(recorder, Credentials.ed25519(API_KEY, private)) as client:
        client.send_signed("POST", "/fapi/v1/order", [("symbol", "BTCUSDT"), ("quantity", "0.001"), *SIGNED])
    query = recorder.requests[0].url.query.decode("ascii")
    payload, _, sent = query.rpartition("&signature=")
    assert "&" not in sent and not set(sent) & set("+/=")  # an Ed25519 base64 signature always ends in "=="
    assert sent.endswith("%3D%3D")
    signature = unquote_plus(sent)
    assert len(base64.b64decode(signature)) == 64
    assert verify_ed25519(public, payload, signature)


def test_decimal_text_is_sent_verbatim_and_numbers_are_refused() -> None:
    recorder = Recorder()
    params = [("symbol", "BTCUSDT"), ("quantity", "0.00001000"), ("price", "64000.10"), *SIGNED]
    with mock_client(recorder) as client:
        client.send_signed("POST", "/fapi/v1/order", params)
        query = recorder.requests[0].url.query.decode()
        assert "quantity=0.00001000&price=64000.10&" in query and "e-" not in query.lower()
        for bad in (Decimal("0.00001"), 0.00001, 1):
            with pytest.raises(TypeError, match="never numbers"):
                client.send_signed("POST", "/fapi/v1/order", [("quantity", bad), *SIGNED])  # type: ignore[list-item]
    assert len(recorder.requests) == 1


def test_percent_encoding_is_part_of_the_signed_text() -> None:
    recorder = Recorder()
    with mock_client(recorder) as client:
        client.send_signed("POST", "/fapi/v1/order", [("newClientOrderId", "a:b/c.d"), *SIGNED])
    payload, _, signature = recorder.requests[0].url.query.decode().rpartition("&signature=")
    assert payload.startswith("newClientOrderId=a%3Ab%2Fc.d&")
    assert signature == hmac_signature(SECRET, payload)


def test_signed_request_preconditions_send_nothing() -> None:
    recorder = Recorder()
    with (
        BinanceClient(
            BASE_URLS["binance"], None, transport=recorder.transport, connect_timeout_ms=1, read_timeout_ms=1
        ) as client,
        pytest.raises(CredentialsError, match="no API credentials"),
    ):
        client.get_signed("/fapi/v2/account", SIGNED)
    with mock_client(recorder) as client:
        with pytest.raises(ValueError, match="recvWindow"):
            client.get_signed("/fapi/v2/account", [("timestamp", str(T0))])
        with pytest.raises(ValueError, match="signature"):
            client.get_signed("/fapi/v2/account", [*SIGNED, ("signature", "x")])
        with pytest.raises(ValueError, match="path"):
            client.get_signed("/fapi/v2/account?x=1", SIGNED)
    assert recorder.requests == []


def test_get_public_is_unsigned_and_keyless() -> None:
    recorder = Recorder(lambda request: httpx.Response(200, text='{"markPrice":"64000.10","x":0.1}'))
    with mock_client(recorder) as client:
        reply = client.get_public("/fapi/v1/premiumIndex", [("symbol", "BTCUSDT")])
    [request] = recorder.requests
    assert request.url.query == b"symbol=BTCUSDT" and "x-mbx-apikey" not in request.headers
    assert reply.body == '{"markPrice":"64000.10","x":0.1}'
    assert reply.json() == {"markPrice": "64000.10", "x": Decimal("0.1")}
    assert isinstance(reply.json()["x"], Decimal)


def test_reply_json_is_none_for_non_json() -> None:
    request = {"method": "GET", "path": "/", "params": []}
    assert ExchangeReply("response", 502, "<html>502</html>", None, request).json() is None
    assert ExchangeReply("response", 200, '{"orderId":', None, request).json() is None
    assert ExchangeReply("response", 200, '{"x": NaN}', None, request).json() is None
    reply = ExchangeReply("timeout", None, None, "ReadTimeout: x", request)
    assert reply.json() is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.outcome = "response"  # type: ignore[misc]


# --- one request, failures as outcomes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "outcome"),
    [
        (httpx.ConnectError, "connect_error"),
        (httpx.ConnectTimeout, "connect_error"),
        (httpx.PoolTimeout, "connect_error"),
        (httpx.ReadTimeout, "timeout"),
        (httpx.WriteTimeout, "timeout"),
        (httpx.RemoteProtocolError, "no_response"),
        (httpx.ReadError, "no_response"),
        (httpx.WriteError, "no_response"),
    ],
)
def test_httpx_failures_become_outcomes_after_one_attempt(
    exception: type[httpx.RequestError], outcome: str
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        # A message that drags the whole URL (signature included) and the key header along.
        raise exception(f"boom {request.url} {request.headers.get('X-MBX-APIKEY')}", request=request)

    recorder = Recorder(fail)
    with mock_client(recorder) as client:
        reply = client.send_signed("POST", "/fapi/v1/order", [("symbol", "BTCUSDT"), *SIGNED])
    assert len(recorder.requests) == 1
    assert reply.outcome == outcome and reply.http_status is None and reply.body is None
    assert reply.error is not None and reply.error.startswith(f"{exception.__name__}: boom ")
    signature = recorder.requests[0].url.params["signature"]
    for secret in (API_KEY, SECRET, signature):
        assert secret not in reply.error and secret not in json.dumps(reply.request)
    assert reply.request["params"] == [["symbol", "BTCUSDT"], *map(list, SIGNED)]


@pytest.mark.parametrize("status", [500, 502, 503, 307, 429])
def test_error_statuses_are_responses_not_retried_nor_followed(status: int) -> None:
    body = '{"code":-1000,"msg":"An unknown error occured while processing the request."}'
    recorder = Recorder(
        lambda request: httpx.Response(status, text=body, headers={"Location": "https://example.invalid/"})
    )
    with mock_client(recorder) as client:
        reply = client.send_signed("POST", "/fapi/v1/order", SIGNED)
    assert len(recorder.requests) == 1
    assert (reply.outcome, reply.http_status, reply.body, reply.error) == ("response", status, body, None)


def test_the_request_on_the_wire_is_exactly_what_the_audit_log_records() -> None:
    """Issue 6 sends through the transport, not httpx.Client: the same headers as before, the
    timeouts with the request, a base URL's path kept, and no cookie jar: a cookie the server set is
    never sent back with a later signed request (it is in no signature and in no audit record)."""
    recorder = Recorder(lambda request: httpx.Response(200, text="{}", headers={"Set-Cookie": "AWSALB=sticky; Path=/"}))
    client = BinanceClient("https://fapi.example/prefix/", Credentials.hmac(API_KEY, SECRET), transport=recorder.transport,
                           connect_timeout_ms=500, read_timeout_ms=2000)
    with client:
        for method in ("POST", "GET", "DELETE"):
            assert client.send_signed(method, "/fapi/v1/order", [("symbol", "BTCUSDT"), *SIGNED]).http_status == 200
        client.get_public("/fapi/v1/time")
    for request in recorder.requests:
        names = [name.decode() for name, _ in request.headers.raw]
        expected = ["Host", *(["Content-Length"] if request.method == "POST" else []), "Accept", "Accept-Encoding",
                    "Connection", "User-Agent", *(["X-MBX-APIKEY"] if "signature" in request.url.params else [])]
        assert names == expected, names
        assert request.headers["Host"] == "fapi.example" and "cookie" not in request.headers
        assert request.url.path.startswith("/prefix/fapi/v1/")
        assert request.extensions["timeout"] == {"connect": 0.5, "read": 2.0, "write": 2.0, "pool": 0.5}
    with pytest.raises(RuntimeError, match="closed; nothing was sent"):
        client.send_signed("POST", "/fapi/v1/order", SIGNED)
    assert len(recorder.requests) == 4


def test_a_compressed_body_is_decoded_and_a_body_cut_short_is_no_response() -> None:
    import gzip

    body = b'{"orderId":1,"status":"NEW"}'
    recorder = Recorder(lambda request: httpx.Response(200, content=gzip.compress(body), headers={"Content-Encoding": "gzip"}))
    with mock_client(recorder) as client:
        assert client.send_signed("POST", "/fapi/v1/order", SIGNED).body == body.decode()

    class CutShort(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b'{"orderId":'
            raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")

    recorder = Recorder(lambda request: httpx.Response(200, stream=CutShort()))
    with mock_client(recorder) as client:
        reply = client.send_signed("POST", "/fapi/v1/order", SIGNED)
    assert (reply.outcome, reply.http_status, reply.body) == ("no_response", None, None)  # may have executed
    assert reply.error is not None and reply.error.startswith("RemoteProtocolError: peer closed")


def test_default_transport_timeouts_and_a_refused_loopback_connection() -> None:
    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with BinanceClient(
        f"http://127.0.0.1:{port}", None, connect_timeout_ms=1500, read_timeout_ms=2500
    ) as client:
        assert client.timeout == httpx.Timeout(connect=1.5, read=2.5, write=2.5, pool=1.5)
        transport = client._transport
        assert isinstance(transport, httpx.HTTPTransport) and transport._pool._retries == 0
        reply = client.get_public("/fapi/v1/time")
    assert (
        reply.outcome == "connect_error"
        and reply.error is not None
        and reply.error.startswith("ConnectError: ")
    )


def test_base_url_checks() -> None:
    timeouts = {"connect_timeout_ms": 100, "read_timeout_ms": 100}
    with pytest.raises(ValueError, match="plain http"):
        BinanceClient("http://fapi.binance.com", None, **timeouts)
    with pytest.raises(ValueError, match="http"):
        BinanceClient("ftp://127.0.0.1", None, **timeouts)
    with pytest.raises(ValueError, match="read_timeout_ms"):
        BinanceClient(BASE_URLS["binance"], None, connect_timeout_ms=100, read_timeout_ms=0)
    assert BASE_URLS == {
        "binance": "https://fapi.binance.com",
        "binance-testnet": "https://testnet.binancefuture.com",
    }
    BinanceClient("http://localhost:1/", None, **timeouts).close()
    BinanceClient("http://[::1]:1", None, **timeouts).close()
    # a password in the URL would show in reprs and errors: refused, and not echoed
    with pytest.raises(ValueError, match="user name or password") as refused:
        BinanceClient("https://gwuser:gw-secret@fapi.example/gw", None, **timeouts)
    assert "gw-secret" not in str(refused.value)
    # a path httpx would rewrite (its signed request would then be refused at every call): refused at once
    for path in ("/my prefix", "/a/../b", "/a/./b", "//x", "/a%20b", "/a?"):
        with pytest.raises(ValueError, match="plain ASCII segments|query or fragment"):
            BinanceClient("https://fapi.example" + path, None, **timeouts)
    with pytest.raises(ValueError, match="must be ASCII"):
        BinanceClient("https://fapi.example/préfixe", None, **timeouts)
    for path in ("/gw/", "/v1.2/x_y~z-", "/.well-known"):
        assert BinanceClient("https://fapi.example" + path, None, **timeouts).base_url == "https://fapi.example" + path.rstrip("/")


# --- credentials ------------------------------------------------------------------------------


def test_secrets_never_show() -> None:
    hmac_creds = Credentials.hmac(API_KEY, SECRET)
    private, _ = ed25519_pem()
    ed_creds = Credentials.ed25519(API_KEY, private)
    assert repr(hmac_creds) == str(hmac_creds) == "Credentials(api_key='KEY-…', kind='hmac')"
    assert repr(ed_creds) == "Credentials(api_key='KEY-…', kind='ed25519')"
    pem_body = private.decode().splitlines()[1]
    client = BinanceClient(BASE_URLS["binance"], hmac_creds, connect_timeout_ms=100, read_timeout_ms=100)
    texts = [
        repr(hmac_creds),
        repr(ed_creds),
        repr(client),
        str(client),
        repr(hmac_creds.signer),
        repr(ed_creds.signer),
    ]
    client.close()
    for text in texts:
        assert API_KEY not in text and SECRET not in text and pem_body not in text
    with pytest.raises(AttributeError):
        hmac_creds.api_key = "other"  # type: ignore[misc]


def test_credentials_validation_messages_hide_values() -> None:
    with pytest.raises(CredentialsError) as error:
        Credentials.hmac(API_KEY, SECRET + "\n")
    assert SECRET not in str(error.value)
    with pytest.raises(CredentialsError) as error:
        Credentials.hmac(API_KEY + " ", SECRET)
    assert API_KEY not in str(error.value)
    with pytest.raises(CredentialsError, match="PEM"):
        Credentials.ed25519(
            API_KEY, b"-----BEGIN PRIVATE KEY-----\n" + SECRET.encode() + b"\n-----END PRIVATE KEY-----\n"
        )


def test_from_env(tmp_path: Path) -> None:
    private, public = ed25519_pem()
    key_file = tmp_path / "ed25519.pem"
    key_file.write_bytes(private)

    assert Credentials.from_env({}) is None
    assert Credentials.from_env({"EP4_API_KEY": "", "EP4_API_SECRET": ""}) is None
    creds = Credentials.from_env({"EP4_API_KEY": API_KEY, "EP4_API_SECRET": SECRET})
    assert creds is not None and creds.kind == "hmac" and creds.api_key == API_KEY
    assert creds.sign("a=1") == hmac_signature(SECRET, "a=1")
    creds = Credentials.from_env({"EP4_API_KEY": API_KEY, "EP4_ED25519_KEY_FILE": str(key_file)})
    assert creds is not None and creds.kind == "ed25519" and verify_ed25519(public, "a=1", creds.sign("a=1"))


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"EP4_API_KEY": API_KEY, "EP4_API_SECRET": SECRET, "EP4_ED25519_KEY_FILE": "{good}"},
            "both EP4_API_SECRET and EP4_ED25519_KEY_FILE",
        ),
        ({"EP4_API_KEY": API_KEY}, "neither EP4_API_SECRET"),
        ({"EP4_API_SECRET": SECRET}, "EP4_API_SECRET is set but EP4_API_KEY is not"),
        ({"EP4_ED25519_KEY_FILE": "{good}"}, "EP4_ED25519_KEY_FILE is set but EP4_API_KEY is not"),
        (
            {"EP4_API_KEY": API_KEY, "EP4_ED25519_KEY_FILE": "{missing}"},
            "EP4_ED25519_KEY_FILE='{missing}': cannot read",
        ),
        (
            {"EP4_API_KEY": API_KEY, "EP4_ED25519_KEY_FILE": "{garbage}"},
            "EP4_ED25519_KEY_FILE='{garbage}': not a PEM",
        ),
        (
            {"EP4_API_KEY": API_KEY, "EP4_ED25519_KEY_FILE": "{tmp}"},
            "EP4_ED25519_KEY_FILE='{tmp}': cannot read the file",
        ),
        ({"EP4_API_KEY": API_KEY + "\n", "EP4_API_SECRET": SECRET}, "EP4_API_KEY must be printable"),
        ({"EP4_API_KEY": API_KEY, "EP4_API_SECRET": " " + SECRET}, "EP4_API_SECRET must be printable"),
    ],
)
def test_from_env_errors(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    private, _ = ed25519_pem()
    (tmp_path / "good.pem").write_bytes(private)
    (tmp_path / "garbage.pem").write_text(
        f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n"
    )
    paths = {
        "good": tmp_path / "good.pem",
        "garbage": tmp_path / "garbage.pem",
        "missing": tmp_path / "missing.pem",
        "tmp": tmp_path,
    }
    environ = {k: v.format(**paths) for k, v in environ.items()}
    with pytest.raises(CredentialsError) as error:
        Credentials.from_env(environ)
    text = str(error.value)
    assert message.format(**paths) in text
    assert API_KEY not in text and SECRET not in text and error.value.__cause__ is None


# --- read-only helpers against the paper exchange -----------------------------------------------


def symbol_entry(symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol,
        "pair": symbol,
        "contractType": "PERPETUAL",
        "status": "TRADING",
        "baseAsset": symbol.removesuffix("USDT"),
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "1000000", "tickSize": "0.10"},
            {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
            {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
            {"filterType": "MIN_NOTIONAL", "notional": "5"},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierDown": "0.5",
                "multiplierUp": "1.5",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 0,
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [symbol_entry("BTCUSDT"), symbol_entry("ETHUSDT"), symbol_entry("SOLUSDT")],
}
# As the live API serves them: JSON numbers (maintMarginRatio 0.004 must come back exactly).
BRACKETS = [
    {
        "symbol": s,
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": 125,
                "notionalCap": 50000,
                "notionalFloor": 0,
                "maintMarginRatio": 0.004,
                "cum": 0.0,
            }
        ],
    }
    for s in ("BTCUSDT", "ETHUSDT")
]


def paper(*, hedge: bool = False, credential: ApiCredential | None = None) -> PaperExchange:
    return PaperExchange(
        exchange_info=EXCHANGE_INFO,
        mark_prices={"BTCUSDT": "64000.10", "ETHUSDT": "3000.5", "SOLUSDT": "150"},
        credentials=[credential or ApiCredential(API_KEY, hmac_secret=SECRET)],
        initial_balance="10000",
        leverage={"BTCUSDT": 10, "ETHUSDT": 5},
        margin_type={"ETHUSDT": "ISOLATED"},
        dual_side_position=hedge,
        leverage_brackets=BRACKETS,
        clock=lambda: T0,
    )


class RecordingPaperTransport(PaperTransport):
    def __init__(self, exchange: PaperExchange) -> None:
        super().__init__(exchange)
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


def paper_client(
    exchange: PaperExchange, transport: httpx.BaseTransport | None = None, **kw: Any
) -> BinanceClient:
    return BinanceClient(
        BASE_URLS["binance"],
        kw.pop("credentials", Credentials.hmac(API_KEY, SECRET)),
        transport=transport or PaperTransport(exchange),
        connect_timeout_ms=1000,
        read_timeout_ms=2000,
    )


def order(client: BinanceClient, **params: str) -> dict[str, Any]:
    reply = client.send_signed(
        "POST", "/fapi/v1/order", [*params.items(), ("newOrderRespType", "RESULT"), *SIGNED]
    )
    assert reply.http_status == 200, reply.body
    return reply.json()


@pytest.fixture
def one_way() -> Iterator[tuple[PaperExchange, BinanceClient, RecordingPaperTransport]]:
    exchange = paper()
    transport = RecordingPaperTransport(exchange)
    with paper_client(exchange, transport) as client:
        yield exchange, client, transport


def test_fetch_server_time_and_constraints(
    one_way: tuple[PaperExchange, BinanceClient, RecordingPaperTransport],
) -> None:
    _, client, transport = one_way
    assert fetch_server_time(client) == T0
    info, brackets = fetch_constraints_raw(client, timestamp_ms=T0, recv_window_ms=5000)
    assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert info["symbols"][0]["filters"][0]["tickSize"] == "0.10"
    assert [b["symbol"] for b in brackets] == ["BTCUSDT", "ETHUSDT"]
    assert brackets[0]["brackets"][0]["maintMarginRatio"] == Decimal("0.004")
    assert isinstance(brackets[0]["brackets"][0]["maintMarginRatio"], Decimal)
    info, single = fetch_constraints_raw(client, "ETHUSDT", timestamp_ms=T0 + 1, recv_window_ms=3000)
    assert single["symbol"] == "ETHUSDT"  # with symbol: one object, as documented
    last = transport.requests[-1]
    assert (last.method, last.url.path) == ("GET", "/fapi/v1/leverageBracket")
    assert dict(parse_qsl(last.url.query.decode()))["timestamp"] == str(T0 + 1)
    with pytest.raises(ExchangeReadError, match=r"GET /fapi/v1/exchangeInfo: .*'XRPUSDT' is not listed"):
        fetch_constraints_raw(client, "XRPUSDT", timestamp_ms=T0, recv_window_ms=5000)


def test_fetch_context_one_way(one_way: tuple[PaperExchange, BinanceClient, RecordingPaperTransport]) -> None:
    exchange, client, transport = one_way
    order(client, symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.500")
    order(
        client,
        symbol="BTCUSDT",
        side="BUY",
        type="LIMIT",
        timeInForce="GTC",
        quantity="0.010",
        price="60000.00",
        newClientOrderId="rest-1",
    )
    transport.requests.clear()

    context = fetch_context(
        client, symbol="BTCUSDT", account_id="acct-1", timestamp_ms=T0, recv_window_ms=5000, health=HEALTH
    )

    assert context == {
        "exchange": "BINANCE_PERP",
        "symbol": "BTCUSDT",
        "timestamp": T0,
        "account_id": "acct-1",
        "account": {
            "position_mode": "ONE_WAY",
            # 10000 - 0.5 * 3000.5 / 5 (ETHUSDT short) - 0.010 * 60000.00 / 10 (open BUY order)
            "available_margin": "9639.95000",  # exactly as the exchange wrote it
            "positions": [
                # BTCUSDT is flat but listed (leverage and margin mode of the traded symbol);
                # SOLUSDT is flat and left out.
                {
                    "symbol": "BTCUSDT",
                    "quantity": "0",
                    "entry_price": "0",
                    "leverage": 10,
                    "margin_mode": "CROSSED",
                    "position_side": "BOTH",
                },
                {
                    "symbol": "ETHUSDT",
                    "quantity": "-0.500",
                    "entry_price": "3000.5",
                    "leverage": 5,
                    "margin_mode": "ISOLATED",
                    "position_side": "BOTH",
                },
            ],
            "open_orders": [
                {
                    "symbol": "BTCUSDT",
                    "client_order_id": "rest-1",
                    "side": "BUY",
                    "quantity": "0.010",
                    "price": "60000.00",
                    "position_side": "BOTH",
                },
            ],
        },
        "market": {"BTCUSDT": {"mark_price": "64000.10"}},
        "health": HEALTH,
    }
    assert exchange.wallet_balance == Decimal("10000")
    signed = [r for r in transport.requests if r.url.path != "/fapi/v1/premiumIndex"]
    assert [r.url.path for r in signed] == [
        "/fapi/v1/positionSide/dual",
        "/fapi/v2/account",
        "/fapi/v2/positionRisk",
        "/fapi/v1/openOrders",
    ]
    for request in signed:
        params = dict(parse_qsl(request.url.query.decode()))
        assert (params["timestamp"], params["recvWindow"]) == (str(T0), "5000")
    assert_engine_accepts(context)


def test_fetch_context_hedge() -> None:
    exchange = paper(hedge=True)
    with paper_client(exchange) as client:
        order(client, symbol="BTCUSDT", side="SELL", positionSide="SHORT", type="MARKET", quantity="0.002")
        order(
            client,
            symbol="BTCUSDT",
            side="BUY",
            positionSide="LONG",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="60000.0",
            newClientOrderId="dip-1",
        )
        context = fetch_context(
            client, symbol="BTCUSDT", account_id="acct-h", timestamp_ms=T0, recv_window_ms=5000, health=HEALTH
        )
    account = context["account"]
    assert account["position_mode"] == "HEDGE"
    assert account["positions"] == [
        {
            "symbol": "BTCUSDT",
            "quantity": "0",
            "entry_price": "0",
            "leverage": 10,
            "margin_mode": "CROSSED",
            "position_side": "LONG",
        },
        {
            "symbol": "BTCUSDT",
            "quantity": "-0.002",
            "entry_price": "64000.1",
            "leverage": 10,
            "margin_mode": "CROSSED",
            "position_side": "SHORT",
        },
    ]
    assert account["open_orders"] == [
        {
            "symbol": "BTCUSDT",
            "client_order_id": "dip-1",
            "side": "BUY",
            "quantity": "0.001",
            "price": "60000.0",
            "position_side": "LONG",
        }
    ]
    assert_engine_accepts(context)


def assert_engine_accepts(context: dict[str, Any]) -> None:
    """The context validates against the engine's ExecutionContext model (the contract)."""
    from engine.models import ExecutionContext

    ExecutionContext.model_validate(context)


def test_read_errors_name_the_endpoint_and_hide_secrets() -> None:
    exchange = paper()
    context_args: dict[str, Any] = {
        "account_id": "a",
        "timestamp_ms": T0,
        "recv_window_ms": 5000,
        "health": HEALTH,
    }
    errors: list[ExchangeReadError] = []

    def expect(pattern: str, call: Callable[[], object]) -> ExchangeReadError:
        with pytest.raises(ExchangeReadError, match=pattern) as error:
            call()
        errors.append(error.value)
        return error.value

    with paper_client(exchange, credentials=Credentials.hmac(API_KEY, "wrong-" + SECRET)) as client:
        error = expect(
            r"^GET /fapi/v1/positionSide/dual: HTTP 400, "
            r"Binance code -1022: Signature for this request is not valid\.$",
            lambda: fetch_context(client, symbol="BTCUSDT", **context_args),
        )
    assert error.reply is not None and error.reply.http_status == 400

    with paper_client(exchange) as client:
        exchange.inject("read_timeout", match="GET /fapi/v2/account")
        expect(
            r"^GET /fapi/v2/account: timeout \(ReadTimeout: ",
            lambda: fetch_context(client, symbol="BTCUSDT", **context_args),
        )
        exchange.inject("malformed_body", match="GET /fapi/v1/time")
        expect("^GET /fapi/v1/time: HTTP 200 but the body is not JSON$", lambda: fetch_server_time(client))
        exchange.inject("http_502", match="GET /fapi/v1/exchangeInfo")
        expect(
            "^GET /fapi/v1/exchangeInfo: HTTP 502, '<html>",
            lambda: fetch_constraints_raw(client, timestamp_ms=T0, recv_window_ms=5000),
        )
        expect(
            "^GET /fapi/v1/premiumIndex: HTTP 400, Binance code -1121: Invalid symbol",
            lambda: fetch_context(client, symbol="XRPUSDT", **context_args),
        )

    bad_shapes = {
        "/fapi/v1/positionSide/dual": {"dualSidePosition": False},
        "/fapi/v2/account": {"availableBalance": 2500.5},  # a number, not Binance's decimal string
    }
    recorder = Recorder(lambda request: httpx.Response(200, json=bad_shapes[request.url.path]))
    with mock_client(recorder) as client:
        expect(
            "^GET /fapi/v2/account: unexpected response shape: 'availableBalance' is not a decimal string",
            lambda: fetch_context(client, symbol="BTCUSDT", **context_args),
        )
    for error in errors:
        for text in (str(error), repr(error)):
            assert API_KEY not in text and SECRET not in text


def test_ed25519_signature_is_redacted_from_errors() -> None:
    private, _ = ed25519_pem()

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url!s} ({request.url.params['signature']})")

    recorder = Recorder(fail)
    with mock_client(recorder, Credentials.ed25519(API_KEY, private)) as client:
        reply = client.get_signed("/fapi/v2/account", SIGNED)
    sent = recorder.requests[0].url.query.decode().rpartition("&signature=")[2]
    assert reply.outcome == "connect_error" and reply.error is not None
    assert sent not in reply.error and unquote_plus(sent) not in reply.error
    assert reply.error.count("<redacted>") == 2


def test_loopback_round_trip_with_ed25519() -> None:
    private, public = ed25519_pem()
    exchange = paper(credential=ApiCredential(API_KEY, ed25519_public_key_pem=public))
    with (
        PaperServer(exchange) as server,
        BinanceClient(
            server.base_url,
            Credentials.ed25519(API_KEY, private),
            connect_timeout_ms=2000,
            read_timeout_ms=5000,
        ) as client,
    ):
        assert fetch_server_time(client) == T0
        placed = order(
            client,
            symbol="BTCUSDT",
            side="BUY",
            type="MARKET",
            quantity="0.003",
            newClientOrderId="loop-1",
        )
        context = fetch_context(
            client,
            symbol="BTCUSDT",
            account_id="acct-1",
            timestamp_ms=T0,
            recv_window_ms=5000,
            health=HEALTH,
        )
    assert (placed["status"], placed["executedQty"], placed["origQty"]) == ("FILLED", "0.003", "0.003")
    assert context["account"]["positions"] == [
        {
            "symbol": "BTCUSDT",
            "quantity": "0.003",
            "entry_price": "64000.1",
            "leverage": 10,
            "margin_mode": "CROSSED",
            "position_side": "BOTH",
        }
    ]
