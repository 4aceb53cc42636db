"""Fault injection: make the next matching requests slow, lost, or answered like a bad day at Binance.

A fault "executes" when the request is processed (the order really exists afterwards) before the
client is let down. That is the dangerous case Binance warns about: a 503 "Unknown error, please
check your request or try again later.", a -1007 timeout, or a lost response means the execution
status is UNKNOWN and may be success [FUT general-info "HTTP Return Codes"].
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from exchange.paper.response import PaperResponse, json_response

__all__ = ["Fault", "FaultKind", "FaultQueue"]


class FaultKind(StrEnum):
    LATENCY = "latency"  # processed normally, answered after delay_ms
    READ_TIMEOUT = "read_timeout"  # no answer in time (httpx.ReadTimeout)
    CONNECTION_DROP = "connection_drop"  # connection closed without a complete response
    HTTP_500 = "http_500"  # 500 {"code":-1000,...}
    HTTP_502 = "http_502"  # 502 nginx HTML page
    HTTP_503_UNKNOWN = "http_503_unknown"  # 503 "Unknown error, ..." -- executed
    HTTP_503_UNAVAILABLE = "http_503_unavailable"  # 503 "Service Unavailable." -- not executed
    BACKEND_TIMEOUT = "backend_timeout"  # 408 {"code":-1007,...} -- executed
    RATE_LIMIT_429 = "rate_limit_429"  # 429 {"code":-1003,...}
    IP_BAN_418 = "ip_ban_418"  # 418 {"code":-1003,"msg":"Way too many requests; IP banned until ..."}
    MALFORMED_BODY = "malformed_body"  # 200 with a truncated, non-JSON body -- executed


_EXECUTES_BY_DEFAULT = frozenset(
    {
        FaultKind.LATENCY,
        FaultKind.READ_TIMEOUT,
        FaultKind.CONNECTION_DROP,
        FaultKind.HTTP_503_UNKNOWN,
        FaultKind.BACKEND_TIMEOUT,
        FaultKind.MALFORMED_BODY,
    }
)

# Over a socket, a read timeout is a server that stalls this long (or until the client hangs up).
DEFAULT_STALL_MS = 30_000

TIMEOUT_MSG = (
    "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
)
UNKNOWN_503_MSG = "Unknown error, please check your request or try again later."
_NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@dataclass(frozen=True)
class Fault:
    """One injected fault.

    ``executes``: None takes the kind's default (see the kind comments). ``match`` selects requests:
    "trade" (order placement and cancels), "signed", "any", or one "METHOD /path".
    """

    kind: FaultKind
    delay_ms: int = 0
    executes: bool | None = None
    match: str = "trade"

    def __post_init__(self) -> None:
        kind = FaultKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if self.executes is None:
            object.__setattr__(self, "executes", kind in _EXECUTES_BY_DEFAULT)
        if kind is FaultKind.LATENCY and not self.executes:
            raise ValueError("a latency fault always executes the request")
        if kind is FaultKind.READ_TIMEOUT and not self.delay_ms:
            object.__setattr__(self, "delay_ms", DEFAULT_STALL_MS)
        if self.delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")

    def matches(self, method: str, path: str, *, trade: bool, signed: bool) -> bool:
        if self.match == "any":
            return True
        if self.match == "trade":
            return trade
        if self.match == "signed":
            return signed
        return self.match == f"{method} {path}"

    def respond(self, result: PaperResponse | None, *, path: str, now: int) -> PaperResponse:
        """The response the client gets instead of ``result`` (None when not executed)."""
        kind = self.kind
        if kind is FaultKind.LATENCY:
            assert result is not None
            return replace(result, delay_ms=self.delay_ms)
        if kind is FaultKind.READ_TIMEOUT:
            late = result or json_response(408, {"code": -1007, "msg": TIMEOUT_MSG})
            return replace(late, delay_ms=self.delay_ms, disruption="read_timeout")
        if kind is FaultKind.CONNECTION_DROP:
            return replace(result or json_response(200, {}), delay_ms=self.delay_ms, disruption="drop")
        return replace(_canned(kind, path, now), delay_ms=self.delay_ms)


def _canned(kind: FaultKind, path: str, now: int) -> PaperResponse:
    if kind is FaultKind.HTTP_500:
        # "occured" is Binance's spelling.
        return json_response(
            500, {"code": -1000, "msg": "An unknown error occured while processing the request."}
        )
    if kind is FaultKind.HTTP_502:
        return PaperResponse(502, {"content-type": "text/html"}, _NGINX_502)
    if kind is FaultKind.HTTP_503_UNKNOWN:
        return json_response(503, {"timestamp": now, "path": path, "msg": UNKNOWN_503_MSG})
    if kind is FaultKind.HTTP_503_UNAVAILABLE:
        return json_response(503, {"timestamp": now, "path": path, "msg": "Service Unavailable."})
    if kind is FaultKind.BACKEND_TIMEOUT:
        return json_response(408, {"code": -1007, "msg": TIMEOUT_MSG})
    if kind is FaultKind.RATE_LIMIT_429:
        msg = (
            "Too many requests; current limit is 2400 requests per minute. "
            "Please use the websocket for live updates to avoid polling the API."
        )
        return json_response(429, {"code": -1003, "msg": msg}, {"retry-after": "60"})
    if kind is FaultKind.IP_BAN_418:
        until = now + 120_000  # Binance's first ban lasts 2 minutes
        msg = (
            f"Way too many requests; IP banned until {until}. "
            "Please use the websocket for live updates to avoid bans."
        )
        return json_response(418, {"code": -1003, "msg": msg}, {"retry-after": "120"})
    assert kind is FaultKind.MALFORMED_BODY
    return PaperResponse(200, {"content-type": "application/json"}, b'{"orderId":')


class FaultQueue:
    """Faults waiting for their requests, in injection order; each one is used once."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []

    def add(self, fault: Fault, count: int = 1) -> None:
        if count < 1:
            raise ValueError("count must be >= 1")
        self._pending.extend([fault] * count)

    def take(self, method: str, path: str, *, trade: bool, signed: bool) -> Fault | None:
        for index, fault in enumerate(self._pending):
            if fault.matches(method, path, trade=trade, signed=signed):
                return self._pending.pop(index)
        return None

    def pending(self) -> tuple[Fault, ...]:
        return tuple(self._pending)

    def clear(self) -> None:
        self._pending.clear()
