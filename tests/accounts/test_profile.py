"""/v1/users/me: profile, settings and preferences; read-only fields refused."""

from __future__ import annotations

import pytest

from apps.accounts.models import User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import data, error, get, login, make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def me(user_factory):
    user_factory("pat@example.com")
    client = make_client()
    return client, login(client, "pat@example.com")["access_token"]


def patch(client, access, body):
    return client.patch("/v1/users/me", body, format="json", HTTP_AUTHORIZATION=f"Bearer {access}")


def test_get_profile(me):
    client, access = me
    body = data(get(client, "/v1/users/me", access))
    assert set(body) == {
        "id", "email", "email_verified", "display_name", "display_currency", "timezone",
        "notification_preferences", "kyc_status", "two_factor_enabled", "has_password",
        "linked_providers", "created_at",
    }  # fmt: skip
    assert body["display_currency"] == "USD"
    assert body["timezone"] == "UTC"
    assert body["notification_preferences"]["order_updates"] == {"email": True, "push": True, "in_app": True}
    assert body["has_password"] is True
    assert "password" not in str(body).replace("has_password", "")


def test_patch_settings(me):
    client, access = me
    body = data(
        patch(
            client, access, {"display_name": "Pat", "timezone": "America/New_York", "display_currency": "GBP"}
        )
    )
    assert (body["display_name"], body["timezone"], body["display_currency"]) == (
        "Pat",
        "America/New_York",
        "GBP",
    )
    entry = AuditEntry.objects.get(action="user.profile_updated")
    assert sorted(entry.details["fields"]) == ["display_currency", "display_name", "timezone"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kyc_status": "verified"}, "kyc_status"),
        ({"email": "new@example.com"}, "email"),
        ({"email_verified": True}, "email_verified"),
        ({"two_factor_enabled": False}, "two_factor_enabled"),
        ({"id": "x"}, "id"),
        ({"favourite_colour": "red"}, "favourite_colour"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": 5}, "timezone"),
        ({"display_currency": "XXX"}, "display_currency"),
        ({"display_name": ["a"]}, "display_name"),
        ({"display_name": "x" * 101}, "display_name"),
        ({"notification_preferences": {"spam": {"email": True}}}, "notification_preferences"),
        ({"notification_preferences": {"price_alerts": {"fax": True}}}, "notification_preferences"),
        ({"notification_preferences": {"price_alerts": {"email": "yes"}}}, "notification_preferences"),
        ({"notification_preferences": "all"}, "notification_preferences"),
    ],
)
def test_patch_refuses_bad_and_read_only_fields(me, body, field):
    client, access = me
    before = User.objects.values().get()
    err = error(patch(client, access, body), 400, "VALIDATION_ERROR")
    assert field in err["details"]["fields"]
    after = User.objects.values().get()
    assert before == after


def test_kyc_message_is_clear(me):
    client, access = me
    err = error(patch(client, access, {"kyc_status": "verified"}), 400, "VALIDATION_ERROR")
    assert "staff" in err["details"]["fields"]["kyc_status"][0]


def test_empty_patch_and_non_object(me):
    client, access = me
    error(patch(client, access, {}), 400, "VALIDATION_ERROR")
    error(patch(client, access, [1, 2]), 400, "VALIDATION_ERROR")


def test_profile_needs_auth():
    error(make_client().get("/v1/users/me"), 401, "UNAUTHENTICATED")
    error(make_client().patch("/v1/users/me", {"display_name": "x"}, format="json"), 401, "UNAUTHENTICATED")
