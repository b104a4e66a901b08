"""Google and Apple sign-in against a JWKS served on 127.0.0.1 with keys generated here."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from apps.accounts.models import OAuthIdentity, Session, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, data, error, make_client, post

pytestmark = pytest.mark.django_db(transaction=True)

GOOGLE_ISS = "https://accounts.google.com"
GOOGLE_AUD = "k2-web.apps.googleusercontent.com"
APPLE_ISS = "https://appleid.apple.com"
APPLE_AUD = "com.k2.app"


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make: one per name for the whole run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class JwksServer:
    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}  # kid -> private key
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps({"keys": [server.public_jwk(kid) for kid in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/keys"

    def add_rsa(self, kid: str) -> None:
        self.keys[kid] = rsa_key(kid)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def public_jwk(self, kid: str) -> dict[str, Any]:
        key = self.keys[kid]
        if isinstance(key, rsa.RSAPrivateKey):
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "RS256"
        else:
            jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
            jwk["alg"] = "ES256"
        jwk.update(kid=kid, use="sig")
        return jwk

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks(settings):
    server = JwksServer()
    server.add_rsa("google-1")
    server.add_ec("apple-1")
    settings.K2_OAUTH_GOOGLE_JWKS_URL = server.url
    settings.K2_OAUTH_GOOGLE_ISSUERS = [GOOGLE_ISS]
    settings.K2_OAUTH_GOOGLE_CLIENT_IDS = [GOOGLE_AUD]
    settings.K2_OAUTH_APPLE_JWKS_URL = server.url
    settings.K2_OAUTH_APPLE_ISSUERS = [APPLE_ISS]
    settings.K2_OAUTH_APPLE_CLIENT_IDS = [APPLE_AUD]
    yield server
    server.close()


def id_token(
    key: Any,
    kid: str,
    *,
    iss: str = GOOGLE_ISS,
    aud: str = GOOGLE_AUD,
    sub: str = "google-sub-1",
    email: str = "gina@example.com",
    email_verified: Any = True,
    nonce: str | None = "nonce-1",
    exp_in: int = 600,
    alg: str = "RS256",
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": iss, "aud": aud, "sub": sub, "email": email, "email_verified": email_verified,
        "iat": now - 5, "exp": now + exp_in,
    }  # fmt: skip
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def google(jwks: JwksServer, **kw: Any) -> str:
    return id_token(jwks.keys["google-1"], "google-1", **kw)


def sign_in(provider: str, token: str, nonce: str | None = "nonce-1"):
    body: dict[str, Any] = {"id_token": token}
    if nonce is not None:
        body["nonce"] = nonce
    return post(make_client(), f"/v1/auth/oauth/{provider}", body)


def test_google_good_token_creates_user_and_signs_in(jwks):
    body = data(sign_in("google", google(jwks)))
    assert body["status"] == "authenticated"
    assert body["created"] is True
    user = User.objects.get(email="gina@example.com")
    assert user.email_verified is True
    assert not user.has_usable_password()
    assert OAuthIdentity.objects.get(provider="google").user == user
    assert Session.objects.get(pk=body["session_id"]).auth_method == "google"
    assert AuditEntry.objects.filter(action="auth.oauth_login", actor_id=user.id).exists()
    assert AuditEntry.objects.filter(action="auth.oauth_linked").exists()

    # Second sign-in (new nonce) finds the same user through the identity.
    again = data(sign_in("google", google(jwks, nonce="nonce-2"), nonce="nonce-2"))
    assert "created" not in again
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("forged", "signature"),
        ("expired", "expired"),
        ("wrong_audience", "audience"),
        ("wrong_issuer", "issuer"),
        ("bad_nonce", "nonce"),
        ("no_nonce", "nonce"),
        ("unknown_kid", "unknown_key"),
        ("garbage", "malformed"),
    ],
)
def test_bad_google_tokens_are_refused(jwks, case, reason):
    other = rsa_key("attacker")
    tokens = {
        "forged": id_token(other, "google-1"),  # right kid, someone else's key
        "expired": google(jwks, exp_in=-3600),
        "wrong_audience": google(jwks, aud="someone-elses-client"),
        "wrong_issuer": google(jwks, iss="https://evil.example"),
        "bad_nonce": google(jwks, nonce="another-nonce"),
        "no_nonce": google(jwks, nonce=None),
        "unknown_kid": id_token(other, "not-in-jwks"),
        "garbage": "not.a.jwt",
    }
    err = error(sign_in("google", tokens[case]), 401, "OAUTH_TOKEN_INVALID")
    assert err["details"]["reason"] == reason
    assert User.objects.count() == 0
    assert Session.objects.count() == 0
    assert AuditEntry.objects.filter(action="auth.oauth_failed").exists()


def test_missing_nonce_in_request_is_refused(jwks):
    error(sign_in("google", google(jwks), nonce=None), 401, "OAUTH_TOKEN_INVALID")


def test_replayed_id_token_is_refused(jwks):
    token = google(jwks)
    data(sign_in("google", token))
    err = error(sign_in("google", token), 401, "OAUTH_TOKEN_INVALID")
    assert err["details"]["reason"] == "replayed"


def test_apple_token_with_hashed_nonce_signs_in(jwks):
    raw = "apple-raw-nonce"
    token = id_token(
        jwks.keys["apple-1"],
        "apple-1",
        iss=APPLE_ISS,
        aud=APPLE_AUD,
        sub="apple-sub",
        email="ann@privaterelay.appleid.com",
        email_verified="true",
        nonce=hashlib.sha256(raw.encode()).hexdigest(),
        alg="ES256",
    )
    body = data(sign_in("apple", token, nonce=raw))
    assert body["status"] == "authenticated"
    assert OAuthIdentity.objects.get(provider="apple").provider_user_id == "apple-sub"


def test_google_token_is_not_accepted_at_apple(jwks):
    error(sign_in("apple", google(jwks)), 401, "OAUTH_TOKEN_INVALID")


def test_rotated_provider_key_is_fetched(jwks):
    data(sign_in("google", google(jwks)))  # JWKS now cached
    jwks.add_rsa("google-2")
    token = id_token(jwks.keys["google-2"], "google-2", nonce="n2")
    assert data(sign_in("google", token, nonce="n2"))["status"] == "authenticated"


def test_unverified_provider_email_does_not_take_over_existing_account(jwks, user_factory):
    user_factory("gina@example.com")
    error(sign_in("google", google(jwks, email_verified=False)), 409, "OAUTH_EMAIL_CONFLICT")
    assert OAuthIdentity.objects.count() == 0


def test_verified_provider_email_links_and_discards_unproven_password(jwks, user_factory):
    squatter = user_factory("gina@example.com")  # registered by someone who never verified the email
    squatter_login = data(
        post(make_client(), "/v1/auth/login", {"email": "gina@example.com", "password": PASSWORD})
    )
    data(sign_in("google", google(jwks)))
    squatter.refresh_from_db()
    assert not squatter.has_usable_password()
    assert squatter.email_verified
    assert Session.objects.get(pk=squatter_login["session_id"]).revoked_at is not None
    error(
        post(make_client(), "/v1/auth/login", {"email": "gina@example.com", "password": PASSWORD}),
        401,
        "INVALID_CREDENTIALS",
    )


def test_verified_account_is_linked_and_keeps_password(jwks, user_factory):
    owner = user_factory("gina@example.com", email_verified=True)
    data(sign_in("google", google(jwks)))
    owner.refresh_from_db()
    assert owner.has_usable_password()
    assert OAuthIdentity.objects.get().user == owner


def test_oauth_user_with_2fa_gets_a_challenge(jwks, user_factory):
    user_factory("gina@example.com", email_verified=True, totp_enabled=True)
    body = data(sign_in("google", google(jwks)))
    assert body["status"] == "two_factor_required"
    assert "access_token" not in body


def test_unconfigured_provider_is_refused(jwks, settings):
    settings.K2_OAUTH_GOOGLE_CLIENT_IDS = []
    error(sign_in("google", google(jwks)), 503, "OAUTH_NOT_CONFIGURED")


def test_unreachable_jwks_is_a_503_not_a_500(jwks, settings):
    settings.K2_OAUTH_GOOGLE_JWKS_URL = "http://127.0.0.1:9/keys"
    error(sign_in("google", google(jwks)), 503, "OAUTH_PROVIDER_UNAVAILABLE")


def test_jwks_is_cached(jwks):
    data(sign_in("google", google(jwks)))
    before = jwks.requests
    data(sign_in("google", google(jwks, nonce="n3"), nonce="n3"))
    assert jwks.requests == before
