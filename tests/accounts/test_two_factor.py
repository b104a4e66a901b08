"""TOTP 2FA: enrolment, replay refusal, recovery codes, disable, attempt limits, secret at rest."""

from __future__ import annotations

import pyotp
import pytest
from django.db import connection

from apps.accounts.models import RecoveryCode, TOTPDevice, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, data, enable_2fa, error, login, make_client, next_code, post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signed_in(user_factory):
    user = user_factory("tess@example.com")
    client = make_client()
    tokens = login(client, "tess@example.com")
    return user, client, tokens["access_token"]


def challenge(client) -> str:
    body = login(client, "tess@example.com")
    assert body["status"] == "two_factor_required"
    return body["challenge_token"]


def test_enrolment_is_not_active_until_confirmed(signed_in):
    user, client, access = signed_in
    enrolment = data(post(client, "/v1/auth/2fa/enable", token=access))
    assert enrolment["digits"] == 6
    assert enrolment["period"] == 30
    assert "secret=" + enrolment["secret"] in enrolment["otpauth_uri"]
    assert "issuer=K2" in enrolment["otpauth_uri"]
    assert enrolment["qr_code_svg"].startswith("data:image/svg+xml;base64,")
    user.refresh_from_db()
    assert user.totp_enabled is False
    assert login(client, "tess@example.com")["status"] == "authenticated"
    error(post(client, "/v1/auth/2fa/verify", {"code": "000000"}, token=access), 401, "TWO_FACTOR_INVALID")
    assert AuditEntry.objects.filter(action="auth.2fa_confirm_failed").exists()


def test_secret_is_encrypted_at_rest(signed_in):
    _, client, access = signed_in
    secret = data(post(client, "/v1/auth/2fa/enable", token=access))["secret"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM totp_devices")
        (stored,) = cursor.fetchone()
    assert stored.startswith("k2v1$")
    assert secret not in stored
    assert TOTPDevice.objects.get().key.reveal() == secret
    assert secret not in repr(TOTPDevice.objects.get().key)


def test_code_is_accepted_once(signed_in):
    _, client, access = signed_in
    secret, _ = enable_2fa(client, access)
    code = next_code(secret)
    first = post(client, "/v1/auth/2fa/verify", {"challenge_token": challenge(client), "code": code})
    assert data(first)["status"] == "authenticated"
    replay = post(client, "/v1/auth/2fa/verify", {"challenge_token": challenge(client), "code": code})
    error(replay, 401, "TWO_FACTOR_INVALID")
    assert AuditEntry.objects.filter(action="auth.2fa_failed").exists()


def test_challenge_token_is_single_use_and_only_for_2fa(signed_in):
    _, client, access = signed_in
    secret, codes = enable_2fa(client, access)
    token = challenge(client)
    data(post(client, "/v1/auth/2fa/verify", {"challenge_token": token, "recovery_code": codes[0]}))
    error(
        post(client, "/v1/auth/2fa/verify", {"challenge_token": token, "recovery_code": codes[1]}),
        401,
        "TOKEN_INVALID",
    )
    # Neither an access token nor a refresh endpoint accepts it.
    error(post(client, "/v1/auth/token/refresh", {"refresh_token": challenge(client)}), 401, "TOKEN_INVALID")
    error(
        post(client, "/v1/auth/2fa/verify", {"challenge_token": access, "code": next_code(secret)}),
        401,
        "TOKEN_INVALID",
    )


def test_recovery_code_works_once(signed_in):
    _user, client, access = signed_in
    _, codes = enable_2fa(client, access)
    assert len(set(codes)) == 10
    # Stored hashed only.
    assert not RecoveryCode.objects.filter(code_hash__in=codes).exists()
    ok = post(
        client,
        "/v1/auth/2fa/verify",
        {"challenge_token": challenge(client), "recovery_code": codes[3].lower()},
    )
    assert data(ok)["status"] == "authenticated"
    again = post(
        client, "/v1/auth/2fa/verify", {"challenge_token": challenge(client), "recovery_code": codes[3]}
    )
    error(again, 401, "TWO_FACTOR_INVALID")
    entry = AuditEntry.objects.get(action="auth.2fa_recovery_code_used")
    assert entry.details["recovery_codes_remaining"] == 9
    assert AuditEntry.objects.filter(action="security.recovery_code_used").exists()


def test_disable_needs_password_and_code(signed_in):
    user, client, access = signed_in
    secret, _ = enable_2fa(client, access)
    code = next_code(secret)
    error(
        post(client, "/v1/auth/2fa/disable", {"password": "wrong password!!", "code": code}, token=access),
        400,
        "PASSWORD_INCORRECT",
    )
    error(post(client, "/v1/auth/2fa/disable", {"password": PASSWORD}, token=access), 400, "VALIDATION_ERROR")
    error(
        post(client, "/v1/auth/2fa/disable", {"password": PASSWORD, "code": "123456"}, token=access),
        401,
        "TWO_FACTOR_INVALID",
    )
    user.refresh_from_db()
    assert user.totp_enabled is True
    assert data(post(client, "/v1/auth/2fa/disable", {"password": PASSWORD, "code": code}, token=access)) == {
        "two_factor_enabled": False
    }
    user.refresh_from_db()
    assert user.totp_enabled is False
    assert not TOTPDevice.objects.exists()
    assert not RecoveryCode.objects.exists()
    assert login(client, "tess@example.com")["status"] == "authenticated"
    assert AuditEntry.objects.filter(action="auth.2fa_disabled").exists()
    assert AuditEntry.objects.filter(action="security.two_factor_disabled").exists()
    error(
        post(client, "/v1/auth/2fa/disable", {"password": PASSWORD, "code": code}, token=access),
        409,
        "TWO_FACTOR_NOT_ENABLED",
    )


def test_enable_twice_is_a_conflict(signed_in):
    _, client, access = signed_in
    enable_2fa(client, access)
    error(post(client, "/v1/auth/2fa/enable", token=access), 409, "TWO_FACTOR_ALREADY_ENABLED")


def test_wrong_codes_are_limited_per_user(signed_in, settings):
    settings.K2_TOTP_MAX_FAILURES = 3
    _, client, access = signed_in
    secret, _ = enable_2fa(client, access)
    token = challenge(client)
    for _ in range(3):
        error(
            post(client, "/v1/auth/2fa/verify", {"challenge_token": token, "code": "000000"}),
            401,
            "TWO_FACTOR_INVALID",
        )
    response = post(client, "/v1/auth/2fa/verify", {"challenge_token": token, "code": next_code(secret)})
    error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) > 0


def test_device_backs_off_after_a_wrong_code(signed_in, settings):
    settings.K2_TOTP_THROTTLE_FACTOR = 30  # django-otp: 30 s after one failure
    _, client, access = signed_in
    secret, _ = enable_2fa(client, access)
    token = challenge(client)
    error(
        post(client, "/v1/auth/2fa/verify", {"challenge_token": token, "code": "000000"}),
        401,
        "TWO_FACTOR_INVALID",
    )
    response = post(client, "/v1/auth/2fa/verify", {"challenge_token": token, "code": next_code(secret)})
    error(response, 429, "RATE_LIMITED")
    assert 1 <= int(response["Retry-After"]) <= 31
    assert User.objects.get().sessions.count() == 1  # no session from the throttled attempt


def test_verify_without_challenge_or_sign_in_is_401(signed_in):
    _, client, _ = signed_in
    error(post(make_client(), "/v1/auth/2fa/verify", {"code": "123456"}), 401, "UNAUTHENTICATED")
    error(post(client, "/v1/auth/2fa/verify", {"code": "12ab56"}), 400, "VALIDATION_ERROR")
    error(post(client, "/v1/auth/2fa/verify", {"code": 123456}), 400, "VALIDATION_ERROR")


def test_pyotp_and_server_agree_on_the_uri(signed_in):
    _, client, access = signed_in
    enrolment = data(post(client, "/v1/auth/2fa/enable", token=access))
    parsed = pyotp.parse_uri(enrolment["otpauth_uri"])
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.secret == enrolment["secret"]
    code = parsed.now()
    assert (
        data(post(client, "/v1/auth/2fa/verify", {"code": code}, token=access))["two_factor_enabled"] is True
    )
