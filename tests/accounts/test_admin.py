"""Admin smoke tests (changelist, search, change page) and the revoke-all action; no secrets shown."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import OAuthIdentity, Session, SigningKey, TOTPDevice, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import enable_2fa, get, login, make_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(user_factory) -> Client:
    admin = user_factory("admin@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def populated(user_factory):
    user = user_factory("customer@example.com")
    client = make_client()
    body = login(client, "customer@example.com")
    enable_2fa(client, body["access_token"])
    OAuthIdentity.objects.create(user=user, provider="google", provider_user_id="g-123", email=user.email)
    return user, body


def assert_no_secrets(html: str, body: dict) -> None:
    user = User.objects.get(email="customer@example.com")
    session = Session.objects.get(pk=body["session_id"])
    secrets = [body["access_token"], body["refresh_token"], session.token_hash, user.password, "argon2"]
    secrets.append(TOTPDevice.objects.get(user=user).key.reveal())
    for key in SigningKey.objects.all():
        secrets.append(key.private_key.reveal().splitlines()[1])
    for secret in secrets:
        assert secret not in html


@pytest.mark.parametrize(
    ("model", "search"),
    [("user", "customer@"), ("session", "customer@"), ("oauthidentity", "customer@"), ("signingkey", "2")],
)
def test_changelist_search_and_change_page(staff, populated, model, search):
    _, body = populated
    changelist = staff.get(f"/admin/accounts/{model}/")
    assert changelist.status_code == 200
    assert_no_secrets(changelist.content.decode(), body)
    found = staff.get(f"/admin/accounts/{model}/", {"q": search})
    assert found.status_code == 200
    obj = {
        "user": lambda: User.objects.get(email="customer@example.com"),
        "session": lambda: Session.objects.get(pk=body["session_id"]),
        "oauthidentity": lambda: OAuthIdentity.objects.get(),
        "signingkey": lambda: SigningKey.objects.earliest("created_at"),
    }[model]()
    change = staff.get(f"/admin/accounts/{model}/{obj.pk}/change/")
    assert change.status_code == 200
    assert_no_secrets(change.content.decode(), body)


def test_user_filters(staff, populated):
    for query in ({"kyc_status__exact": "pending"}, {"totp_enabled__exact": "1"}, {"is_staff__exact": "0"}):
        assert staff.get("/admin/accounts/user/", query).status_code == 200
    page = staff.get("/admin/accounts/user/", {"totp_enabled__exact": "1"}).content.decode()
    assert "customer@example.com" in page
    assert "admin@example.com" not in page.split("result_list")[-1]


def test_change_page_shows_active_sessions_inline(staff, populated):
    user, body = populated
    page = staff.get(f"/admin/accounts/user/{user.pk}/change/").content.decode()
    assert "Active sessions" in page
    assert body["session_id"] in page


def test_revoke_all_action(staff, populated):
    user, body = populated
    response = staff.post(
        "/admin/accounts/user/",
        {"action": "revoke_all_sessions", "_selected_action": [str(user.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert Session.objects.get(pk=body["session_id"]).revoked_reason == "staff"
    entry = AuditEntry.objects.get(action="auth.sessions_revoked")
    assert entry.details["reason"] == "staff"
    assert entry.actor_label == "admin@example.com"
    assert (
        get(make_client(), "/v1/users/me", body["access_token"]).json()["error"]["code"] == "SESSION_REVOKED"
    )


def test_staff_sets_kyc_status(staff, populated):
    user, _ = populated
    page = staff.get(f"/admin/accounts/user/{user.pk}/change/")
    form = page.context["adminform"].form
    payload = {k: v for k, v in form.initial.items() if k in form.fields and v is not None}
    payload.update(kyc_status="verified", groups=[])
    for prefix in ("sessions", "oauth_identities"):
        payload.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    response = staff.post(f"/admin/accounts/user/{user.pk}/change/", payload)
    assert response.status_code == 302, response.content.decode()[:2000]
    user.refresh_from_db()
    assert user.kyc_status == "verified"
    entry = AuditEntry.objects.get(action="user.kyc_status_changed")
    assert entry.details == {"from": "not_started", "to": "verified"}
    # Readable by the user, not settable by them.
    access = login(make_client(), "customer@example.com")
    assert access["status"] == "two_factor_required"
