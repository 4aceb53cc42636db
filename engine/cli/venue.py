"""Opening the exchange side for the CLI (imperative shell): the embedded paper exchange, or an
httpx client to any Binance-compatible base URL, and contexts read from it."""

from __future__ import annotations

import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from exchange import (
    BASE_URLS,
    BinanceClient,
    Credentials,
    CredentialsError,
    ExchangeReadError,
    PaperExchange,
    PaperTransport,
    fetch_constraints_raw,
    fetch_context,
    fetch_server_time,
)
from exchange.paper.embedded import PAPER_API_KEY, PAPER_API_SECRET, PAPER_BASE_URL, PaperBusy, paper_lock, save_paper

from ..bundle import Bundle
from ..constraints import ConstraintsError, ConstraintsSnapshot, build_constraints
from ..ledger import Ledger
from ..models import ExecutionContext
from .inputs import InputError, open_shipped_paper

__all__ = ["Venue", "exchange_clock", "open_venue"]


def exchange_clock(client: BinanceClient) -> Callable[[], int]:
    """The exchange's clock in ms, to sign requests with: this host's clock plus the offset one
    ``GET /fapi/v1/time`` shows (taken at the middle of the round trip). Binance refuses a request
    stamped 1000 ms or more ahead of its clock, or more than recvWindow behind it (-1021, facts file
    §2), so a host clock that drifted would have every signed query refused."""
    sent = time.time()
    try:
        server = fetch_server_time(client)
    except ExchangeReadError as exc:
        raise InputError(f"cannot read the exchange's clock (GET /fapi/v1/time): {exc}") from None
    offset = server - int((sent + time.time()) / 2 * 1000)
    return lambda: int(time.time() * 1000) + offset


@dataclass
class Venue:
    mode: str
    client: BinanceClient
    paper: PaperExchange | None = None
    state_dir: Path | None = None
    _stack: ExitStack = field(default_factory=ExitStack)

    def sync_market(self, context: ExecutionContext) -> None:
        """Embedded paper only: the host's context is the market, so the paper marks follow it."""
        if self.paper is None:
            return
        for symbol, market in context.market.items():
            try:
                self.paper.set_mark_price(symbol, market.mark_price)
            except Exception:  # a symbol the paper exchange does not list: its orders are refused there
                continue

    def read_context(self, *, symbol: str, account_id: str, recv_window_ms: int, ledger: Ledger, lookback_ms: int) -> ExecutionContext:
        """Build the context from the exchange: its clock, its account, its mark price, and the
        measured latency of these reads plus the ledger's recent rejection rate."""
        started = time.monotonic()
        try:
            now = int(time.time() * 1000) if self.paper is not None else fetch_server_time(self.client)
            raw = fetch_context(
                self.client, symbol=symbol, account_id=account_id, timestamp_ms=now, recv_window_ms=recv_window_ms,
                health={"api_latency_ms": "0", "order_rejection_rate": "0"},
            )
        except ExchangeReadError as exc:
            raise InputError(f"cannot read the context from the exchange: {exc}") from None
        latency = int((time.monotonic() - started) * 1000)
        raw["health"] = {"api_latency_ms": str(latency), "order_rejection_rate": ledger.rejection_rate(now, lookback_ms)}
        try:
            return ExecutionContext.model_validate(raw)
        except ValueError as exc:
            raise InputError(f"the exchange's account data does not make a valid context: {exc}") from None

    def clock(self) -> Callable[[], int]:
        """The clock signed queries carry: this host's for the embedded paper exchange (it runs on it),
        else the exchange's (:func:`exchange_clock`)."""
        if self.paper is not None:
            return lambda: int(time.time() * 1000)
        return exchange_clock(self.client)

    def read_constraints(self, recv_window_ms: int) -> ConstraintsSnapshot:
        try:
            now = int(time.time() * 1000) if self.paper is not None else fetch_server_time(self.client)
            info, brackets = fetch_constraints_raw(self.client, timestamp_ms=now, recv_window_ms=recv_window_ms)
            return build_constraints(info, brackets)
        except (ExchangeReadError, ConstraintsError) as exc:
            raise InputError(f"cannot read exchange constraints: {exc}") from None

    def close(self) -> None:
        if self.paper is not None and self.state_dir is not None:
            save_paper(self.paper, self.state_dir)
        self._stack.close()


# how long a process waits for another one's embedded paper exchange (a CLI run holds it for its run)
PAPER_WAIT_S = 120.0
_SHARE_PAPER = "To share one paper exchange between processes, run `ep4 paper serve` and pass its URL as --base-url"


def _waiting_for_paper(state_dir: Path, holder: str) -> None:
    print(f"ep4: waiting (at most {PAPER_WAIT_S:g} s) for the paper exchange in {state_dir}, in use by another process "
          f"({holder}). {_SHARE_PAPER}", file=sys.stderr, flush=True)


def open_venue(mode: str, *, bundle: Bundle, state_dir: Path, base_url: str | None, follow_context: bool) -> Venue:
    """``paper`` without a base URL is the embedded paper exchange (state in STATE_DIR); any mode
    with a base URL talks HTTP to it. Live modes need keys from the environment. A base URL that
    cannot be used is an InputError (exit 2, one message)."""
    try:
        return _open_venue(mode, bundle=bundle, state_dir=state_dir, base_url=base_url, follow_context=follow_context)
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"--base-url / EP4_BASE_URL: {exc}") from None


def _open_venue(mode: str, *, bundle: Bundle, state_dir: Path, base_url: str | None, follow_context: bool) -> Venue:
    timeouts = dict(
        connect_timeout_ms=bundle.exchange_client.connectTimeoutMs, read_timeout_ms=bundle.exchange_client.readTimeoutMs
    )
    base_url = base_url or os.environ.get("EP4_BASE_URL") or None
    if mode == "paper":
        credentials = Credentials.hmac(PAPER_API_KEY, PAPER_API_SECRET)
        if base_url:
            return Venue(mode, BinanceClient(base_url, credentials, **timeouts))
        stack = ExitStack()
        try:  # one process at a time loads, uses and saves the paper exchange of a state directory
            stack.enter_context(paper_lock(state_dir, on_wait=lambda holder: _waiting_for_paper(state_dir, holder),
                                           timeout_s=PAPER_WAIT_S))
            paper = open_shipped_paper(
                state_dir,
                mark_prices={},
                # with a host context, the paper clock is the context's timestamp; otherwise the wall clock
                clock=None if follow_context else (lambda: int(time.time() * 1000)),
            )
        except PaperBusy as exc:
            stack.close()
            raise InputError(f"{exc}; nothing was sent. {_SHARE_PAPER}") from None
        except BaseException:
            stack.close()
            raise
        if not paper.account_id_saved:
            # a new paper account (or a file from before account ids) is saved at once: the write-ahead rows
            # name its id (ep4 reconcile asks only that account), so a process that dies on its first call
            # must leave the id behind, not an account the next run makes anew under another id
            try:
                save_paper(paper, state_dir)
            except OSError as exc:
                stack.close()
                raise InputError(f"cannot write the paper exchange's state in {state_dir}: {exc}") from None
        # saved after each request that may change it, before its answer: a process that dies after an
        # acknowledged order leaves the order in the paper account, as an exchange would keep it
        transport = PaperTransport(paper, after_change=lambda: save_paper(paper, state_dir))
        client = BinanceClient(PAPER_BASE_URL, credentials, transport=transport, **timeouts)
        return Venue(mode, client, paper=paper, state_dir=state_dir, _stack=stack)
    try:
        credentials = Credentials.from_env(os.environ)
    except CredentialsError as exc:
        raise InputError(str(exc)) from None
    if credentials is None:
        raise InputError(
            f"--exchange {mode} needs API keys: set EP4_API_KEY with EP4_API_SECRET (HMAC) "
            "or with EP4_ED25519_KEY_FILE (Ed25519 private key PEM)"
        )
    return Venue(mode, BinanceClient(base_url or BASE_URLS[mode], credentials, **timeouts))
