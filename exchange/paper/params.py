"""Request parameters as Binance reads them.

GET sends parameters in the query string; POST/PUT/DELETE may use the query string, an
``application/x-www-form-urlencoded`` body, or both. When a parameter is in both, the query-string
value wins [FUT general-info "General Information on Endpoints"]. The signature covers the query
string followed directly by the body, exactly as sent, minus the ``signature`` parameter itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from exchange.paper.errors import mandatory, reject

__all__ = ["Params", "SignedPayload", "split_signature"]


@dataclass(frozen=True)
class SignedPayload:
    """``totalParams`` without the signature, and the signature that came with it (decoded)."""

    payload: str
    signature: str | None


def split_signature(query: str, body: str) -> SignedPayload:
    """Remove ``signature=...`` from the raw query and body; the rest stays byte-for-byte as sent."""
    query_rest, query_sig = _strip_signature(query)
    body_rest, body_sig = _strip_signature(body)
    return SignedPayload(query_rest + body_rest, query_sig if query_sig is not None else body_sig)


def _strip_signature(raw: str) -> tuple[str, str | None]:
    kept: list[str] = []
    signature = None
    for part in raw.split("&") if raw else ():
        if part.startswith("signature="):
            signature = unquote_plus(part[len("signature=") :])
        else:
            kept.append(part)
    return "&".join(kept), signature


class Params:
    """The merged parameters of one request (query wins over body)."""

    def __init__(self, query: str, body: str) -> None:
        self._values = {**_pairs(body), **_pairs(query)}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name, default)

    def require(self, name: str) -> str:
        """The value of a mandatory parameter, or -1102 when it is missing or empty."""
        value = self._values.get(name)
        if not value:
            raise mandatory(name)
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values


def _pairs(raw: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True, errors="replace"):
        if name in values:
            raise reject(-1101)
        values[name] = value
    return values
