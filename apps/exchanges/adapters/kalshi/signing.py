"""Kalshi request signing (spec section 2): RSA-PSS over `timestamp_ms + METHOD + path`.

- `path` is the URL path from the host root, *including* `/trade-api/v2`, without the query string;
  the body is never signed. The WebSocket upgrade signs `GET /trade-api/ws/v2`.
- RSA-PSS with SHA-256, MGF1(SHA-256) and a salt as long as the digest (32 bytes); base64 (standard,
  padded). PSS is randomised: two signatures of one message differ, so servers verify, never compare.
"""

from __future__ import annotations

import base64
import time
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from apps.exchanges.adapters import errors as ex

KEY_HEADER = "KALSHI-ACCESS-KEY"
TIMESTAMP_HEADER = "KALSHI-ACCESS-TIMESTAMP"
SIGNATURE_HEADER = "KALSHI-ACCESS-SIGNATURE"

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def signed_path(url_or_path: str) -> str:
    """The part of a URL that is signed: its path, query string and fragment stripped."""
    if "://" in url_or_path:
        return urlsplit(url_or_path).path
    return url_or_path.split("?", 1)[0]


def message(timestamp_ms: str | int, method: str, path: str) -> bytes:
    return f"{timestamp_ms}{method.upper()}{signed_path(path)}".encode()


@lru_cache(maxsize=256)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Load a PEM private key (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8). Raises `AuthFailed`."""
    try:
        key = serialization.load_pem_private_key(pem.strip().encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ex.AuthFailed("the Kalshi private key is not a readable PEM RSA key", venue="kalshi") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ex.AuthFailed("the Kalshi private key must be an RSA key", venue="kalshi")
    return key


def sign(key: rsa.RSAPrivateKey, timestamp_ms: str | int, method: str, path: str) -> str:
    """base64(RSA-PSS-SHA256(timestamp_ms + METHOD + path-without-query))."""
    return base64.b64encode(key.sign(message(timestamp_ms, method, path), PSS, hashes.SHA256())).decode()


def verify(
    public_key: rsa.RSAPublicKey, signature_b64: str, timestamp_ms: str, method: str, path: str
) -> bool:
    """Server side: does `signature_b64` sign this request? (Never a string comparison.)"""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message(timestamp_ms, method, path), PSS, hashes.SHA256())
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def auth_headers(
    key_id: str, private_key_pem: str, method: str, path: str, *, now_ms: int | None = None
) -> dict[str, str]:
    """The three signed headers for one request (REST or the WebSocket upgrade)."""
    ts = str(now_ms if now_ms is not None else int(time.time() * 1000))
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: sign(load_private_key(private_key_pem), ts, method, path),
    }


def generate_private_key_pem(bits: int = 2048) -> tuple[str, rsa.RSAPublicKey]:
    """A new RSA key as Kalshi hands it out (PKCS#1 PEM) and its public half (simulators, tests)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()
