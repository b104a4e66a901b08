"""JWTs: signing with rotating keys, verification against every key still in its overlap window.

Why not simplejwt's token classes: they sign with one configured key and set no `kid`, while
K2 rotates keys (architecture 3.2) and must accept several at once. So tokens are made with
PyJWT (simplejwt's own dependency) directly:

- Keys live in `jwt_signing_keys` (private half vault-encrypted). The newest non-retired key
  signs; every key whose `verify_until` has not passed verifies. `manage.py rotate_jwt_key`
  adds a key and retires the previous one for signing, keeping it for verification for
  `K2_JWT_KEY_OVERLAP` (default: the refresh lifetime), so nobody is logged out.
- Each process caches the decrypted key set for `K2_JWT_KEYSET_CACHE_SECONDS`, and reloads at
  once on an unknown `kid`, so a key made by another replica is accepted immediately and
  signing moves to it within the cache period.
- Claims: `iss`, `aud`, `sub` (user id), `iat`, `exp`, `jti`, `token_type` (access, refresh,
  2fa_challenge; each endpoint accepts exactly one) and `session_id` on access and refresh
  tokens. Header: `kid`.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.accounts.exceptions import TokenExpired, TokenInvalid
from apps.accounts.models import SigningKey

_ALGORITHMS: dict[str, Any] = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1()}


@dataclass(frozen=True)
class LoadedKey:
    kid: str
    algorithm: str
    private_key: Any  # cryptography private key object, or None when it could not be opened
    public_key: Any
    signs: bool


KID_MAX_LENGTH = SigningKey._meta.get_field("kid").max_length or 64


class _KeySetCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}
        self._signer: str | None = None
        self._loaded_at = 0.0

    def clear(self) -> None:
        with self._lock:
            self._keys, self._signer, self._loaded_at = {}, None, 0.0

    def _load(self) -> None:
        now = timezone.now()
        rows = SigningKey.objects.filter(Q(verify_until__isnull=True) | Q(verify_until__gt=now)).order_by(
            "-created_at"
        )
        keys: dict[str, LoadedKey] = {}
        signer: str | None = None
        for row in rows:
            public = serialization.load_pem_public_key(row.public_key.encode())
            signs = row.retired_at is None and signer is None
            private = None
            if signs:
                private = serialization.load_pem_private_key(row.private_key.reveal().encode(), password=None)
                signer = row.kid
            keys[row.kid] = LoadedKey(row.kid, row.algorithm, private, public, signs)
        self._keys, self._signer, self._loaded_at = keys, signer, time.monotonic()

    def _fresh(self) -> bool:
        return bool(self._loaded_at) and (
            time.monotonic() - self._loaded_at < settings.K2_JWT_KEYSET_CACHE_SECONDS
        )

    def signer(self) -> LoadedKey:
        with self._lock:
            if not self._fresh() or self._signer is None:
                self._load()
            if self._signer is None:
                from apps.accounts.services import jwt_key_create

                jwt_key_create()
                self._load()
            assert self._signer is not None
            return self._keys[self._signer]

    def verifier(self, kid: str) -> LoadedKey | None:
        """The key named `kid`, if it verifies. A kid not loaded yet (a key made since, by
        another process) reloads the set only if a key by that name exists: a forged token's
        made-up kid costs one indexed lookup, not a reload (every key parsed, the signing key
        decrypted) under this lock."""
        with self._lock:
            if not self._fresh() or (
                kid not in self._keys
                and len(kid) <= KID_MAX_LENGTH
                and SigningKey.objects.filter(kid=kid).exists()
            ):
                self._load()
            return self._keys.get(kid)


keyset = _KeySetCache()


def generate_key_pair(algorithm: str) -> tuple[str, str]:
    """A new (private PEM, public PEM) pair for `algorithm`."""
    curve = _ALGORITHMS.get(algorithm)
    if curve is None:
        raise ValueError(f"Unsupported JWT algorithm {algorithm!r} (use one of {', '.join(_ALGORITHMS)})")
    private = ec.generate_private_key(curve)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def new_kid() -> str:
    return f"{timezone.now():%Y%m%d}-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


def encode(
    *, token_type: str, subject: str, lifetime: timedelta, claims: dict[str, Any] | None = None
) -> IssuedToken:
    key = keyset.signer()
    now = int(time.time())
    exp = now + int(lifetime.total_seconds())
    jti = uuid.uuid4().hex
    payload: dict[str, Any] = {
        "iss": settings.K2_JWT_ISSUER,
        "aud": settings.K2_JWT_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": exp,
        "jti": jti,
        "token_type": token_type,
        **(claims or {}),
    }
    token = jwt.encode(payload, key.private_key, algorithm=key.algorithm, headers={"kid": key.kid})
    return IssuedToken(token, jti, datetime.fromtimestamp(exp, tz=UTC))


# Tokens this process has verified: a client sends the same access token with every request
# until it expires, and checking its ECDSA signature again costs ~0.4 ms of CPU each time. Keyed
# by the exact token, issuer and audience; a hit still checks expiry, and that its key is still
# the one the key set holds (a reload or a removed key means verifying again).
_VERIFIED: dict[tuple[str, str, str], tuple[dict[str, Any], LoadedKey]] = {}
_VERIFIED_MAX = 4096
_verified_lock = threading.Lock()


def decode(token: Any, *, token_type: str) -> dict[str, Any]:
    """Verify signature, issuer, audience, expiry and type; return the claims.

    Raises `TokenExpired` for an expired but otherwise valid token and `TokenInvalid` for
    anything else (malformed, forged, unknown key, wrong type).
    """
    # A JWT is ASCII (base64url segments and dots). Anything else is garbage, and some of it
    # would not reach PyJWT's own errors: a lone surrogate ("a\ud800b", which a JSON WebSocket
    # message can carry) fails its UTF-8 encoding with UnicodeEncodeError.
    if not isinstance(token, str) or not token or len(token) > 4096 or not token.isascii():
        raise TokenInvalid()
    cache_key = (token, settings.K2_JWT_ISSUER, settings.K2_JWT_AUDIENCE)
    hit = _VERIFIED.get(cache_key)
    if hit is not None and keyset.verifier(hit[1].kid) is hit[1]:
        claims = hit[0]
        if claims["exp"] <= time.time() - settings.K2_JWT_LEEWAY_SECONDS:
            raise TokenExpired()
    else:
        claims, key = _verify(token)
        with _verified_lock:
            if len(_VERIFIED) >= _VERIFIED_MAX:
                _VERIFIED.clear()
            _VERIFIED[cache_key] = (claims, key)
    if claims.get("token_type") != token_type:
        raise TokenInvalid("This kind of token is not accepted here.", details={"expected": token_type})
    return dict(claims)


def _verify(token: str) -> tuple[dict[str, Any], LoadedKey]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenInvalid() from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenInvalid()
    key = keyset.verifier(kid)
    if key is None:
        raise TokenInvalid()
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.algorithm],
            audience=settings.K2_JWT_AUDIENCE,
            issuer=settings.K2_JWT_ISSUER,
            leeway=settings.K2_JWT_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "sub", "jti", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.InvalidTokenError:
        raise TokenInvalid() from None
    return claims, key
