"""Review fixes: OAuth accounts from unverified emails, concurrent login guesses, reset links
after a password change, and the cost of a login against an OAuth-only account."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connections

from apps.accounts.models import AccountToken, OAuthIdentity, Session, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, data, error, get, login, make_client, post, token_from_mail
from tests.accounts.test_oauth import (
    GOOGLE_AUD,
    GOOGLE_ISS,
    JwksServer,
    google,
    sign_in,
)

pytestmark = pytest.mark.django_db(transaction=True)

COUNTING_HASHER = f"{__name__}.CountingHasher"


class CountingHasher(PBKDF2PasswordHasher):
    """Django's PBKDF2 hasher (cheap settings), counting every hash it computes. `delay` widens
    the window a concurrent login has between counting an attempt and checking its password."""

    iterations = 1000
    delay = 0.0
    calls = 0
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def reset(cls, *, delay: float = 0.0) -> None:
        with cls._lock:
            cls.calls = 0
        cls.delay = delay

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        with CountingHasher._lock:
            CountingHasher.calls += 1
        time.sleep(CountingHasher.delay)
        return super().encode(password, salt, iterations)


@pytest.fixture
def hasher(settings) -> type[CountingHasher]:
    settings.PASSWORD_HASHERS = [COUNTING_HASHER]
    CountingHasher.reset()
    return CountingHasher


@pytest.fixture
def jwks(settings):
    server = JwksServer()
    server.add_rsa("google-1")
    settings.K2_OAUTH_GOOGLE_JWKS_URL = server.url
    settings.K2_OAUTH_GOOGLE_ISSUERS = [GOOGLE_ISS]
    settings.K2_OAUTH_GOOGLE_CLIENT_IDS = [GOOGLE_AUD]
    yield server
    server.close()


def attempt(email: str, password: str, ip: str = "203.0.113.10"):
    return post(make_client(ip=ip), "/v1/auth/login", {"email": email, "password": password})


# --- 1. OAuth and unverified provider emails -------------------------------------------------------


def test_unverified_provider_email_creates_no_account(jwks):
    attacker = {"sub": "attacker-sub", "email": "victim@example.com", "email_verified": False}
    err = error(sign_in("google", google(jwks, **attacker)), 400, "OAUTH_EMAIL_REQUIRED")
    assert "verified" in err["message"]
    assert User.objects.count() == 0
    assert OAuthIdentity.objects.count() == 0
    assert Session.objects.count() == 0

    # The owner registers and proves the address; the attacker's identity still gets nowhere.
    client = make_client()
    post(client, "/v1/auth/register", {"email": "victim@example.com", "password": PASSWORD})
    data(post(client, "/v1/auth/verify-email", {"token": token_from_mail("verify-email")}))
    again = google(jwks, nonce="nonce-2", **attacker)
    error(sign_in("google", again, nonce="nonce-2"), 409, "OAUTH_EMAIL_CONFLICT")
    assert OAuthIdentity.objects.count() == 0
    assert Session.objects.count() == 0


def test_reset_removes_identity_linked_while_the_address_was_unverified(jwks):
    # An account made (before the fix) from an attacker's token with email_verified=false.
    victim = User.objects.create_user("victim@example.com", None, email_verified=False)
    OAuthIdentity.objects.create(
        user=victim, provider="google", provider_user_id="attacker-sub", email="victim@example.com"
    )
    client = make_client()
    post(client, "/v1/auth/password/reset", {"email": "victim@example.com"})
    new = "the real owner's passphrase"
    reset = {"token": token_from_mail("reset-password"), "new_password": new}
    data(post(client, "/v1/auth/password/reset/confirm", reset))
    victim.refresh_from_db()
    assert victim.email_verified
    assert OAuthIdentity.objects.count() == 0
    assert AuditEntry.objects.filter(action="auth.oauth_unlinked", actor_id=victim.id).exists()

    token = google(jwks, sub="attacker-sub", email="victim@example.com", email_verified=False)
    error(sign_in("google", token), 409, "OAUTH_EMAIL_CONFLICT")
    assert not Session.objects.filter(user=victim, auth_method="google").exists()
    assert login(make_client(), "victim@example.com", new)["status"] == "authenticated"


def test_reset_keeps_identity_of_a_verified_account(jwks, user_factory):
    owner = user_factory("gina@example.com", email_verified=True)
    data(sign_in("google", google(jwks)))
    client = make_client()
    post(client, "/v1/auth/password/reset", {"email": "gina@example.com"})
    reset = {"token": token_from_mail("reset-password"), "new_password": "another good passphrase"}
    data(post(client, "/v1/auth/password/reset/confirm", reset))
    assert OAuthIdentity.objects.get().user == owner
    assert (
        data(sign_in("google", google(jwks, nonce="nonce-2"), nonce="nonce-2"))["status"] == "authenticated"
    )


# --- 2. concurrent wrong-password logins ---------------------------------------------------------------


def test_concurrent_wrong_passwords_stop_at_the_account_limit(user_factory, settings, hasher):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 5
    user_factory("race@example.com")
    hasher.reset(delay=0.3)  # each password check takes 0.3 s: all 15 requests overlap
    attempts = 15
    start = threading.Barrier(attempts)

    def guess(i: int) -> int:
        try:
            start.wait(timeout=30)
            return attempt("race@example.com", f"wrong guess {i}", ip=f"198.51.100.{i + 1}").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        statuses = list(pool.map(guess, range(attempts)))

    assert sorted(set(statuses)) == [401, 429], statuses
    assert statuses.count(401) == 5
    assert statuses.count(429) == attempts - 5
    assert hasher.calls == 5  # only the counted attempts had their password checked
    assert AuditEntry.objects.filter(action="auth.login_failed").count() == 5
    hasher.reset()
    error(attempt("race@example.com", PASSWORD), 429, "RATE_LIMITED")  # still locked
    assert hasher.calls == 0


def test_concurrent_wrong_passwords_from_one_address_stop_at_the_ip_limit(user_factory, settings, hasher):
    """Credential stuffing: one address, many accounts at once."""
    settings.K2_LOGIN_MAX_FAILURES_PER_IP = 5
    attempts = 15
    for i in range(attempts):
        user_factory(f"stuffed{i}@example.com")
    hasher.reset(delay=0.3)
    start = threading.Barrier(attempts)

    def guess(i: int) -> int:
        try:
            start.wait(timeout=30)
            return attempt(f"stuffed{i}@example.com", "wrong guess", ip="203.0.113.77").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        statuses = list(pool.map(guess, range(attempts)))

    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == attempts - 5
    assert hasher.calls == 5


def test_successes_from_one_address_do_not_use_up_its_limit(user_factory, settings):
    settings.K2_LOGIN_MAX_FAILURES_PER_IP = 2
    user_factory("shared-ip@example.com")
    for _ in range(5):  # more than the limit: each success takes its attempt back
        assert login(make_client(ip="203.0.113.88"), "shared-ip@example.com")["status"] == "authenticated"
    error(attempt("shared-ip@example.com", "wrong guess", ip="203.0.113.88"), 401, "INVALID_CREDENTIALS")


def test_success_clears_the_counted_attempt(user_factory, settings):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 2
    user_factory("ok@example.com")
    for _ in range(5):  # more successes than the limit: each clears its own count
        assert login(make_client(), "ok@example.com")["status"] == "authenticated"
    error(attempt("ok@example.com", "wrong guess"), 401, "INVALID_CREDENTIALS")
    assert login(make_client(), "ok@example.com")["status"] == "authenticated"


# --- 3. reset links after a password change -------------------------------------------------------------


def test_password_change_spends_outstanding_reset_links(user_factory):
    user_factory("pc@example.com")
    client = make_client()
    post(client, "/v1/auth/password/reset", {"email": "pc@example.com"})
    reset_token = token_from_mail("reset-password")
    access = login(client, "pc@example.com")["access_token"]
    changed = {"current_password": PASSWORD, "new_password": "changed passphrase for pc"}
    data(post(client, "/v1/auth/password/change", changed, access))
    assert not AccountToken.objects.filter(used_at__isnull=True).exists()

    stale = {"token": reset_token, "new_password": "attacker passphrase 123"}
    error(post(client, "/v1/auth/password/reset/confirm", stale), 400, "EMAIL_TOKEN_INVALID")
    assert data(get(client, "/v1/users/me", access))["email"] == "pc@example.com"
    assert login(make_client(), "pc@example.com", "changed passphrase for pc")["status"] == "authenticated"


def test_concurrent_wrong_current_passwords_stop_at_the_account_limit(user_factory, settings, hasher):
    """A stolen session guessing the current password in parallel shares the account's limit."""
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 5
    user_factory("guessed@example.com")
    access = login(make_client(), "guessed@example.com")["access_token"]
    hasher.reset(delay=0.3)
    attempts = 15
    start = threading.Barrier(attempts)

    def guess(i: int) -> int:
        try:
            start.wait(timeout=30)
            body = {"current_password": f"wrong guess {i}", "new_password": "a brand new passphrase 42"}
            return post(make_client(), "/v1/auth/password/change", body, access).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        statuses = list(pool.map(guess, range(attempts)))

    assert statuses.count(429) == attempts - 5, statuses
    assert hasher.calls == 5


def test_a_password_change_takes_its_attempt_back(user_factory, settings):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 1
    user_factory("changer@example.com")
    client = make_client()
    access = login(client, "changer@example.com")["access_token"]
    changed = {"current_password": PASSWORD, "new_password": "changed passphrase number 1"}
    data(post(client, "/v1/auth/password/change", changed, access))
    # Not counted as a failure: a wrong guess right after is still a 401-type refusal, not a 429.
    error(attempt("changer@example.com", "wrong guess"), 401, "INVALID_CREDENTIALS")


# --- 4. login cost for OAuth-only accounts --------------------------------------------------------------


@pytest.mark.parametrize("case", ["oauth_only", "wrong_password", "unknown_email"])
def test_every_failed_login_costs_one_password_hash(user_factory, hasher, case):
    user_factory("pw@example.com")
    user_factory("oauth@example.com", password=None)
    email = {"oauth_only": "oauth@example.com", "wrong_password": "pw@example.com"}.get(
        case, "ghost@example.com"
    )
    hasher.reset()
    error(attempt(email, "wrong guess 123"), 401, "INVALID_CREDENTIALS")
    assert hasher.calls == 1
