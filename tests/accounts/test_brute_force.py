"""Failed logins are limited per account and per IP (429 + Retry-After) and audited."""

from __future__ import annotations

import pytest
from rest_framework.throttling import SimpleRateThrottle

from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, error, login, make_client, post

pytestmark = pytest.mark.django_db(transaction=True)


def test_account_is_throttled_after_failures(user_factory, settings):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 3
    user_factory("bf@example.com")
    for i in range(3):
        client = make_client(ip=f"203.0.113.{i + 1}")  # different IPs: the account limit applies
        error(
            post(client, "/v1/auth/login", {"email": "bf@example.com", "password": "wrong guess 123"}),
            401,
            "INVALID_CREDENTIALS",
        )
    response = post(
        make_client(ip="203.0.113.99"), "/v1/auth/login", {"email": "BF@example.com", "password": PASSWORD}
    )
    err = error(response, 429, "RATE_LIMITED")
    assert 0 < int(response["Retry-After"]) <= 900
    assert err["details"]["retry_after_seconds"] == int(response["Retry-After"])
    assert AuditEntry.objects.filter(action="auth.login_failed").count() == 3
    assert AuditEntry.objects.filter(action="auth.login_throttled", details__scope="account").exists()


def test_ip_is_throttled_across_accounts(settings):
    settings.K2_LOGIN_MAX_FAILURES_PER_IP = 4
    client = make_client(ip="198.51.100.50")
    for i in range(4):
        error(
            post(client, "/v1/auth/login", {"email": f"u{i}@example.com", "password": "wrong guess 123"}),
            401,
            "INVALID_CREDENTIALS",
        )
    response = post(client, "/v1/auth/login", {"email": "someone@example.com", "password": "whatever"})
    error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"]
    # Another IP is not affected.
    error(
        post(make_client(ip="198.51.100.51"), "/v1/auth/login", {"email": "x@example.com", "password": "y"}),
        401,
        "INVALID_CREDENTIALS",
    )


def test_success_resets_the_account_counter(user_factory, settings):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 3
    user_factory("ok@example.com")
    client = make_client()
    for _ in range(2):
        error(
            post(client, "/v1/auth/login", {"email": "ok@example.com", "password": "nope nope"}),
            401,
            "INVALID_CREDENTIALS",
        )
    login(client, "ok@example.com")
    for _ in range(2):
        error(
            post(client, "/v1/auth/login", {"email": "ok@example.com", "password": "nope nope"}),
            401,
            "INVALID_CREDENTIALS",
        )
    assert login(client, "ok@example.com")["status"] == "authenticated"


def test_unknown_email_and_wrong_password_look_alike(user_factory):
    user_factory("real@example.com")
    a = error(
        post(make_client(), "/v1/auth/login", {"email": "real@example.com", "password": "wrong"}),
        401,
        "INVALID_CREDENTIALS",
    )
    b = error(
        post(make_client(), "/v1/auth/login", {"email": "ghost@example.com", "password": "wrong"}),
        401,
        "INVALID_CREDENTIALS",
    )
    assert a == b


def test_request_rate_limit_on_auth_endpoints(monkeypatch):
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "auth_email": "2/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    client = make_client(ip="192.0.2.1")
    for _ in range(2):
        assert post(client, "/v1/auth/password/reset", {"email": "a@example.com"}).status_code == 202
    response = post(client, "/v1/auth/password/reset", {"email": "a@example.com"})
    error(response, 429, "RATE_LIMITED")
    assert response["Retry-After"]
