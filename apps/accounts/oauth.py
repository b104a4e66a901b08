"""Google and Apple sign-in: verify the provider's ID token (an OpenID Connect JWT).

Checks: signature against the provider's JWKS (fetched with httpx, cached in Redis for
`K2_OAUTH_JWKS_CACHE_SECONDS`, refetched at most once a minute when a token names an unknown
`kid`, so the provider's key rotation is picked up), `iss` in the configured issuers, `aud` in
the configured client ids, `exp`/`iat` present and current, `sub` present, and the nonce:
the client sends the raw nonce it put in the authorisation request; the token's `nonce` claim
must equal it, or its SHA-256 hex digest (what Apple's native SDKs put in the token). A nonce
is accepted once per provider (Redis), so a captured ID token cannot be replayed.

Why PyJWT + httpx rather than django-allauth's providers: allauth's ID token verification is
bound to its own social-account models, sites framework and `requests`-based fetches; K2 only
needs the verification step, with a configurable JWKS URL, an httpx fetch and a shared cache.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from django.conf import settings
from django.core.cache import cache

from apps.accounts.choices import OAuthProvider
from apps.accounts.exceptions import OAuthNotConfigured, OAuthProviderUnavailable, OAuthTokenInvalid
from k2.observability.logging import get_logger

log = get_logger(__name__)

_ALGORITHMS = ["RS256", "ES256"]
_REFETCH_GUARD_SECONDS = 60


@dataclass(frozen=True)
class ProviderConfig:
    name: str
    jwks_url: str
    issuers: list[str]
    client_ids: list[str]


@dataclass(frozen=True)
class VerifiedIdentity:
    provider: str
    subject: str
    email: str
    email_verified: bool
    claims: dict[str, Any]


def provider_config(provider: str) -> ProviderConfig:
    if provider == OAuthProvider.GOOGLE:
        return ProviderConfig(
            provider,
            settings.K2_OAUTH_GOOGLE_JWKS_URL,
            list(settings.K2_OAUTH_GOOGLE_ISSUERS),
            list(settings.K2_OAUTH_GOOGLE_CLIENT_IDS),
        )
    if provider == OAuthProvider.APPLE:
        return ProviderConfig(
            provider,
            settings.K2_OAUTH_APPLE_JWKS_URL,
            list(settings.K2_OAUTH_APPLE_ISSUERS),
            list(settings.K2_OAUTH_APPLE_CLIENT_IDS),
        )
    raise OAuthNotConfigured()


def _cache_key(url: str) -> str:
    return "accounts:jwks:" + hashlib.sha256(url.encode()).hexdigest()


def _fetch_jwks(url: str) -> dict[str, Any]:
    try:
        response = httpx.get(url, timeout=settings.K2_OAUTH_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, json.JSONDecodeError, ValueError) as exc:
        log.warning("oauth_jwks_fetch_failed", url=url, error_type=type(exc).__name__)
        raise OAuthProviderUnavailable() from None
    if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
        log.warning("oauth_jwks_malformed", url=url)
        raise OAuthProviderUnavailable()
    cache.set(_cache_key(url), body, settings.K2_OAUTH_JWKS_CACHE_SECONDS)
    return body


def _find_key(jwks: dict[str, Any], kid: str) -> dict[str, Any] | None:
    for key in jwks.get("keys", []):
        if isinstance(key, dict) and key.get("kid") == kid:
            return key
    return None


def jwk_for(url: str, kid: str) -> dict[str, Any] | None:
    """The JWK named `kid` from the provider's JWKS (cached; one refetch on a miss, rate-limited)."""
    jwks = cache.get(_cache_key(url))
    if jwks is None:
        jwks = _fetch_jwks(url)
    found = _find_key(jwks, kid)
    if found is None and cache.add(_cache_key(url) + ":refetch", 1, _REFETCH_GUARD_SECONDS):
        found = _find_key(_fetch_jwks(url), kid)
    return found


def _nonce_matches(claim: Any, nonce: str) -> bool:
    if not isinstance(claim, str) or not claim:
        return False
    digest = hashlib.sha256(nonce.encode()).hexdigest()
    return hmac.compare_digest(claim, nonce) or hmac.compare_digest(claim, digest)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def verify_id_token(*, provider: str, id_token: str, nonce: str | None) -> VerifiedIdentity:
    """Verify an ID token from `provider`; raise `OAuthTokenInvalid` (with a reason) if it fails."""
    config = provider_config(provider)
    if not config.client_ids or not config.issuers or not config.jwks_url:
        raise OAuthNotConfigured()
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.InvalidTokenError:
        raise OAuthTokenInvalid(details={"reason": "malformed"}) from None
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(kid, str) or alg not in _ALGORITHMS:
        raise OAuthTokenInvalid(details={"reason": "unsupported_key"})
    jwk = jwk_for(config.jwks_url, kid)
    if jwk is None:
        raise OAuthTokenInvalid(details={"reason": "unknown_key"})
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
        claims: dict[str, Any] = jwt.decode(
            id_token,
            key,
            algorithms=[alg],
            audience=config.client_ids,
            issuer=config.issuers,
            leeway=settings.K2_JWT_LEEWAY_SECONDS,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise OAuthTokenInvalid(details={"reason": "expired"}) from None
    except jwt.InvalidAudienceError:
        raise OAuthTokenInvalid(details={"reason": "audience"}) from None
    except jwt.InvalidIssuerError:
        raise OAuthTokenInvalid(details={"reason": "issuer"}) from None
    except jwt.InvalidSignatureError:
        raise OAuthTokenInvalid(details={"reason": "signature"}) from None
    except (jwt.InvalidTokenError, jwt.PyJWKError, ValueError, TypeError):
        raise OAuthTokenInvalid(details={"reason": "invalid"}) from None

    if nonce or settings.K2_OAUTH_REQUIRE_NONCE or "nonce" in claims:
        if not nonce or not _nonce_matches(claims.get("nonce"), nonce):
            raise OAuthTokenInvalid(details={"reason": "nonce"})
        ttl = max(int(claims["exp"]) - int(claims["iat"]), 60) + settings.K2_JWT_LEEWAY_SECONDS
        nonce_key = f"accounts:oauth-nonce:{provider}:{hashlib.sha256(nonce.encode()).hexdigest()}"
        if not cache.add(nonce_key, 1, ttl):
            raise OAuthTokenInvalid(details={"reason": "replayed"})

    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise OAuthTokenInvalid(details={"reason": "subject"})
    email = claims.get("email")
    return VerifiedIdentity(
        provider=provider,
        subject=subject,
        email=email.strip().lower() if isinstance(email, str) else "",
        email_verified=_truthy(claims.get("email_verified")),
        claims=claims,
    )
