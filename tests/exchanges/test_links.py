"""Linking a Crypto.com account through the API, against the simulator over real sockets."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.db import connection

from apps.accounts.models import User
from apps.exchanges.models import ExchangeLink
from apps.exchanges.services import exchange_link_check
from k2.audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim_urls(settings: Any, cryptocom_sim: Any) -> Any:
    settings.K2_CRYPTOCOM_REST_URL = cryptocom_sim.rest_url
    settings.K2_CRYPTOCOM_MARKET_WS_URL = cryptocom_sim.rest_url.replace("http", "ws") + "/market"
    settings.K2_CRYPTOCOM_USER_WS_URL = cryptocom_sim.rest_url.replace("http", "ws") + "/user"
    settings.K2_EXCHANGE_LINK_CHECK_TIMEOUT_SECONDS = 5
    return cryptocom_sim


@pytest.fixture
def user() -> User:
    return User.objects.create_user("linker@example.com", "correct horse battery staple")


@pytest.fixture
def client(api_client: Any, user: User) -> Any:
    api_client.force_authenticate(user)
    return api_client


def initiate(client: Any, venue: str = "cryptocom") -> dict[str, Any]:
    response = client.get(f"/v1/auth/link/{venue}/initiate")
    assert response.status_code == 200, response.content
    return response.json()["data"]


def link(client: Any, account: dict[str, Any], **overrides: Any) -> Any:
    state = initiate(client)["state"]
    body = {"state": state, "api_key": account["api_key"], "api_secret": account["api_secret"], **overrides}
    return client.post("/v1/auth/link/cryptocom/callback", body, format="json")


def test_initiate_describes_what_the_venue_needs(client: Any, sim_urls: Any) -> None:
    data = initiate(client)
    assert data["venue"] == "cryptocom"
    assert len(data["state"]) >= 40
    assert [f["name"] for f in data["credentials"]] == ["api_key", "api_secret"]
    assert data["callback"] == "/v1/auth/link/cryptocom/callback"


def test_link_proves_and_stores_encrypted_credentials(client: Any, sim_urls: Any, user: User) -> None:
    account = sim_urls.create_account()
    response = link(client, account)
    assert response.status_code == 201, response.content
    body = response.json()["data"]
    assert body["exchange"] == "cryptocom"
    assert body["status"] == "active"
    assert body["key_hint"] == account["api_key"][-4:]
    assert account["api_secret"] not in response.content.decode()

    stored = ExchangeLink.objects.get(user=user)
    assert stored.access_secret.reveal() == account["api_secret"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token, access_secret FROM exchange_links")
        raw = " ".join(cursor.fetchone())
    assert account["api_secret"] not in raw
    assert account["api_key"] not in raw

    listed = client.get("/v1/exchanges/links").json()["data"]
    assert [row["id"] for row in listed] == [str(stored.id)]
    assert "access_secret" not in listed[0]
    assert account["api_secret"] not in client.get("/v1/exchanges/links").content.decode()

    linked = AuditEntry.objects.get(action="exchange.linked")
    assert linked.actor_id == user.id
    call = AuditEntry.objects.filter(action="exchange.call").latest("id")
    assert call.details["venue"] == "cryptocom"
    assert call.details["method"] == "private/user-balance"
    assert call.details["outcome"] == "ok"
    assert account["api_secret"] not in str(call.details)


def test_wrong_credentials_are_refused_and_nothing_is_stored(client: Any, sim_urls: Any) -> None:
    account = sim_urls.create_account()
    response = link(client, account, api_secret="not-the-secret")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "EXCHANGE_AUTH_FAILED"
    assert ExchangeLink.objects.count() == 0
    assert AuditEntry.objects.filter(action="exchange.link_failed").exists()


def test_unreachable_venue_stores_nothing(client: Any, sim_urls: Any, settings: Any) -> None:
    account = sim_urls.create_account()
    settings.K2_CRYPTOCOM_REST_URL = "http://127.0.0.1:9/exchange/v1"
    response = link(client, account)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "EXCHANGE_UNAVAILABLE"
    assert ExchangeLink.objects.count() == 0


def test_state_is_single_use_and_bound_to_user_and_venue(client: Any, sim_urls: Any, api_client: Any) -> None:
    account = sim_urls.create_account()
    state = initiate(client)["state"]
    body = {"state": state, "api_key": account["api_key"], "api_secret": account["api_secret"]}
    assert client.post("/v1/auth/link/cryptocom/callback", body, format="json").status_code == 201
    again = client.post("/v1/auth/link/cryptocom/callback", body, format="json")
    assert again.json()["error"]["code"] == "LINK_STATE_INVALID"

    other = User.objects.create_user("other@example.com", "correct horse battery staple")
    state = initiate(client)["state"]
    api_client.force_authenticate(other)
    stolen = api_client.post("/v1/auth/link/cryptocom/callback", {**body, "state": state}, format="json")
    assert stolen.json()["error"]["code"] == "LINK_STATE_INVALID"
    assert not ExchangeLink.objects.filter(user=other).exists()


def test_bad_input_is_a_clear_4xx(client: Any, sim_urls: Any) -> None:
    assert client.get("/v1/auth/link/nasdaq/initiate").status_code == 404
    state = initiate(client)["state"]
    response = client.post("/v1/auth/link/cryptocom/callback", {"state": state}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["fields"]) == {"api_key", "api_secret"}
    response = client.post("/v1/auth/link/cryptocom/callback", [1], format="json")
    assert response.status_code == 400
    assert client.get("/v1/auth/link/cryptocom/callback").status_code == 405
    assert ExchangeLink.objects.count() == 0


def test_revoke_erases_credentials_and_is_scoped_to_the_owner(
    client: Any, sim_urls: Any, api_client: Any, user: User
) -> None:
    account = sim_urls.create_account()
    link_id = link(client, account).json()["data"]["id"]
    other = User.objects.create_user("other@example.com", "correct horse battery staple")
    api_client.force_authenticate(other)
    assert api_client.delete(f"/v1/exchanges/links/{link_id}").status_code == 404
    api_client.force_authenticate(user)
    assert api_client.delete(f"/v1/exchanges/links/{link_id}").status_code == 204
    stored = ExchangeLink.objects.get(pk=link_id)
    assert stored.status == "revoked"
    assert stored.access_secret.reveal() == ""
    assert AuditEntry.objects.filter(action="exchange.unlinked", target_id=link_id).exists()
    # Unlinking again changes nothing, and says nothing more in the audit log.
    assert api_client.delete(f"/v1/exchanges/links/{link_id}").status_code == 204
    assert AuditEntry.objects.filter(action="exchange.unlinked", target_id=link_id).count() == 1


def test_health_check_marks_a_refused_link_revoked_and_tells_the_user(
    client: Any, sim_urls: Any, user: User, django_capture_on_commit_callbacks: Any
) -> None:
    account = sim_urls.create_account()
    link_id = link(client, account).json()["data"]["id"]
    assert exchange_link_check(link_id=link_id) == "ok"
    stored = ExchangeLink.objects.get(pk=link_id)
    stored.access_secret = "rotated-away-at-the-venue"  # the venue no longer accepts what we hold
    stored.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert exchange_link_check(link_id=link_id) == "refused"
    assert [m.to for m in mail.outbox] == [[user.email]]
    assert "ending " + account["api_key"][-4:] in mail.outbox[0].body
    stored.refresh_from_db()
    assert stored.status == "revoked"
    assert stored.last_error_code == "EXCHANGE_AUTH_FAILED"
    assert AuditEntry.objects.filter(action="exchange.link_revoked_by_venue", target_id=link_id).exists()
    # Credentials the venue refuses are useless: not kept.
    assert (stored.access_token.reveal(), stored.access_secret.reveal()) == ("", "")


def test_unlinking_a_link_the_venue_revoked_erases_what_is_left(client: Any, sim_urls: Any) -> None:
    """A link marked revoked while it still held credentials (as the venue check left them
    before): the user's unlink erases them."""
    link_id = link(client, sim_urls.create_account()).json()["data"]["id"]
    ExchangeLink.objects.filter(pk=link_id).update(status="revoked")
    assert client.delete(f"/v1/exchanges/links/{link_id}").status_code == 204
    stored = ExchangeLink.objects.get(pk=link_id)
    assert (stored.access_token.reveal(), stored.access_secret.reveal()) == ("", "")
    assert AuditEntry.objects.get(action="exchange.unlinked", target_id=link_id).details["was"] == "revoked"


@pytest.mark.django_db(transaction=True)
def test_a_check_does_not_revoke_credentials_linked_after_it_began(
    client: Any, sim_urls: Any, user: User
) -> None:
    """The check proves the credentials it read; if the user links again (a new key, typically
    because the old one was rotated away at the venue) before it records the answer, the answer
    is not about the link's credentials any more."""
    import threading

    account = sim_urls.create_account()
    link_id = link(client, account).json()["data"]["id"]
    stored = ExchangeLink.objects.get(pk=link_id)
    stored.access_secret = "rotated-away-at-the-venue"
    stored.save()
    sim_urls.fault("latency", method="private/user-balance", latency_ms=1500)
    outcome: list[str] = []

    def run_check() -> None:
        from django.db import connections

        try:
            outcome.append(exchange_link_check(link_id=link_id))
        finally:
            connections.close_all()

    check = threading.Thread(target=run_check)
    check.start()
    try:
        import time

        time.sleep(0.5)  # the check's venue call is under way, with the old secret
        assert link(client, sim_urls.create_account()).status_code == 201  # linked again
    finally:
        check.join(10)
    assert outcome == ["skipped"]
    stored.refresh_from_db()
    assert stored.status == "active"


@pytest.mark.parametrize("key", ["clé-ünïcode", "abc\r\nX-Evil: 1", "two words"])
def test_an_api_key_that_cannot_go_in_a_header_is_a_400(client: Any, sim_urls: Any, key: str) -> None:
    state = initiate(client)["state"]
    body = {"state": state, "api_key": key, "api_secret": "s"}
    response = client.post("/v1/auth/link/cryptocom/callback", body, format="json")
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["details"]["fields"]) == {"api_key"}
    assert ExchangeLink.objects.count() == 0


def test_health_check_leaves_a_link_active_when_the_venue_is_down(
    client: Any, sim_urls: Any, settings: Any
) -> None:
    account = sim_urls.create_account()
    link_id = link(client, account).json()["data"]["id"]
    settings.K2_CRYPTOCOM_REST_URL = "http://127.0.0.1:9/exchange/v1"
    assert exchange_link_check(link_id=link_id) == "unavailable"
    stored = ExchangeLink.objects.get(pk=link_id)
    assert stored.status == "active"
    assert stored.last_error_code == "EXCHANGE_UNAVAILABLE"
    assert mail.outbox == []
