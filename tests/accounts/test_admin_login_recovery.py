"""Admin console sign-in with a 2FA recovery code in place of the authenticator code: spent as
the API login spends it (once), audited by method and never by value, and a wrong one is a failed
attempt for the login and 2FA limits, as a wrong authenticator code is."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import RecoveryCode, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, enable_2fa, login, make_client, next_code, outbox

pytestmark = pytest.mark.django_db(transaction=True)

STAFF = "ops@example.com"


def admin_login(client: Client, **extra: str):
    return client.post("/admin/login/", {"username": STAFF, "password": PASSWORD, "next": "/admin/", **extra})


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture
def staff_2fa(user_factory) -> tuple[User, str, list[str]]:
    user = user_factory(STAFF, is_staff=True, is_superuser=True)
    api = make_client()
    secret, codes = enable_2fa(api, login(api, STAFF)["access_token"])
    user.refresh_from_db()
    assert user.totp_enabled
    return user, secret, codes


def test_a_recovery_code_signs_in_to_admin_once(staff_2fa):
    user, _, codes = staff_2fa
    client = Client(REMOTE_ADDR="198.51.100.7")

    response = admin_login(client, otp_token=codes[2].lower())  # normalised as the API does

    assert response.status_code == 302, response.content.decode()[:2000]
    assert signed_in(client)
    assert RecoveryCode.objects.filter(user=user, used_at__isnull=False).count() == 1
    entry = AuditEntry.objects.get(action="auth.admin_login")
    assert entry.details == {"second_factor": "recovery_code"}
    used = AuditEntry.objects.get(action="auth.2fa_recovery_code_used")
    assert used.details == {"recovery_codes_remaining": 9}
    assert any("recovery code was used" in str(message.body) for message in outbox())

    again = Client(REMOTE_ADDR="198.51.100.7")
    response = admin_login(again, otp_token=codes[2])

    assert response.status_code == 200
    assert "not valid or has already been used" in response.content.decode()
    assert not signed_in(again)
    failed = AuditEntry.objects.get(action="auth.admin_login_failed")
    assert failed.details["reason"] == "wrong_recovery_code"
    for audit in AuditEntry.objects.all():
        for code in codes:
            assert code not in str(audit.details)
            assert code.replace("-", "") not in str(audit.details)


def test_wrong_recovery_codes_count_against_the_login_limit(settings, staff_2fa):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 2
    _, secret, codes = staff_2fa
    client = Client(REMOTE_ADDR="198.51.100.7")
    for guess in ("AAAA-BBBB-CCCC-DDDD", "EEEE-FFFF-GGGG-HHHH"):
        response = admin_login(client, otp_token=guess)
        assert "not valid or has already been used" in response.content.decode()

    for code in (codes[0], next_code(secret)):  # right ones, now over the limit
        response = admin_login(client, otp_token=code)
        assert "Too many failed sign-in attempts" in response.content.decode()
    assert not signed_in(client)
    assert not RecoveryCode.objects.filter(used_at__isnull=False).exists()  # refused before it was spent


def test_wrong_recovery_codes_count_against_the_2fa_limit(settings, staff_2fa):
    settings.K2_TOTP_MAX_FAILURES = 2
    _, _, codes = staff_2fa
    for guess in ("AAAA-BBBB-CCCC-DDDD", "EEEE-FFFF-GGGG-HHHH"):
        admin_login(Client(REMOTE_ADDR="198.51.100.7"), otp_token=guess)

    client = Client(REMOTE_ADDR="198.51.100.8")
    response = admin_login(client, otp_token=codes[0])

    assert "Too many wrong codes" in response.content.decode()
    assert not signed_in(client)
    assert not RecoveryCode.objects.filter(used_at__isnull=False).exists()
