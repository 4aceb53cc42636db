"""Signing against Binance's published vectors and RFC 8032; secrets never leak into text."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from exchange.paper import ApiCredential
from exchange.signing import (
    Ed25519Signer,
    HmacSigner,
    ed25519_signature,
    hmac_signature,
    verify_ed25519,
    verify_hmac,
)

# [FUT general-info "Signed Endpoint Examples for POST /fapi/v1/order - HMAC Keys"]
FUTURES_SECRET = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9"
FUTURES_EXAMPLE_1 = (
    "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC"
    "&recvWindow=5000&timestamp=1591702613943"
)
# Example 3 (mixed query + body). The published signature only matches with the doc's literal
# space after "timestamp=", so the space is copied on purpose.
FUTURES_EXAMPLE_3_QUERY = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
FUTURES_EXAMPLE_3_BODY = "quantity=1&price=9000&recvWindow=5000&timestamp= 1591702613943"

# [SPOT rest-api.md "SIGNED Endpoint Examples for POST /api/v3/order" - HMAC Keys]
SPOT_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
SPOT_PAYLOAD = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
SPOT_NON_ASCII_REST = (
    "&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
)

# RFC 8032 section 7.1, TEST 1 (empty message) and TEST 2 (one byte 0x72).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "r",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


def pem_pair(raw_private_hex: str) -> tuple[bytes, bytes]:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw_private_hex))
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def test_futures_example_1() -> None:
    expected = "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
    assert hmac_signature(FUTURES_SECRET, FUTURES_EXAMPLE_1) == expected


def test_futures_example_3_query_then_body_without_separator() -> None:
    payload = FUTURES_EXAMPLE_3_QUERY + FUTURES_EXAMPLE_3_BODY
    assert "GTCquantity" in payload
    expected = "f9d0ae5e813ef6ccf15c2b5a434047a0181cb5a342b903b367ca6d27a66e36f2"
    assert hmac_signature(FUTURES_SECRET, payload) == expected


def test_spot_vectors() -> None:
    expected = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
    assert hmac_signature(SPOT_SECRET, SPOT_PAYLOAD) == expected


def test_spot_non_ascii_symbol_is_percent_encoded_before_signing() -> None:
    encoded_symbol = quote("１２３４５６")
    assert encoded_symbol == "%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96"
    payload = f"symbol={encoded_symbol}{SPOT_NON_ASCII_REST}"
    expected = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
    assert hmac_signature(SPOT_SECRET, payload) == expected


def test_verify_hmac_ignores_hex_case_and_rejects_others() -> None:
    signature = hmac_signature(FUTURES_SECRET, FUTURES_EXAMPLE_1)
    assert verify_hmac(FUTURES_SECRET, FUTURES_EXAMPLE_1, signature)
    assert verify_hmac(FUTURES_SECRET, FUTURES_EXAMPLE_1, signature.upper())
    assert not verify_hmac(FUTURES_SECRET, FUTURES_EXAMPLE_1 + "&x=1", signature)
    assert not verify_hmac(FUTURES_SECRET, FUTURES_EXAMPLE_1, signature[:-1])
    assert not verify_hmac(FUTURES_SECRET, FUTURES_EXAMPLE_1, "é" * 64)


@pytest.mark.parametrize(("private_hex", "message", "signature_hex"), RFC8032)
def test_ed25519_rfc8032_vectors(private_hex: str, message: str, signature_hex: str) -> None:
    private_pem, public_pem = pem_pair(private_hex)
    signature = ed25519_signature(private_pem, message)
    assert signature == base64.b64encode(bytes.fromhex(signature_hex)).decode("ascii")
    assert verify_ed25519(public_pem, message, signature)


def test_ed25519_is_deterministic_and_round_trips_with_a_fresh_key() -> None:
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public_pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    first = ed25519_signature(private_pem, FUTURES_EXAMPLE_1)
    assert first == ed25519_signature(private_pem, FUTURES_EXAMPLE_1)
    assert first == Ed25519Signer(private_pem).sign(FUTURES_EXAMPLE_1)
    assert len(base64.b64decode(first)) == 64
    assert verify_ed25519(public_pem, FUTURES_EXAMPLE_1, first)
    assert not verify_ed25519(public_pem, FUTURES_EXAMPLE_1 + "&x=1", first)
    assert not verify_ed25519(public_pem, FUTURES_EXAMPLE_1, "not base64!")
    assert not verify_ed25519(public_pem, FUTURES_EXAMPLE_1, first.lower())  # case-sensitive


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    private_pem, public_pem = pem_pair(RFC8032[0][0])
    assert FUTURES_SECRET not in repr(HmacSigner(FUTURES_SECRET))
    assert HmacSigner(FUTURES_SECRET).sign(FUTURES_EXAMPLE_1) == hmac_signature(
        FUTURES_SECRET, FUTURES_EXAMPLE_1
    )
    assert b"PRIVATE" not in repr(Ed25519Signer(private_pem)).encode()
    credential = ApiCredential("key-1", hmac_secret=FUTURES_SECRET)
    assert FUTURES_SECRET not in repr(credential) and FUTURES_SECRET not in str(credential)
    broken = private_pem.replace(b"MC4CAQAw", b"MC4CAQAx")
    with pytest.raises(ValueError) as caught:
        ed25519_signature(broken, "x")
    assert "MC4C" not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(ValueError, match="not a PEM-encoded"):
        Ed25519Signer(public_pem)  # a public key is not a private key
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
    )
    with pytest.raises(ValueError, match="not an Ed25519"):
        Ed25519Signer(ec_pem)
