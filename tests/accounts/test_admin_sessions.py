"""Django admin sessions (django.contrib.sessions, /admin/) end with the user's API sessions.

Password changes and resets already end them through Django's session auth hash (an HMAC of the
password hash, checked on every request), and deactivation through ModelBackend refusing an
inactive user; these tests pin that. "Sign out everywhere" (the API's and the admin action)
changes neither, so `session_revoke_all` ends the admin sessions itself.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

from apps.accounts import services
from apps.accounts.models import User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, data, login, make_client, post, token_from_mail

pytestmark = pytest.mark.django_db(transaction=True)

STAFF = "ops@example.com"
ROOT = "root@example.com"


def admin_client(email: str = STAFF, password: str = PASSWORD) -> Client:
    """A browser signed in to /admin/ through the real login form."""
    client = Client(REMOTE_ADDR="198.51.100.20")
    response = client.post("/admin/login/", {"username": email, "password": password, "next": "/admin/"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert signed_in(client)
    return client


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture
def staff(user_factory) -> User:
    return user_factory(STAFF, is_staff=True)


@pytest.fixture
def root(user_factory) -> User:
    return user_factory(ROOT, is_staff=True, is_superuser=True)


# --- already ended by Django's session checks ------------------------------------------------------


def test_password_change_through_the_api_ends_admin_sessions(staff):
    browser = admin_client()
    api = make_client()
    access = login(api, STAFF)["access_token"]
    body = {"current_password": PASSWORD, "new_password": "a brand new passphrase 7"}

    data(post(api, "/v1/auth/password/change", body, access))

    assert not signed_in(browser)


def test_password_reset_ends_admin_sessions(staff):
    browser = admin_client()
    api = make_client()
    post(api, "/v1/auth/password/reset", {"email": STAFF})
    reset = {"token": token_from_mail("reset-password"), "new_password": "a brand new passphrase 7"}

    data(post(api, "/v1/auth/password/reset/confirm", reset))

    assert not signed_in(browser)


def test_deactivation_by_a_superuser_ends_admin_sessions(staff, root):
    browser, root_browser = admin_client(), admin_client(ROOT)
    page = root_browser.get(f"/admin/accounts/user/{staff.pk}/change/")
    form = page.context["adminform"].form
    payload = {k: v for k, v in form.initial.items() if k in form.fields and v is not None}
    payload["groups"] = []
    for prefix in ("sessions", "oauth_identities"):
        payload.update({f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"})
    del payload["is_active"]  # an unticked box is absent from the post
    response = root_browser.post(f"/admin/accounts/user/{staff.pk}/change/", payload)
    assert response.status_code == 302, response.content.decode()[:2000]
    staff.refresh_from_db()
    assert staff.is_active is False

    assert not signed_in(browser)


# --- ended by session_revoke_all -------------------------------------------------------------------


def test_sign_out_everywhere_through_the_api_ends_admin_sessions(staff):
    browser, other_browser = admin_client(), admin_client()
    api = make_client()
    body = login(api, STAFF)

    response = api.delete("/v1/auth/sessions", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}")

    assert response.status_code == 200, response.content
    assert not signed_in(browser)
    assert not signed_in(other_browser)
    assert data(api.get("/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {body['access_token']}"))
    entry = AuditEntry.objects.get(action="auth.sessions_revoked")
    assert (entry.details["count"], entry.details["admin_sessions_ended"]) == (0, True)  # the caller's kept


def test_staff_revoke_all_action_ends_the_users_admin_sessions(staff, root):
    browser = admin_client()
    api = make_client()
    access = login(api, STAFF)["access_token"]
    root_browser = admin_client(ROOT)

    response = root_browser.post(
        "/admin/accounts/user/",
        {"action": "revoke_all_sessions", "_selected_action": [str(staff.pk)]},
        follow=True,
    )

    assert response.status_code == 200
    assert not signed_in(browser)
    assert signed_in(root_browser)  # only the selected user's sessions end
    assert api.get("/v1/users/me", HTTP_AUTHORIZATION=f"Bearer {access}").status_code == 401
    entry = AuditEntry.objects.get(action="auth.sessions_revoked")
    assert (entry.details["reason"], entry.details["count"], entry.details["admin_sessions_ended"]) == (
        "staff",
        1,
        True,
    )
    assert admin_client().get("/admin/").status_code == 200  # a new sign-in still works


def test_a_save_of_the_user_read_before_a_revocation_does_not_revive_its_admin_sessions(staff, root):
    browser = admin_client()
    read_before = User.objects.get(pk=staff.pk)  # e.g. an admin change form's instance
    services.session_revoke_all(user=User.objects.get(pk=staff.pk), actor=root)
    assert not signed_in(browser)

    read_before.display_name = "Ops"
    read_before.save()

    staff.refresh_from_db()
    assert (staff.display_name, staff.admin_session_epoch) == ("Ops", 1)
    assert not signed_in(browser)


def test_a_revoked_admin_session_stays_ended_across_a_secret_key_rotation(settings, staff):
    revoked = admin_client()
    services.session_revoke_all(user=staff, actor=staff)  # no request of `revoked` in between
    fresh = admin_client()
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 50

    assert not signed_in(revoked)  # its hash, checked with the old key, still carries the old epoch
    assert signed_in(fresh)  # a session from after the revocation survives the rotation


def test_sessions_from_before_any_revocation_keep_djangos_hash(staff):
    """At epoch 0 the hash is Django's own: admin sessions signed in before the change stay valid."""
    assert staff.admin_session_epoch == 0
    assert staff.get_session_auth_hash() == AbstractBaseUser.get_session_auth_hash(staff)
