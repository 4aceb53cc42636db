"""``PaperTransport``: a sync httpx transport that calls a ``PaperExchange`` in-process.

httpx's own ASGITransport is async-only; the executor uses a sync ``httpx.Client``, so this
transport calls ``PaperExchange.handle`` directly and turns fault disruptions into the exceptions a
real socket would raise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from exchange.paper.core import PaperExchange

__all__ = ["PaperTransport"]

_NO_RESPONSE = "paper exchange: no response within the read timeout"
_LOG = logging.getLogger("exchange.paper")


class PaperTransport(httpx.BaseTransport):
    """In-process transport: ``httpx.Client(transport=PaperTransport(exchange), base_url=...)``.

    - ``read_timeout`` fault: raises ``httpx.ReadTimeout`` at once (after executing, if it executes).
    - ``connection_drop`` fault: raises ``httpx.RemoteProtocolError`` after executing.
    - ``latency`` (any delay): sleeps; if the delay exceeds the request's read timeout, sleeps for the
      timeout and raises ``httpx.ReadTimeout`` — the request was executed all the same.
    """

    def __init__(
        self, exchange: PaperExchange, *, sleep: Callable[[float], None] = time.sleep,
        after_change: Callable[[], None] | None = None,
    ) -> None:
        self._exchange = exchange
        self._sleep = sleep
        # run after every request that may change the account (anything but GET), before its answer
        # is given, e.g. to persist it: an order the caller saw acknowledged is kept, as on an exchange
        self._after_change = after_change

    @property
    def venue_id(self) -> str:
        """Which paper account this transport reaches (BinanceClient.venue): every in-process paper
        exchange has the same base URL, so the URL alone does not say which account an order went to."""
        return f"paper-account:{self._exchange.account_id}"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            answer = self._exchange.handle(
                request.method,
                request.url.path,
                request.url.query.decode("ascii"),
                request.read(),
                dict(request.headers),
            )
        except Exception:
            # a defect of the paper exchange: answered as a server answers one (uvicorn: 500, the traceback
            # logged), which the client reads as an unknown status, instead of an exception out of a
            # client that never raises on what the exchange does; the account is kept as it now is
            _LOG.exception("paper exchange: unexpected error on %s %s", request.method, request.url.path)
            if self._after_change is not None and request.method != "GET":
                self._after_change()
            return httpx.Response(500, text="Internal Server Error", headers={"content-type": "text/plain; charset=utf-8"},
                                  request=request)
        if self._after_change is not None and request.method != "GET":
            self._after_change()
        if answer.disruption == "read_timeout":
            raise httpx.ReadTimeout(_NO_RESPONSE, request=request)
        if answer.delay_ms:
            delay = answer.delay_ms / 1000
            read_timeout = request.extensions.get("timeout", {}).get("read")
            if read_timeout is not None and delay > read_timeout:
                self._sleep(read_timeout)
                raise httpx.ReadTimeout(_NO_RESPONSE, request=request)
            self._sleep(delay)
        if answer.disruption == "drop":
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body, request=request)
