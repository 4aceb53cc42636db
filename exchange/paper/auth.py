"""API keys and the SIGNED-endpoint checks: key, signature, timestamp and recvWindow.

[FUT general-info "Timing security"]: a request is accepted only if
``timestamp < serverTime + 1000`` and ``serverTime - timestamp <= recvWindow``; recvWindow
defaults to 5000 ms. The futures docs give no maximum; the spot maximum (60000) is enforced here.
"""

from __future__ import annotations

import re

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from exchange.paper.errors import invalid_param, mandatory, reject
from exchange.paper.params import Params, SignedPayload
from exchange.signing import verify_ed25519, verify_hmac

__all__ = ["ApiCredential", "DEFAULT_RECV_WINDOW", "MAX_RECV_WINDOW", "check_signed_request"]

DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000


@dataclass(frozen=True)
class ApiCredential:
    """One API key the paper exchange accepts, with either an HMAC secret or an Ed25519 public key."""

    api_key: str
    hmac_secret: str | None = field(default=None, repr=False)
    ed25519_public_key_pem: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key is empty")
        if (self.hmac_secret is None) == (self.ed25519_public_key_pem is None):
            raise ValueError("give exactly one of hmac_secret and ed25519_public_key_pem")

    def verify(self, payload: str, signature: str) -> bool:
        if self.hmac_secret is not None:
            return verify_hmac(self.hmac_secret, payload, signature)
        assert self.ed25519_public_key_pem is not None
        return verify_ed25519(self.ed25519_public_key_pem, payload, signature)


# what an API key can be: Binance's are 64 letters and digits; the paper key (ep4-paper-key) has dashes
_API_KEY_FORMAT = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_signed_request(
    credentials: Mapping[str, ApiCredential],
    headers: Mapping[str, str],
    params: Params,
    signed: SignedPayload,
    clock: Callable[[], int] | None,
) -> int:
    """Authenticate one SIGNED request and return the server time (ms) to process it at.

    With ``clock=None`` the server time is the request's own ``timestamp``.
    """
    api_key = headers.get("x-mbx-apikey", "")
    if not api_key or not _API_KEY_FORMAT.fullmatch(api_key):  # -2014 "API-key format invalid." (facts file)
        raise reject(-2014)
    credential = credentials.get(api_key)
    if credential is None:
        raise reject(-2015)
    timestamp = _millis(params.get("timestamp"))
    if timestamp is None:
        raise mandatory("timestamp")
    recv_window_text = params.get("recvWindow")
    recv_window = DEFAULT_RECV_WINDOW if recv_window_text is None else _millis(recv_window_text)
    if recv_window is None or recv_window > MAX_RECV_WINDOW:
        raise invalid_param("recvWindow")
    if signed.signature is None:
        raise mandatory("signature")
    if not credential.verify(signed.payload, signed.signature):
        raise reject(-1022)
    server_time = timestamp if clock is None else clock()
    if timestamp >= server_time + 1000:
        raise reject(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_time - timestamp > recv_window:
        raise reject(-1021)
    return server_time


_LONG_DIGITS = 19  # a Binance LONG (int64) has at most 19 digits; int() of 5,000 digits raised ValueError (a 500)


def _millis(value: str | None) -> int | None:
    """A LONG parameter (timestamp, recvWindow) as an int; None for anything else (-1102 / -1130)."""
    if value is None or not value.isascii() or not value.isdigit() or len(value) > _LONG_DIGITS:
        return None
    return int(value)
