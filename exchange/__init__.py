"""ep4's exchange layer: the Binance USDⓈ-M client, request signing and a compatible paper exchange."""

from exchange.client import (
    BASE_URLS,
    BinanceClient,
    Credentials,
    CredentialsError,
    ExchangeReadError,
    ExchangeReply,
    fetch_constraints_raw,
    fetch_context,
    fetch_server_time,
)
from exchange.paper import (
    ApiCredential,
    Fault,
    FaultKind,
    PaperExchange,
    PaperResponse,
    PaperServer,
    PaperTransport,
    paper_asgi_app,
    serve,
)
from exchange.signing import ed25519_signature, hmac_signature

__all__ = [
    "ApiCredential",
    "BASE_URLS",
    "BinanceClient",
    "Credentials",
    "CredentialsError",
    "ExchangeReadError",
    "ExchangeReply",
    "Fault",
    "FaultKind",
    "PaperExchange",
    "PaperResponse",
    "PaperServer",
    "PaperTransport",
    "ed25519_signature",
    "fetch_constraints_raw",
    "fetch_context",
    "fetch_server_time",
    "hmac_signature",
    "paper_asgi_app",
    "serve",
]
