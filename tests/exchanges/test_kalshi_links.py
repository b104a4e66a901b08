"""Linking a Kalshi account (API key id + RSA private key) through the API, against the simulator."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from apps.accounts.models import User
from apps.exchanges.adapters.kalshi.signing import generate_private_key_pem
from apps.exchanges.models import ExchangeLink
from apps.exchanges.services import exchange_link_check
from k2.audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(settings: Any, kalshi_sim: Any) -> Any:
    settings.K2_KALSHI_REST_URL = kalshi_sim.rest_url
    settings.K2_KALSHI_WS_URL = kalshi_sim.ws_url
    settings.K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS = 5
    return kalshi_sim


@pytest.fixture
def user() -> User:
    return User.objects.create_user("kalshi-linker@example.com", "correct horse battery staple")


@pytest.fixture
def client(api_client: Any, user: User) -> Any:
    api_client.force_authenticate(user)
    return api_client


def link(client: Any, account: dict[str, Any], **overrides: Any) -> Any:
    state = client.get("/v1/auth/link/kalshi/initiate").json()["data"]["state"]
    body = {
        "state": state,
        "api_key_id": account["api_key_id"],
        "private_key": account["private_key_pem"],
        **overrides,
    }
    return client.post("/v1/auth/link/kalshi/callback", body, format="json")


def test_initiate_asks_for_key_id_and_private_key(client, sim):
    data = client.get("/v1/auth/link/kalshi/initiate").json()["data"]
    assert data["venue"] == "kalshi"
    assert data["callback"] == "/v1/auth/link/kalshi/callback"
    assert [(f["name"], f["secret"]) for f in data["credentials"]] == [
        ("api_key_id", False),
        ("private_key", True),
    ]


def test_link_proves_with_a_signed_balance_call_and_stores_encrypted(client, sim, user):
    account = sim.create_account()
    response = link(client, account)
    assert response.status_code == 201, response.content
    body = response.json()["data"]
    assert (body["exchange"], body["status"]) == ("kalshi", "active")
    assert body["key_hint"] == account["api_key_id"][-4:]
    assert "PRIVATE KEY" not in response.content.decode()
    stored = ExchangeLink.objects.get(user=user)
    assert stored.access_secret.reveal() == account["private_key_pem"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, access_secret FROM exchange_links")
        raw = " ".join(cursor.fetchone())
    assert "PRIVATE KEY" not in raw
    assert account["api_key_id"] not in raw
    calls = AuditEntry.objects.filter(action="exchange.call").values_list("details", flat=True)
    assert any(
        c["venue"] == "kalshi" and c["method"] == "GET /portfolio/balance" and c["outcome"] == "ok"
        for c in calls
    )
    assert all("PRIVATE KEY" not in str(c) for c in calls)
    listed = client.get("/v1/exchanges/links").json()["data"]
    assert [row["exchange"] for row in listed] == ["kalshi"]
    assert exchange_link_check(link_id=stored.id) == "ok"
    assert client.delete(f"/v1/exchanges/links/{stored.id}").status_code == 204
    stored.refresh_from_db()
    assert stored.status == "revoked"
    assert stored.access_secret.reveal() == ""


@pytest.mark.parametrize("bad", ["another-key", "not-a-pem", "unknown-key-id"])
def test_wrong_credentials_are_refused_and_nothing_is_stored(client, sim, bad):
    account = sim.create_account()
    overrides = {
        "another-key": {"private_key": generate_private_key_pem()[0]},
        "not-a-pem": {"private_key": "-----BEGIN RSA PRIVATE KEY-----\nnope\n-----END RSA PRIVATE KEY-----"},
        "unknown-key-id": {"api_key_id": "a952bcbe-ec3b-4b5b-b8f9-11dae589608c"},
    }[bad]
    response = link(client, account, **overrides)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "EXCHANGE_AUTH_FAILED"
    assert ExchangeLink.objects.count() == 0
    assert AuditEntry.objects.filter(action="exchange.link_failed").exists()


def test_missing_fields_are_a_clear_4xx(client, sim):
    state = client.get("/v1/auth/link/kalshi/initiate").json()["data"]["state"]
    response = client.post("/v1/auth/link/kalshi/callback", {"state": state}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["fields"]) == {"api_key_id", "private_key"}
    assert ExchangeLink.objects.count() == 0


def test_health_check_revokes_a_key_the_venue_no_longer_accepts(client, sim, settings):
    account = sim.create_account()
    link_id = link(client, account).json()["data"]["id"]
    stored = ExchangeLink.objects.get(pk=link_id)
    stored.access_secret = generate_private_key_pem()[0]
    stored.save()
    assert exchange_link_check(link_id=link_id) == "refused"
    stored.refresh_from_db()
    assert stored.status == "revoked"
    assert stored.last_error_code == "EXCHANGE_AUTH_FAILED"
