"""Request signatures for Binance USDⓈ-M SIGNED (TRADE / USER_DATA) endpoints.

Binance signs ``totalParams``: the query string followed directly by the request body, with no
separator between them, exactly as the bytes are sent (already percent-encoded)
[FUT general-info "SIGNED (TRADE and USER_DATA) Endpoint security"].

- HMAC keys: ``signature`` = hex HMAC-SHA256(secretKey, totalParams). Binance compares it
  case-insensitively.
- Ed25519 keys: ``signature`` = standard base64 of the Ed25519 signature of totalParams. It is
  case-sensitive, and the sender must percent-encode it (``+``, ``/``, ``=``) when sending.

No function here puts a secret or key material into a repr, a log line or an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

__all__ = [
    "Ed25519Signer",
    "HmacSigner",
    "ed25519_signature",
    "hmac_signature",
    "verify_ed25519",
    "verify_hmac",
]


def hmac_signature(secret: str, payload: str) -> str:
    """Lower-case hex HMAC-SHA256 of ``payload`` keyed with ``secret`` (both UTF-8)."""
    return hmac.new(secret.encode("utf-8"), payload.encode("utf-8"), hashlib.sha256).hexdigest()


def verify_hmac(secret: str, payload: str, signature: str) -> bool:
    """True if ``signature`` is the HMAC of ``payload``; hex case is ignored, as Binance does."""
    expected = hmac_signature(secret, payload).encode("ascii")
    given = signature.lower().encode("utf-8", "replace")
    return hmac.compare_digest(expected, given)


def ed25519_signature(private_key_pem: bytes, payload: str) -> str:
    """Standard base64 of the Ed25519 signature of ``payload`` (not percent-encoded)."""
    key = _load_private_key(private_key_pem)
    return base64.b64encode(key.sign(payload.encode("utf-8"))).decode("ascii")


def verify_ed25519(public_key_pem: bytes, payload: str, signature_b64: str) -> bool:
    """True if ``signature_b64`` (standard base64, already percent-decoded) signs ``payload``."""
    key = _load_public_key(public_key_pem)
    try:
        raw = base64.b64decode(signature_b64.encode("ascii"), validate=True)
        key.verify(raw, payload.encode("utf-8"))
    except (InvalidSignature, binascii.Error, UnicodeEncodeError, ValueError):
        return False
    return True


class HmacSigner:
    """Holds an HMAC secret and signs payloads with it; the secret never shows in its repr."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("HMAC secret is empty")
        self._secret = secret

    def sign(self, payload: str) -> str:
        return hmac_signature(self._secret, payload)

    def __repr__(self) -> str:
        return "HmacSigner(secret=<redacted>)"


class Ed25519Signer:
    """Holds an Ed25519 private key and signs payloads with it; the key never shows in its repr."""

    __slots__ = ("_key",)

    def __init__(self, private_key_pem: bytes) -> None:
        self._key = _load_private_key(private_key_pem)

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode("utf-8"))).decode("ascii")

    def __repr__(self) -> str:
        return "Ed25519Signer(private_key=<redacted>)"


def _load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # `from None`: the parser's own message is not shown, so nothing about the key leaks.
        raise ValueError("not a PEM-encoded, unencrypted private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the private key is not an Ed25519 key")
    return key


def _load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a PEM-encoded public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    return key
