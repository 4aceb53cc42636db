"""The embedded paper exchange ep4 uses by default (``--exchange paper``): created on first use with
the shipped Binance samples, persisted in the state directory between CLI runs.

Its API key and secret are fixed, public, paper-only values: they let the signed request path run
exactly as against Binance without asking a newcomer for keys. They open nothing real.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from exchange.paper.auth import ApiCredential
from exchange.paper.core import PaperExchange

__all__ = ["PAPER_API_KEY", "PAPER_API_SECRET", "PAPER_BASE_URL", "PAPER_LOCK_FILE", "PAPER_STATE_FILE", "PaperBusy", "open_paper", "paper_lock", "save_paper"]

PAPER_API_KEY = "ep4-paper-key"
PAPER_API_SECRET = "ep4-paper-secret-not-a-real-key"
PAPER_BASE_URL = "http://paper.ep4.invalid"  # never resolved: the in-process transport answers
PAPER_STATE_FILE = "paper-exchange.json"
PAPER_LOCK_FILE = "paper-exchange.lock"

DEFAULT_BALANCE = Decimal("10000")
# Marks of a new account for the shipped symbols (as in examples/context.json); the paper exchange
# has no market feed, so a host's context (or `ep4 paper serve --mark`) moves them.
DEFAULT_MARKS = {"BTCUSDT": "64010.5", "ETHUSDT": "3010.25"}
DEFAULT_LEVERAGE = 5
DEFAULT_MARGIN_TYPE = "ISOLATED"


def open_paper(
    state_dir: str | os.PathLike[str] | None,
    *,
    exchange_info: Mapping[str, Any],
    leverage_brackets: list[dict[str, Any]] | None,
    mark_prices: Mapping[str, Decimal | str],
    clock: Callable[[], int] | None = None,
    extra_credentials: tuple[ApiCredential, ...] = (),
    dual_side_position: bool = False,
) -> PaperExchange:
    """Load the paper account from ``state_dir`` or create it (10000 USDT, 5x, isolated; one-way unless asked)."""
    credentials = (ApiCredential(PAPER_API_KEY, hmac_secret=PAPER_API_SECRET), *extra_credentials)
    path = Path(state_dir) / PAPER_STATE_FILE if state_dir is not None else None
    if path is not None and path.exists():
        return PaperExchange.load(path, credentials=credentials, clock=clock)
    symbols = [s["symbol"] for s in exchange_info["symbols"]]
    return PaperExchange(
        exchange_info=exchange_info,
        mark_prices={s: mark_prices.get(s, DEFAULT_MARKS.get(s) or _first_price(exchange_info, s)) for s in symbols},
        credentials=credentials,
        initial_balance=DEFAULT_BALANCE,
        leverage={s: DEFAULT_LEVERAGE for s in symbols},
        margin_type={s: DEFAULT_MARGIN_TYPE for s in symbols},
        leverage_brackets=leverage_brackets,
        dual_side_position=dual_side_position,
        clock=clock,
    )


def _first_price(exchange_info: Mapping[str, Any], symbol: str) -> str:
    """A mark price for symbols the caller did not price: PRICE_FILTER minPrice x 10 (paper only)."""
    for s in exchange_info["symbols"]:
        if s["symbol"] == symbol:
            for f in s.get("filters", []):
                if f.get("filterType") == "PRICE_FILTER":
                    return str(Decimal(str(f["minPrice"])) * 10)
    return "1"


class PaperBusy(TimeoutError):
    """Another process kept the paper exchange of a state directory for longer than the wait allowed."""


@contextmanager
def paper_lock(
    state_dir: str | os.PathLike[str], *, on_wait: Callable[[str], None] | None = None, timeout_s: float | None = None,
) -> Iterator[None]:
    """Exclusive, across processes, on the paper exchange kept in ``state_dir``: held from loading
    its state to saving it. Each process works on its own copy of the file and writes it back
    whole, so two at once would lose one's orders and fills (the ledger and audit log holding
    calls the paper account never saw).

    If another process holds it, ``on_wait`` is told once who (its pid and command, which the
    holder writes into the lock file), and the caller waits until it is released (when that process
    ends, normally or not), at most ``timeout_s`` seconds if given: then :class:`PaperBusy`."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PAPER_LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(path)
            if on_wait is not None:
                on_wait(holder)
            if timeout_s is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + timeout_s
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            waited = f" after {timeout_s:g} s" if timeout_s else ""
                            raise PaperBusy(f"the paper exchange in {directory} is in use by another process ({holder}){waited}") from None
                        time.sleep(0.05)
        os.ftruncate(fd, 0)
        # who holds it, for a waiting process's message: the pid and the command's name (no arguments)
        command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:2]]).strip() if sys.argv else ""
        os.pwrite(fd, f"pid {os.getpid()}: {command or 'python'}".encode("utf-8", "replace")[:256], 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def save_paper(paper: PaperExchange, state_dir: str | os.PathLike[str]) -> Path:
    path = Path(state_dir) / PAPER_STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    paper.save(path)
    return path
