"""The paper exchange over HTTP: a raw ASGI 3 app, ``serve()`` and a background ``PaperServer``.

Only 127.0.0.1 (or ::1 / localhost) is served: this is a test double, never a public service.

Disruptions over a real socket:

- ``read_timeout``: the app stalls ``delay_ms`` (default 30 s) before answering, and stops early
  when the client hangs up; a client with a shorter read timeout sees ``httpx.ReadTimeout``.
- ``connection_drop``: ASGI gives an app no way to close a socket before a response starts (a
  server must send a 500 instead), so the app sends the response head with a ``content-length``
  and returns without the body. uvicorn then closes the connection ("ASGI callable returned
  without completing response"); httpx raises ``httpx.RemoteProtocolError`` because the body never
  arrives. The status line does reach the client; a non-streaming client never sees it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from exchange.paper.core import PaperExchange

__all__ = ["PaperServer", "paper_asgi_app", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def paper_asgi_app(
    exchange: PaperExchange, *, after_change: Callable[[], None] | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A raw ASGI 3 application serving ``exchange``; ``after_change`` runs after every request
    that may change the account (anything but GET), e.g. to persist it."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        query = scope["query_string"].decode("latin-1")
        answer = exchange.handle(scope["method"], scope["path"], query, body, headers)
        if after_change is not None and scope["method"] != "GET":
            after_change()
        if answer.delay_ms and await _client_left(receive, answer.delay_ms / 1000):
            return
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        raw_headers.append((b"content-length", str(len(answer.body)).encode("ascii")))
        await send({"type": "http.response.start", "status": answer.status, "headers": raw_headers})
        if answer.disruption == "drop":
            return
        await send({"type": "http.response.body", "body": answer.body})

    return app


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _client_left(receive: Receive, seconds: float) -> bool:
    """Wait ``seconds``; True as soon as the client disconnects."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(receive(), timeout=remaining)
        except TimeoutError:
            return False
        if message["type"] == "http.disconnect":
            return True
    return False


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _uvicorn_config(
    exchange: PaperExchange, host: str, port: int, log_level: str, after_change: Callable[[], None] | None = None
) -> Any:
    import uvicorn  # imported here so that using the core never needs a server

    if host not in _LOOPBACK:
        raise ValueError(f"the paper exchange serves loopback only, not {host!r}")
    return uvicorn.Config(
        paper_asgi_app(exchange, after_change=after_change),
        host=host,
        port=port,
        http="h11",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
    )


def serve(
    exchange: PaperExchange,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "warning",
    after_change: Callable[[], None] | None = None,
) -> None:
    """Serve ``exchange`` on ``host:port`` until interrupted (blocking)."""
    import uvicorn

    uvicorn.Server(_uvicorn_config(exchange, host, port, log_level, after_change)).run()


class PaperServer:
    """``exchange`` served by uvicorn in a background thread on a free loopback port.

    with PaperServer(exchange) as server:
        httpx.Client(base_url=server.base_url)
    """

    def __init__(self, exchange: PaperExchange, host: str = "127.0.0.1", *, log_level: str = "error") -> None:
        import uvicorn

        family = socket.AF_INET6 if host == "::1" else socket.AF_INET
        # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it every
        # keep-alive response waits ~40 ms on Nagle + delayed ACK.
        self._socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server = uvicorn.Server(_uvicorn_config(exchange, host, 0, log_level))
        self._socket.bind((host, 0))
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"paper-exchange:{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self, timeout: float = 5.0) -> PaperServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the paper exchange server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> PaperServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
