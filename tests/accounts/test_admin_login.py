"""Admin console sign-in: the API login's failure limits and TOTP step, and audit entries."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import PASSWORD, enable_2fa, login, make_client, next_code

pytestmark = pytest.mark.django_db(transaction=True)

STAFF = "ops@example.com"


def admin_login(client: Client, password: str = PASSWORD, email: str = STAFF, **extra: str):
    return client.post("/admin/login/", {"username": email, "password": password, "next": "/admin/", **extra})


def signed_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.fixture
def staff(user_factory) -> User:
    return user_factory(STAFF, is_staff=True, is_superuser=True)


def with_totp(user: User) -> str:
    api = make_client()
    secret, _ = enable_2fa(api, login(api, user.email)["access_token"])
    user.refresh_from_db()
    assert user.totp_enabled
    return secret


def test_staff_without_2fa_signs_in_with_password_and_is_audited(staff):
    client = Client(REMOTE_ADDR="198.51.100.7")
    page = client.get("/admin/login/")
    assert 'name="otp_token"' in page.content.decode()

    response = admin_login(client)

    assert response.status_code == 302
    assert signed_in(client)
    entry = AuditEntry.objects.get(action="auth.admin_login")
    assert entry.actor_id == staff.pk
    assert str(entry.ip) == "198.51.100.7"


def test_wrong_passwords_lock_the_account_out_even_with_the_right_one(settings, staff):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 3
    client = Client(REMOTE_ADDR="198.51.100.7")
    for _ in range(3):
        response = admin_login(client, password="wrong-guess")
        assert response.status_code == 200
        assert "correct email" in response.content.decode().lower()

    response = admin_login(client)  # the right password, now over the limit

    assert response.status_code == 200
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not signed_in(client)
    failed = AuditEntry.objects.filter(action="auth.admin_login_failed").order_by("id")
    reasons = [entry.details["reason"] for entry in failed]
    assert reasons == ["wrong_password"] * 3 + ["throttled_account"]
    assert all(entry.details["email"] == STAFF and str(entry.ip) == "198.51.100.7" for entry in failed)
    assert not AuditEntry.objects.filter(action="auth.admin_login").exists()
    for entry in AuditEntry.objects.all():
        assert "wrong-guess" not in str(entry.details)
        assert PASSWORD not in str(entry.details)


def test_failures_count_per_ip_across_accounts(settings, staff, user_factory):
    settings.K2_LOGIN_MAX_FAILURES_PER_IP = 2
    client = Client(REMOTE_ADDR="198.51.100.8")
    admin_login(client, password="wrong-guess", email="nobody@example.com")
    admin_login(client, password="wrong-guess", email="other@example.com")

    response = admin_login(client)

    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not signed_in(client)
    assert admin_login(Client(REMOTE_ADDR="198.51.100.9")).status_code == 302  # another address


def test_success_forgives_the_ip_count(settings, staff):
    settings.K2_LOGIN_MAX_FAILURES_PER_IP = 2
    for _ in range(3):
        assert admin_login(Client(REMOTE_ADDR="198.51.100.10")).status_code == 302


def test_totp_user_needs_a_current_code(staff):
    secret = with_totp(staff)
    client = Client(REMOTE_ADDR="198.51.100.7")

    response = admin_login(client)  # password alone
    assert response.status_code == 200
    assert "Enter the code from your authenticator app" in response.content.decode()
    assert not signed_in(client)

    response = admin_login(client, otp_token="000000")
    assert response.status_code == 200
    assert "not valid" in response.content.decode()
    assert not signed_in(client)

    response = admin_login(client, otp_token=next_code(secret))
    assert response.status_code == 302
    assert signed_in(client)
    failed = AuditEntry.objects.filter(action="auth.admin_login_failed").order_by("id")
    reasons = list(failed.values_list("details__reason", flat=True))
    assert reasons == ["missing_code", "wrong_code"]
    assert AuditEntry.objects.get(action="auth.admin_login").details["second_factor"] == "totp"


def test_missing_or_wrong_codes_count_as_failed_attempts(settings, staff):
    settings.K2_LOGIN_MAX_FAILURES_PER_ACCOUNT = 2
    secret = with_totp(staff)
    client = Client(REMOTE_ADDR="198.51.100.7")
    admin_login(client)
    admin_login(client, otp_token="000000")

    response = admin_login(client, otp_token=next_code(secret))

    assert "Too many failed sign-in attempts" in response.content.decode()
    assert not signed_in(client)
