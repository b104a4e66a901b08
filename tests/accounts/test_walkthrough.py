"""The issue's check, end to end, as a new user's client would walk it."""

from __future__ import annotations

import pyotp
import pytest

from k2.audit.models import AuditEntry
from tests.accounts.conftest import (
    IPHONE_UA,
    LAPTOP_UA,
    PASSWORD,
    data,
    error,
    get,
    make_client,
    next_code,
    outbox,
    post,
    token_from_mail,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_new_user_walkthrough():
    laptop = make_client(LAPTOP_UA, "203.0.113.10")
    phone = make_client(IPHONE_UA, "198.51.100.7")
    email = "walker@example.com"

    # Register; the verification token arrives by email.
    response = post(laptop, "/v1/auth/register", {"email": email, "password": PASSWORD})
    assert response.status_code == 202
    assert outbox()[-1].to == [email]
    verify_token = token_from_mail("verify-email")

    # Login works before verification (email_verified does not gate it).
    first = data(post(laptop, "/v1/auth/login", {"email": email, "password": PASSWORD}))
    assert first["status"] == "authenticated"
    assert data(get(laptop, "/v1/users/me", first["access_token"]))["email_verified"] is False

    assert data(post(laptop, "/v1/auth/verify-email", {"token": verify_token})) == {"email_verified": True}
    error(post(laptop, "/v1/auth/verify-email", {"token": verify_token}), 400, "EMAIL_TOKEN_INVALID")

    access = first["access_token"]
    me = data(get(laptop, "/v1/users/me", access))
    assert me["email"] == email
    assert me["email_verified"] is True
    assert me["two_factor_enabled"] is False
    assert me["kyc_status"] == "not_started"

    patched = laptop.patch(
        "/v1/users/me",
        {
            "timezone": "Europe/London",
            "display_currency": "EUR",
            "notification_preferences": {"price_alerts": {"push": False}},
        },
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {access}",
    )
    body = data(patched)
    assert body["timezone"] == "Europe/London"
    assert body["display_currency"] == "EUR"
    assert body["notification_preferences"]["price_alerts"] == {"email": True, "push": False, "in_app": True}

    # Enable 2FA with codes from a standard TOTP library.
    enrolment = data(post(laptop, "/v1/auth/2fa/enable", token=access))
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert enrolment["qr_code_png"].startswith("data:image/png;base64,")
    totp = pyotp.TOTP(enrolment["secret"])
    confirmed = data(post(laptop, "/v1/auth/2fa/verify", {"code": totp.now()}, token=access))
    assert confirmed["two_factor_enabled"] is True
    assert len(confirmed["recovery_codes"]) == 10

    # Log in again, from the phone: the password alone gives only a challenge.
    challenge = data(
        post(phone, "/v1/auth/login", {"email": email, "password": PASSWORD, "device_name": "My iPhone"})
    )
    assert challenge["status"] == "two_factor_required"
    assert "access_token" not in challenge
    # The challenge token is not an access token.
    error(get(phone, "/v1/users/me", challenge["challenge_token"]), 401, "TOKEN_INVALID")
    code = next_code(enrolment["secret"])
    phone_login = data(
        post(phone, "/v1/auth/2fa/verify", {"challenge_token": challenge["challenge_token"], "code": code})
    )
    assert phone_login["status"] == "authenticated"
    _phone_access, phone_refresh = phone_login["access_token"], phone_login["refresh_token"]
    # New-device sign-in was noticed.
    assert AuditEntry.objects.filter(action="security.new_device_login").exists()
    assert any("New sign-in" in m.subject for m in outbox())

    # Sessions from two devices, the current one flagged.
    listing = get(laptop, "/v1/auth/sessions", access)
    sessions = data(listing)
    assert len(sessions) == 2
    by_id = {s["id"]: s for s in sessions}
    assert by_id[first["session_id"]]["current"] is True
    assert by_id[phone_login["session_id"]]["current"] is False
    assert by_id[phone_login["session_id"]]["device"]["name"] == "My iPhone"
    assert by_id[phone_login["session_id"]]["device"]["os"] == "iOS"
    assert by_id[phone_login["session_id"]]["ip_address"] == "198.51.100.7"
    assert "pagination" in listing.json()["meta"]

    # Refresh on the phone, then replay the old refresh token: the session is revoked.
    rotated = data(post(phone, "/v1/auth/token/refresh", {"refresh_token": phone_refresh}))
    assert rotated["refresh_token"] != phone_refresh
    assert data(get(phone, "/v1/users/me", rotated["access_token"]))["email"] == email
    error(
        post(phone, "/v1/auth/token/refresh", {"refresh_token": phone_refresh}), 401, "REFRESH_TOKEN_REUSED"
    )
    error(get(phone, "/v1/users/me", rotated["access_token"]), 401, "SESSION_REVOKED")
    error(
        post(phone, "/v1/auth/token/refresh", {"refresh_token": rotated["refresh_token"]}),
        401,
        "SESSION_REVOKED",
    )

    # Sign the phone in again, then revoke that session from the laptop: refused at once.
    challenge = data(post(phone, "/v1/auth/login", {"email": email, "password": PASSWORD}))
    recovery = confirmed["recovery_codes"][0]
    phone_login = data(
        post(
            phone,
            "/v1/auth/2fa/verify",
            {"challenge_token": challenge["challenge_token"], "recovery_code": recovery},
        )
    )
    assert data(get(phone, "/v1/users/me", phone_login["access_token"]))["email"] == email
    revoke = laptop.delete(
        f"/v1/auth/sessions/{phone_login['session_id']}", HTTP_AUTHORIZATION=f"Bearer {access}"
    )
    assert data(revoke) == {"revoked": 1}
    error(get(phone, "/v1/users/me", phone_login["access_token"]), 401, "SESSION_REVOKED")
    assert [s["id"] for s in data(get(laptop, "/v1/auth/sessions", access))] == [first["session_id"]]

    # Log out: the laptop's token stops working too.
    assert data(post(laptop, "/v1/auth/logout", token=access)) == {"logged_out": True}
    error(get(laptop, "/v1/users/me", access), 401, "SESSION_REVOKED")
    error(
        post(laptop, "/v1/auth/token/refresh", {"refresh_token": first["refresh_token"]}),
        401,
        "SESSION_REVOKED",
    )

    actions = set(AuditEntry.objects.values_list("action", flat=True))
    for action in (
        "auth.register", "auth.email_verified", "auth.login", "auth.session_created", "user.profile_updated",
        "auth.2fa_enrolment_started", "auth.2fa_enabled", "security.two_factor_enabled",
        "auth.two_factor_challenge_issued", "auth.token_refreshed", "auth.refresh_reuse_detected",
        "auth.2fa_recovery_code_used", "auth.session_revoked", "auth.logout",
    ):  # fmt: skip
        assert action in actions, action
