"""``BinanceClient``: the one component that sends HTTP requests to Binance USDⓈ-M futures.

Each call sends exactly ONE request and reports what happened as an ``ExchangeReply``: no retries
(``httpx.HTTPTransport(retries=0)``), no redirects followed, and network failures are reported,
never raised. Binance documents that a timeout or a 5XX leaves the execution status UNKNOWN: the
order may exist [FUT general-info "HTTP Return Codes"]. Deciding what to do next (reconcile with
``GET /fapi/v1/order`` by ``origClientOrderId``) is the caller's job, so the client must never
quietly resend.

Signing [FUT general-info "SIGNED (TRADE and USER_DATA) Endpoint security"]: the signature covers
the exact query string as sent, ``signature`` goes last, and the API key travels in the
``X-MBX-APIKEY`` header. Every parameter goes in the query string, for every method, with an
empty body, so the signed text is exactly ``urlencode(params)``. The client never reads a clock:
the caller supplies ``timestamp`` and ``recvWindow``.

The read-only helpers at the end (``fetch_server_time``, ``fetch_constraints_raw``,
``fetch_context``) turn replies into the JSON that hosts feed to the engine; they raise
``ExchangeReadError`` on anything unexpected. No repr, reply or message here contains the API key,
the secret, the private key or a signature.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import httpx

from exchange.signing import Ed25519Signer, HmacSigner

__all__ = [
    "BASE_URLS",
    "BinanceClient",
    "Credentials",
    "CredentialsError",
    "ExchangeReadError",
    "ExchangeReply",
    "fetch_constraints_raw",
    "fetch_context",
    "fetch_server_time",
]

BASE_URLS = {
    "binance": "https://fapi.binance.com",
    "binance-testnet": "https://testnet.binancefuture.com",
}

ENV_API_KEY = "EP4_API_KEY"
ENV_API_SECRET = "EP4_API_SECRET"
ENV_ED25519_KEY_FILE = "EP4_ED25519_KEY_FILE"

Outcome = Literal["response", "timeout", "connect_error", "no_response"]

_LOOPBACK_NAMES = frozenset({"localhost"})


class CredentialsError(ValueError):
    """Missing, ambiguous or unusable API credentials. The message never contains key material."""


class ExchangeReadError(Exception):
    """A read-only helper got something other than a 200 JSON reply of the expected shape."""

    def __init__(self, message: str, reply: ExchangeReply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


# --- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Credentials:
    """An API key and the signer of its secret: HMAC-SHA256 (hex) or Ed25519 (base64).

    Build with ``Credentials.hmac(api_key, secret)``, ``Credentials.ed25519(api_key, pem)`` or
    ``Credentials.from_env(os.environ)``. ``repr``/``str`` show only the first characters of the key.
    """

    api_key: str
    signer: HmacSigner | Ed25519Signer = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.signer, (HmacSigner, Ed25519Signer)):
            raise CredentialsError("signer must be an HmacSigner or an Ed25519Signer")
        # The key goes into an HTTP header verbatim; refuse anything httpx would reject or mangle
        # (and might echo in its error message).
        if not self.api_key or not _is_token(self.api_key):
            raise CredentialsError("the API key must be non-empty printable ASCII without whitespace")

    @classmethod
    def hmac(cls, api_key: str, secret: str) -> Credentials:
        """Credentials for an HMAC key: ``signature`` = hex HMAC-SHA256(secret, totalParams)."""
        if not secret or not _is_token(secret):
            raise CredentialsError("the API secret must be non-empty printable ASCII without whitespace")
        return cls(api_key, HmacSigner(secret))

    @classmethod
    def ed25519(cls, api_key: str, private_key_pem: bytes) -> Credentials:
        """Credentials for an Ed25519 key (PEM, PKCS#8, unencrypted): base64 signatures."""
        try:
            signer = Ed25519Signer(private_key_pem)
        except ValueError as exc:  # the message is ours (exchange.signing), never key material
            raise CredentialsError(str(exc)) from None
        return cls(api_key, signer)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Credentials | None:
        """Credentials from ``EP4_API_KEY`` plus exactly one of ``EP4_API_SECRET`` (HMAC) or
        ``EP4_ED25519_KEY_FILE`` (path to an Ed25519 PEM private key).

        None when none of the three is set (an empty value counts as unset). Any other
        combination, or a key file that cannot be read or parsed, is a ``CredentialsError``.
        """
        api_key = environ.get(ENV_API_KEY) or None
        secret = environ.get(ENV_API_SECRET) or None
        key_file = environ.get(ENV_ED25519_KEY_FILE) or None
        if api_key is None and secret is None and key_file is None:
            return None
        if secret is not None and key_file is not None:
            raise CredentialsError(
                f"both {ENV_API_SECRET} and {ENV_ED25519_KEY_FILE} are set; set exactly one of them"
            )
        if api_key is None:
            given = ENV_API_SECRET if secret is not None else ENV_ED25519_KEY_FILE
            raise CredentialsError(f"{given} is set but {ENV_API_KEY} is not")
        if not _is_token(api_key):
            raise CredentialsError(f"{ENV_API_KEY} must be printable ASCII without whitespace")
        if secret is not None:
            if not _is_token(secret):
                raise CredentialsError(f"{ENV_API_SECRET} must be printable ASCII without whitespace")
            return cls.hmac(api_key, secret)
        if key_file is None:
            raise CredentialsError(
                f"{ENV_API_KEY} is set but neither {ENV_API_SECRET} (HMAC) "
                f"nor {ENV_ED25519_KEY_FILE} (Ed25519) is"
            )
        try:
            pem = Path(key_file).read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise CredentialsError(
                f"{ENV_ED25519_KEY_FILE}={key_file!r}: cannot read the file ({reason})"
            ) from None
        try:
            return cls.ed25519(api_key, pem)
        except CredentialsError as exc:
            raise CredentialsError(f"{ENV_ED25519_KEY_FILE}={key_file!r}: {exc}") from None

    @property
    def kind(self) -> Literal["hmac", "ed25519"]:
        return "hmac" if isinstance(self.signer, HmacSigner) else "ed25519"

    def sign(self, payload: str) -> str:
        """The signature of ``payload``: lower-case hex (HMAC) or standard base64 (Ed25519)."""
        return self.signer.sign(payload)

    def __repr__(self) -> str:
        shown = f"{self.api_key[:4]}…" if len(self.api_key) > 8 else "…"
        return f"Credentials(api_key={shown!r}, kind={self.kind!r})"

    __str__ = __repr__


def _is_token(text: str) -> bool:
    return text.isascii() and text.isprintable() and not any(c.isspace() for c in text)


# --- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExchangeReply:
    """What came of ONE request.

    ``outcome``:
    - ``response``: an HTTP response arrived (any status; a 5XX may still mean "executed").
    - ``connect_error``: no connection, so nothing was sent (ConnectError, ConnectTimeout, ...).
    - ``timeout``: the request may have been sent, but no response came in time (ReadTimeout,
      WriteTimeout). Execution status unknown.
    - ``no_response``: the connection failed after the request may have been sent
      (RemoteProtocolError, ReadError, WriteError, ...). Execution status unknown.

    ``body`` is the exact response text; ``error`` is ``"ExceptionClass: message"`` with the API
    key and signature removed; ``request`` = {"method", "path", "params": [[k, v], ...]} without
    the signature, for the audit log.
    """

    outcome: Outcome
    http_status: int | None
    body: str | None
    error: str | None
    request: dict[str, Any]

    def json(self) -> Any:
        """The parsed body with exact decimals (floats as ``Decimal``); None if absent or not JSON."""
        if self.body is None:
            return None
        try:
            return json.loads(self.body, parse_float=Decimal, parse_constant=_reject_constant)
        except ValueError:
            return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not an exact number")


def _outcome(exc: httpx.HTTPError) -> Outcome:
    """Classify an httpx failure by whether the request can have reached Binance.

    Only failures that happen before a connection exists are ``connect_error``; everything else is
    treated as possibly executed, because calling an unknown result "not sent" invites a double order.
    """
    if isinstance(
        exc,
        (
            httpx.ConnectError,
            httpx.ConnectTimeout,
            httpx.PoolTimeout,
            httpx.ProxyError,
            httpx.UnsupportedProtocol,
        ),
    ):
        return "connect_error"
    if isinstance(exc, httpx.TimeoutException):  # ReadTimeout, WriteTimeout
        return "timeout"
    return "no_response"  # ReadError, WriteError, RemoteProtocolError, LocalProtocolError, DecodingError, ...


# --- the client ----------------------------------------------------------------------------------

Params = Sequence[tuple[str, str]]


class BinanceClient:
    """A thin, retry-free HTTP client for Binance USDⓈ-M REST (or the paper exchange).

    ``transport`` is for tests and the in-process paper exchange (``PaperTransport``); it must not
    retry either. Without one, the client uses ``httpx.HTTPTransport(retries=0)``, and plain
    ``http://`` is allowed for loopback hosts only, so the API key never crosses a network in clear.
    Proxy settings from the environment are not used.
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials | None,
        *,
        transport: httpx.BaseTransport | None = None,
        connect_timeout_ms: int,
        read_timeout_ms: int,
    ) -> None:
        for name, value in (("connect_timeout_ms", connect_timeout_ms), ("read_timeout_ms", read_timeout_ms)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer (milliseconds)")
        if credentials is not None and not isinstance(credentials, Credentials):
            raise TypeError("credentials must be a Credentials instance or None")
        self.base_url = _check_base_url(base_url, custom_transport=transport is not None)
        self.credentials = credentials
        connect, read = connect_timeout_ms / 1000, read_timeout_ms / 1000
        self.timeout = httpx.Timeout(connect=connect, read=read, write=read, pool=connect)
        self._transport: httpx.BaseTransport = transport if transport is not None else httpx.HTTPTransport(retries=0)
        # what each request carries in ``extensions`` (httpx.Client.build_request's own form)
        self._timeouts = self.timeout.as_dict()
        self._closed = False
        # where the path begins in a request's URL text: after the scheme and the authority
        self._origin = len(self.base_url) - len(urlsplit(self.base_url).path)

    # -- lifecycle --

    def close(self) -> None:
        """Close the transport (its connections). A closed client sends nothing again."""
        if not self._closed:
            self._closed = True
            self._transport.close()

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BinanceClient(base_url={self.base_url!r}, credentials={self.credentials!r})"

    @property
    def venue(self) -> str:
        """Where requests go: the base URL, and the account behind a transport that says which
        (an in-process paper exchange: ``PaperTransport.venue_id``)."""
        account = getattr(self._transport, "venue_id", None)
        return f"{self.base_url}#{account}" if isinstance(account, str) and account else self.base_url

    # -- requests --

    def send_signed(self, method: str, path: str, params: Params) -> ExchangeReply:
        """Send ONE signed (TRADE / USER_DATA) request; never raises on network errors.

        ``params`` must already hold ``timestamp`` and ``recvWindow`` and only ``str`` values (exact
        decimal text is sent verbatim, never converted). The query string is
        ``urlencode(params)`` in the given order, then ``&signature=<percent-encoded signature>``.
        Raises ``CredentialsError`` without sending when the client has no credentials.
        """
        if self.credentials is None:
            raise CredentialsError(
                f"{method.upper()} {path} is a signed endpoint and this client has no API credentials"
            )
        method = method.upper()
        pairs = _check_request(method, path, params)
        names = {name for name, _ in pairs}
        if "signature" in names:
            raise ValueError("params must not contain 'signature'; the client adds it")
        missing = [name for name in ("timestamp", "recvWindow") if name not in names]
        if missing:
            raise ValueError(f"signed request without {' and '.join(missing)}: the caller supplies them")
        payload = urlencode(pairs)
        signature = self.credentials.sign(payload)
        query = f"{payload}&{urlencode([('signature', signature)])}"
        headers = {"X-MBX-APIKEY": self.credentials.api_key}
        secrets = (self.credentials.api_key, signature, quote_plus(signature))
        return self._send(method, path, pairs, query, headers, secrets)

    def get_signed(self, path: str, params: Params) -> ExchangeReply:
        """``send_signed("GET", path, params)``."""
        return self.send_signed("GET", path, params)

    def get_public(self, path: str, params: Params = ()) -> ExchangeReply:
        """Send ONE unsigned GET (security type NONE: time, exchangeInfo, premiumIndex, ...).

        No API key header is sent; endpoints of security type MARKET_DATA that want one are not
        covered. Never raises on network errors.
        """
        pairs = _check_request("GET", path, params)
        return self._send("GET", path, pairs, urlencode(pairs), {}, ())

    def _send(
        self,
        method: str,
        path: str,
        pairs: list[tuple[str, str]],
        query: str,
        headers: dict[str, str],
        secrets: Sequence[str],
    ) -> ExchangeReply:
        """ONE request, handed straight to the transport (``httpx.BaseTransport.handle_request``).

        Not through ``httpx.Client``: what it adds to a request is either not wanted here or done
        here. No redirect is followed (it was off). No auth flow runs: the only one the Client
        would have run, Basic auth from a user name and password in the base URL, cannot happen,
        as _check_base_url refuses such a URL (a password would show in reprs). No cookie jar: a cookie
        a server or a proxy set is never sent with a later signed request, so the request on the
        wire is exactly the one the audit log records (method, path, params, the API key header and
        the fixed :data:`_HEADERS`). The URL is the base URL's text followed by the path and the
        query, parsed once (the Client parses a relative URL, joins it with the base and parses the
        result again). The response is read whole and closed, as ``Client.send`` does. Issue 6:
        this path costs ~0.2 ms less per request than ``Client.build_request`` + ``Client.send``
        (tests/bench/bench_exchange.py)."""
        if self._closed:
            raise RuntimeError(f"{method} {path}: this BinanceClient is closed; nothing was sent")
        record = {"method": method, "path": path, "params": [[k, v] for k, v in pairs]}
        url = f"{self.base_url}{path}?{query}" if query else f"{self.base_url}{path}"
        request = httpx.Request(method, url, headers=[*_HEADERS, *headers.items()], extensions={"timeout": self._timeouts})
        if request.url.raw_path != (url[self._origin:]).encode("ascii"):
            # The signature covers the query text; httpx must send it (and the path) byte for byte.
            raise RuntimeError(f"{method} {path}: httpx changed the path or the query string; refusing to send")
        try:
            response = self._transport.handle_request(request)
            try:
                response.request = request
                response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            return ExchangeReply(
                _outcome(exc), None, None, _redact(f"{type(exc).__name__}: {exc}", secrets), record
            )
        # the body too: an error page or a proxy may echo the request (its path, X-MBX-APIKEY), and
        # the body travels on into results and the audit log
        return ExchangeReply("response", response.status_code, _redact(response.text, secrets), None, record)


# The headers every request carries besides X-MBX-APIKEY: those httpx.Client sends by default (the
# body's encodings httpx decodes itself), so the wire is what it was when requests went through it.
# httpx.Request adds Host, and Content-Length: 0 to a POST / PUT without a body.
_HEADERS = (
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", f"python-httpx/{httpx.__version__}"),
)


def _redact(text: str, secrets: Sequence[str]) -> str:
    variants = {v for s in secrets if s for v in (s, s.replace("/", "\\/"), quote_plus(s), quote(s, safe=""))}
    for secret in sorted(variants, key=len, reverse=True):
        text = text.replace(secret, "<redacted>")
    return text


_PLAIN_PATH = re.compile(r"(/(?!\.\.?(?:/|$))[A-Za-z0-9._~-]+)*/?")  # no dot segment, no empty one, nothing httpx would encode


def _check_base_url(base_url: str, *, custom_transport: bool) -> str:
    """The base URL, without a trailing slash, if requests can be sent to it as signed: an http(s)
    URL without user name, password, query or fragment, whose path (if any) httpx sends as it is
    written (BinanceClient._send refuses a request whose path or query httpx changed)."""
    if not isinstance(base_url, str):
        raise TypeError("base_url must be a str")
    if "@" in base_url.partition("://")[2].partition("/")[0]:
        # not echoed: the part before "@" may be a password
        raise ValueError("base_url must not carry a user name or password (they would show in reprs, logs and errors)")
    try:
        parts = urlsplit(base_url)
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ValueError(f"base_url {base_url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "?" in base_url or "#" in base_url:
        raise ValueError(f"base_url must be an http(s) URL without query or fragment, got {base_url!r}")
    if not base_url.isascii():
        raise ValueError(f"base_url must be ASCII (an international host name in its xn-- form), got {base_url!r}")
    if not _PLAIN_PATH.fullmatch(parts.path):
        raise ValueError(
            f"base_url's path must be plain ASCII segments (letters, digits, '-', '_', '.', '~'; no '.' or '..' "
            f"segment, no '//'), got {parts.path!r}"
        )
    if parts.scheme == "http" and not custom_transport and not _is_loopback(parts.hostname):
        raise ValueError(
            f"refusing plain http to the non-loopback host {parts.hostname}: "
            "the API key would travel in clear"
        )
    return base_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_request(method: str, path: str, params: Params) -> list[tuple[str, str]]:
    """Validate a request before anything is signed or sent; values must already be text."""
    if method not in ("GET", "POST", "PUT", "DELETE"):
        raise ValueError(f"unsupported HTTP method {method!r}")
    if not path.startswith("/") or any(c in path for c in "?#") or not _is_token(path):
        raise ValueError(f"path must be a plain absolute path without query, got {path!r}")
    pairs = []
    for item in params:
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str) or not name:
            raise TypeError(
                f"parameter {name!r}: names and values must be non-empty str / str "
                f"(exact decimal text, never numbers), got {type(value).__name__}"
            )
        pairs.append((name, value))
    return pairs


# --- read-only helpers for hosts -----------------------------------------------------------------

_PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _signed_params(timestamp_ms: int, recv_window_ms: int, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    for name, value in (("timestamp_ms", timestamp_ms), ("recv_window_ms", recv_window_ms)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer")
    return [*extra, ("recvWindow", str(recv_window_ms)), ("timestamp", str(timestamp_ms))]


def _read_json(client: BinanceClient, reply: ExchangeReply, endpoint: str) -> Any:
    """The JSON of a 200 reply, or ExchangeReadError saying what went wrong at ``endpoint``."""
    if reply.outcome != "response":
        raise ExchangeReadError(f"{endpoint}: {reply.outcome.replace('_', ' ')} ({reply.error})", reply)
    data = reply.json()
    if reply.http_status != 200:
        if isinstance(data, dict) and "code" in data:
            detail = f"Binance code {data.get('code')}: {data.get('msg')}"
        else:
            detail = repr((reply.body or "")[:200])
        key = client.credentials.api_key if client.credentials else ""
        raise ExchangeReadError(_redact(f"{endpoint}: HTTP {reply.http_status}, {detail}", (key,)), reply)
    if data is None:
        raise ExchangeReadError(f"{endpoint}: HTTP 200 but the body is not JSON", reply)
    return data


def _shape(condition: bool, endpoint: str, what: str, reply: ExchangeReply) -> None:
    if not condition:
        raise ExchangeReadError(f"{endpoint}: unexpected response shape: {what}", reply)


def _text(row: Mapping[str, Any], name: str, endpoint: str, reply: ExchangeReply) -> str:
    value = row.get(name)
    _shape(isinstance(value, str) and bool(value), endpoint, f"{name!r} is not a non-empty string", reply)
    return value


def _decimal_text(row: Mapping[str, Any], name: str, endpoint: str, reply: ExchangeReply) -> str:
    """A decimal exactly as Binance wrote it: a JSON string of plain decimal text."""
    value = row.get(name)
    _shape(
        isinstance(value, str) and bool(_PLAIN_DECIMAL.fullmatch(value)),
        endpoint,
        f"{name!r} is not a decimal string (got {value!r})",
        reply,
    )
    return value


def fetch_server_time(client: BinanceClient) -> int:
    """``GET /fapi/v1/time`` -> ``serverTime`` in ms (Binance: ``{"serverTime": 1499827319559}``)."""
    endpoint = "GET /fapi/v1/time"
    reply = client.get_public("/fapi/v1/time")
    data = _read_json(client, reply, endpoint)
    value = data.get("serverTime") if isinstance(data, dict) else None
    _shape(isinstance(value, int) and not isinstance(value, bool), endpoint, "no integer 'serverTime'", reply)
    return value


def fetch_constraints_raw(
    client: BinanceClient,
    symbol: str | None = None,
    *,
    timestamp_ms: int,
    recv_window_ms: int,
) -> tuple[dict[str, Any], Any]:
    """The raw ``GET /fapi/v1/exchangeInfo`` (public) and ``GET /fapi/v1/leverageBracket``
    (USER_DATA, signed) JSON, parsed with exact decimals, for building a constraints snapshot.

    exchangeInfo takes no parameters and always lists every symbol; ``symbol`` is checked to be
    among them and is passed to leverageBracket, which then answers with one object instead of an
    array (documented; both shapes are returned as received). Bracket numbers arrive as JSON
    numbers and come back as ``int``/``Decimal``.
    """
    endpoint = "GET /fapi/v1/exchangeInfo"
    reply = client.get_public("/fapi/v1/exchangeInfo")
    info = _read_json(client, reply, endpoint)
    _shape(
        isinstance(info, dict) and isinstance(info.get("symbols"), list),
        endpoint,
        "no 'symbols' array",
        reply,
    )
    if symbol is not None:
        listed = {entry.get("symbol") for entry in info["symbols"] if isinstance(entry, dict)}
        _shape(symbol in listed, endpoint, f"symbol {symbol!r} is not listed", reply)

    endpoint = "GET /fapi/v1/leverageBracket"
    extra = () if symbol is None else (("symbol", symbol),)
    reply = client.get_signed(
        "/fapi/v1/leverageBracket", _signed_params(timestamp_ms, recv_window_ms, *extra)
    )
    brackets = _read_json(client, reply, endpoint)
    entries = [brackets] if isinstance(brackets, dict) else brackets
    _shape(
        isinstance(entries, list)
        and all(
            isinstance(e, dict) and isinstance(e.get("symbol"), str) and isinstance(e.get("brackets"), list)
            for e in entries
        ),
        endpoint,
        "expected an array (or, with symbol, one object) of {symbol, brackets}",
        reply,
    )
    return info, brackets


_MARGIN_MODES = {"isolated": "ISOLATED", "cross": "CROSSED", "crossed": "CROSSED"}
_POSITION_SIDES = frozenset({"BOTH", "LONG", "SHORT"})


def fetch_context(
    client: BinanceClient,
    *,
    symbol: str,
    account_id: str,
    timestamp_ms: int,
    recv_window_ms: int,
    health: dict[str, Any],
) -> dict[str, Any]:
    """An ExecutionContext (ARCHITECTURE.md) for ``symbol`` read from the account, with exact decimals.

    Requests (every signed one with the same ``timestamp_ms``/``recv_window_ms``; request weight in
    brackets [FUT]):
    - ``GET /fapi/v1/positionSide/dual`` [30]: ``dualSidePosition`` true = HEDGE, false = ONE_WAY.
    - ``GET /fapi/v2/account`` [5]: ``availableBalance`` -> ``available_margin``.
    - ``GET /fapi/v2/positionRisk`` [5]: every row with a non-zero ``positionAmt`` (signed, negative =
      short, also for hedge SHORT rows), plus the zero rows of ``symbol`` so that its leverage and
      margin mode are known. ``marginType`` is lower-case there: "isolated" / "cross".
    - ``GET /fapi/v1/openOrders`` without symbol [40]: every open order of the account;
      ``quantity`` is ``origQty`` (a partially filled order still reports its original quantity).
    - ``GET /fapi/v1/premiumIndex?symbol=`` [1]: ``markPrice``.
    """
    signed = _signed_params(timestamp_ms, recv_window_ms)

    endpoint = "GET /fapi/v1/positionSide/dual"
    reply = client.get_signed("/fapi/v1/positionSide/dual", signed)
    dual = _read_json(client, reply, endpoint)
    _shape(
        isinstance(dual, dict) and isinstance(dual.get("dualSidePosition"), bool),
        endpoint,
        "no boolean 'dualSidePosition'",
        reply,
    )
    position_mode = "HEDGE" if dual["dualSidePosition"] else "ONE_WAY"

    endpoint = "GET /fapi/v2/account"
    reply = client.get_signed("/fapi/v2/account", signed)
    account = _read_json(client, reply, endpoint)
    _shape(isinstance(account, dict), endpoint, "not an object", reply)
    available_margin = _decimal_text(account, "availableBalance", endpoint, reply)

    endpoint = "GET /fapi/v2/positionRisk"
    reply = client.get_signed("/fapi/v2/positionRisk", signed)
    rows = _read_json(client, reply, endpoint)
    _shape(
        isinstance(rows, list) and all(isinstance(r, dict) for r in rows),
        endpoint,
        "not an array of objects",
        reply,
    )
    positions = []
    for row in rows:
        row_symbol = _text(row, "symbol", endpoint, reply)
        amount = _decimal_text(row, "positionAmt", endpoint, reply)
        if row_symbol != symbol and Decimal(amount) == 0:
            continue
        leverage = row.get("leverage")
        if isinstance(leverage, str) and leverage.isascii() and leverage.isdigit():
            leverage = int(leverage)
        _shape(
            isinstance(leverage, int) and not isinstance(leverage, bool),
            endpoint,
            f"{row_symbol}: 'leverage' is not an integer",
            reply,
        )
        margin_type = row.get("marginType")
        margin_mode = _MARGIN_MODES.get(margin_type.lower()) if isinstance(margin_type, str) else None
        _shape(margin_mode is not None, endpoint, f"{row_symbol}: unknown marginType {margin_type!r}", reply)
        position_side = _text(row, "positionSide", endpoint, reply)
        _shape(
            position_side in _POSITION_SIDES,
            endpoint,
            f"{row_symbol}: unknown positionSide {position_side!r}",
            reply,
        )
        positions.append(
            {
                "symbol": row_symbol,
                "quantity": amount,
                "entry_price": _decimal_text(row, "entryPrice", endpoint, reply),
                "leverage": leverage,
                "margin_mode": margin_mode,
                "position_side": position_side,
            }
        )

    endpoint = "GET /fapi/v1/openOrders"
    reply = client.get_signed("/fapi/v1/openOrders", signed)
    orders = _read_json(client, reply, endpoint)
    _shape(
        isinstance(orders, list) and all(isinstance(o, dict) for o in orders),
        endpoint,
        "not an array of objects",
        reply,
    )
    open_orders = []
    for order in orders:
        side = _text(order, "side", endpoint, reply)
        _shape(side in ("BUY", "SELL"), endpoint, f"unknown side {side!r}", reply)
        position_side = _text(order, "positionSide", endpoint, reply)
        _shape(position_side in _POSITION_SIDES, endpoint, f"unknown positionSide {position_side!r}", reply)
        open_orders.append(
            {
                "symbol": _text(order, "symbol", endpoint, reply),
                "client_order_id": _text(order, "clientOrderId", endpoint, reply),
                "side": side,
                "quantity": _decimal_text(order, "origQty", endpoint, reply),
                "price": _decimal_text(order, "price", endpoint, reply),
                "position_side": position_side,
            }
        )

    endpoint = "GET /fapi/v1/premiumIndex"
    reply = client.get_public("/fapi/v1/premiumIndex", [("symbol", symbol)])
    premium = _read_json(client, reply, endpoint)
    _shape(
        isinstance(premium, dict) and premium.get("symbol") == symbol,
        endpoint,
        f"not the object for {symbol}",
        reply,
    )
    mark_price = _decimal_text(premium, "markPrice", endpoint, reply)

    return {
        "exchange": "BINANCE_PERP",
        "symbol": symbol,
        "timestamp": timestamp_ms,
        "account_id": account_id,
        "account": {
            "position_mode": position_mode,
            "available_margin": available_margin,
            "positions": positions,
            "open_orders": open_orders,
        },
        "market": {symbol: {"mark_price": mark_price}},
        "health": dict(health),
    }
