"""Registration without user enumeration, email verification, password rules, password reset."""

from __future__ import annotations

import pytest

from apps.accounts.models import AccountToken, Session, User
from k2.audit.models import AuditEntry
from tests.accounts.conftest import (
    PASSWORD,
    data,
    error,
    get,
    login,
    make_client,
    outbox,
    post,
    token_from_mail,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_register_answers_the_same_for_new_and_taken_addresses():
    client = make_client()
    new = post(client, "/v1/auth/register", {"email": "Nina@Example.com", "password": PASSWORD})
    taken = post(
        client, "/v1/auth/register", {"email": "nina@example.com", "password": "another good passphrase"}
    )
    assert new.status_code == taken.status_code == 202
    assert data(new) == data(taken)
    assert User.objects.count() == 1
    user = User.objects.get()
    assert user.email == "nina@example.com"
    assert user.check_password(PASSWORD)  # the second attempt changed nothing
    assert user.password.startswith("argon2")
    sent = outbox()
    assert [m.to for m in sent] == [["nina@example.com"], ["nina@example.com"]]
    assert "verify-email" in sent[0].body
    assert "already has one" in sent[1].body
    assert AuditEntry.objects.filter(action="auth.register").count() == 1
    assert AuditEntry.objects.filter(action="auth.register_existing_email").count() == 1


def test_password_rules_do_not_depend_on_the_address(user_factory):
    user_factory("taken@example.com")
    for email in ("taken@example.com", "free@example.com"):
        err = error(
            post(make_client(), "/v1/auth/register", {"email": email, "password": "password"}),
            400,
            "VALIDATION_ERROR",
        )
        assert "password" in err["details"]["fields"]
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("Abcdefgh1!x", False),
        ("12345678901234", False),
        ("Tr0ub4dor&3-horse-battery" * 3, True),
        ("x" * 256, True),
        ("y" * 257, False),
    ],
)
def test_password_length(password, ok):
    response = post(make_client(), "/v1/auth/register", {"email": "len@example.com", "password": password})
    if ok:
        assert response.status_code == 202
        assert User.objects.get().check_password(password)
    else:
        error(response, 400, "VALIDATION_ERROR")
        assert not User.objects.exists()


def test_password_whitespace_is_kept():
    client = make_client()
    spaced = "  leading and trailing spaces  "
    post(client, "/v1/auth/register", {"email": "ws@example.com", "password": spaced})
    assert login(client, "ws@example.com", spaced)["status"] == "authenticated"
    error(
        post(client, "/v1/auth/login", {"email": "ws@example.com", "password": spaced.strip()}),
        401,
        "INVALID_CREDENTIALS",
    )


def test_verify_email_token_rules(user_factory):
    client = make_client()
    post(client, "/v1/auth/register", {"email": "v@example.com", "password": PASSWORD})
    token = token_from_mail("verify-email")
    assert AccountToken.objects.get().token_hash != token
    for bad in ("", "x" * 201, "not-a-token", token + "x"):
        response = post(client, "/v1/auth/verify-email", {"token": bad})
        assert response.status_code == 400
        assert response.json()["error"]["code"] in {"EMAIL_TOKEN_INVALID", "VALIDATION_ERROR"}
    AccountToken.objects.update(expires_at="2020-01-01T00:00:00Z")
    error(post(client, "/v1/auth/verify-email", {"token": token}), 400, "EMAIL_TOKEN_INVALID")
    assert User.objects.get().email_verified is False


def test_password_reset_flow():
    client = make_client()
    post(client, "/v1/auth/register", {"email": "r@example.com", "password": PASSWORD})
    sessions = [login(make_client(), "r@example.com") for _ in range(2)]
    assert data(post(client, "/v1/auth/password/reset", {"email": "R@example.com"}))["detail"]
    token = token_from_mail("reset-password")
    new = "brand new passphrase for r"
    error(
        post(client, "/v1/auth/password/reset/confirm", {"token": token, "new_password": "short"}),
        400,
        "VALIDATION_ERROR",
    )
    body = data(post(client, "/v1/auth/password/reset/confirm", {"token": token, "new_password": new}))
    assert body == {"password_changed": True, "sessions_revoked": 2}
    for s in sessions:
        error(get(client, "/v1/users/me", s["access_token"]), 401, "SESSION_REVOKED")
    error(
        post(client, "/v1/auth/password/reset/confirm", {"token": token, "new_password": new + "2"}),
        400,
        "EMAIL_TOKEN_INVALID",
    )
    assert login(client, "r@example.com", new)["status"] == "authenticated"
    user = User.objects.get()
    assert user.email_verified is True
    assert AuditEntry.objects.filter(action="auth.password_reset").exists()
    assert AuditEntry.objects.filter(action="auth.password_reset_requested").exists()


def test_reset_answers_the_same_for_unknown_addresses(user_factory):
    user_factory("known@example.com")
    known = post(make_client(), "/v1/auth/password/reset", {"email": "known@example.com"})
    unknown = post(make_client(), "/v1/auth/password/reset", {"email": "unknown@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert data(known) == data(unknown)
    assert [m.to for m in outbox()] == [["known@example.com"]]


def test_reset_token_is_not_a_verify_token():
    client = make_client()
    post(client, "/v1/auth/register", {"email": "x@example.com", "password": PASSWORD})
    verify = token_from_mail("verify-email")
    error(
        post(
            client,
            "/v1/auth/password/reset/confirm",
            {"token": verify, "new_password": "brand new passphrase x"},
        ),
        400,
        "EMAIL_TOKEN_INVALID",
    )
    assert User.objects.get().check_password(PASSWORD)


def test_oauth_only_user_cannot_change_password_but_can_reset(user_factory):
    user_factory("oauth@example.com", password=None)
    error(
        post(make_client(), "/v1/auth/login", {"email": "oauth@example.com", "password": PASSWORD}),
        401,
        "INVALID_CREDENTIALS",
    )
    assert Session.objects.count() == 0
