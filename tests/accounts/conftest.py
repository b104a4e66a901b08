"""Accounts fixtures: an API client per device, registered users, TOTP helpers.

API tests commit for real (transactional DB): emails and other side effects run on commit,
exactly as in production. Account emails are delivered by background threads after commit
(apps/accounts/emails.py): read them through `outbox()` (or `token_from_mail`), which waits
until every send queued so far is done.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from django.core import mail
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from apps.accounts import emails, tokens

PASSWORD = "correct horse battery staple 42"
IPHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Safari/604.1"
)
LAPTOP_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


@pytest.fixture(autouse=True)
def _fresh_keyset():
    tokens.keyset.clear()
    yield
    tokens.keyset.clear()


@pytest.fixture(autouse=True)
def _fast_settings(settings, monkeypatch):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.K2_TOTP_THROTTLE_FACTOR = 0  # tests that need django-otp's back-off turn it on
    # DRF binds the rates at import; tests that check request-rate limits set their own.
    rates = {
        **SimpleRateThrottle.THROTTLE_RATES,
        "auth": "1000/min",
        "auth_email": "1000/min",
        "anon": "1000/min",
    }
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)


def outbox() -> list:
    """`mail.outbox` once every account email queued so far is delivered (bounded wait)."""
    assert emails.wait_for_pending(), "account emails still pending after 10 s"
    return mail.outbox


def make_client(user_agent: str = LAPTOP_UA, ip: str = "203.0.113.10") -> APIClient:
    return APIClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=ip)


@pytest.fixture
def client_factory() -> Callable[..., APIClient]:
    return make_client


def data(response) -> Any:
    assert set(response.json()) == {"data", "meta"}, response.content
    return response.json()["data"]


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "meta"}, body
    assert body["error"]["code"] == code, body
    assert body["meta"]["request_id"]
    return body["error"]


def post(client: APIClient, path: str, body: Any = None, token: str | None = None):
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(path, body if body is not None else {}, format="json", **headers)


def get(client: APIClient, path: str, token: str | None = None):
    headers: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(path, **headers)


def token_from_mail(kind: str) -> str:
    """The token from the last email whose body mentions `kind` (verify-email / reset)."""
    for message in reversed(outbox()):
        if kind in message.body:
            match = re.search(r"token=([A-Za-z0-9_\-]+)", str(message.body))
            assert match, message.body
            return match.group(1)
    raise AssertionError(f"no {kind} email in {[m.subject for m in mail.outbox]}")


def register(client: APIClient, email: str, password: str = PASSWORD) -> None:
    response = post(client, "/v1/auth/register", {"email": email, "password": password})
    assert response.status_code == 202, response.content


def login(client: APIClient, email: str, password: str = PASSWORD, **extra: Any) -> dict:
    response = post(client, "/v1/auth/login", {"email": email, "password": password, **extra})
    assert response.status_code == 200, response.content
    return data(response)


@pytest.fixture
def user_factory(db):
    from apps.accounts.models import User

    def factory(email: str = "alice@example.com", password: str | None = PASSWORD, **extra: Any) -> User:
        return User.objects.create_user(email, password, **extra)

    return factory


def next_code(secret: str) -> str:
    """The authenticator's code for the next 30-second step (pyotp, a standard TOTP library).

    The server accepts one step of clock drift, and only steps after the last accepted one
    (replay protection); so right after a code was used, the next step's code is the one a
    slightly fast phone would show, and the one the server must accept.
    """
    return pyotp.TOTP(secret).at(time.time() + 30)


def enable_2fa(client: APIClient, access: str) -> tuple[str, list[str]]:
    enrolment = data(post(client, "/v1/auth/2fa/enable", token=access))
    response = post(
        client, "/v1/auth/2fa/verify", {"code": pyotp.TOTP(enrolment["secret"]).now()}, token=access
    )
    body = data(response)
    return enrolment["secret"], body["recovery_codes"]
