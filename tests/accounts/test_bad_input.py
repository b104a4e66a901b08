"""Bad input on every accounts endpoint: a 4xx in the error envelope, never a 500, nothing changed."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.accounts.models import AccountToken, Session, User
from tests.accounts.conftest import error, login, make_client, post

pytestmark = pytest.mark.django_db(transaction=True)

ANONYMOUS_POSTS = [
    "/v1/auth/register",
    "/v1/auth/verify-email",
    "/v1/auth/login",
    "/v1/auth/token/refresh",
    "/v1/auth/oauth/google",
    "/v1/auth/oauth/apple",
    "/v1/auth/password/reset",
    "/v1/auth/password/reset/confirm",
    "/v1/auth/2fa/verify",
]
SIGNED_IN_POSTS = ["/v1/auth/2fa/disable", "/v1/auth/password/change"]


@pytest.fixture
def access(user_factory):
    user_factory("in@example.com")
    return login(make_client(), "in@example.com")["access_token"]


def snapshot() -> tuple[int, int, int, list[str]]:
    return (
        User.objects.count(),
        Session.objects.count(),
        AccountToken.objects.count(),
        sorted(User.objects.values_list("password", flat=True)),
    )


@pytest.mark.parametrize("path", ANONYMOUS_POSTS + SIGNED_IN_POSTS)
def test_malformed_json(path, access):
    before = snapshot()
    response = make_client().post(
        path,
        b'{"email": "x@example.com",',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {access}",
    )
    assert response.status_code in {400, 401}
    error(
        response,
        response.status_code,
        "MALFORMED_REQUEST" if response.status_code == 400 else "TOKEN_INVALID",
    )
    assert snapshot() == before


@pytest.mark.parametrize("path", ANONYMOUS_POSTS)
@pytest.mark.parametrize(
    "body", [{}, [], "string", 42, {"email": 5, "password": True, "token": 7, "id_token": []}]
)
def test_missing_fields_and_wrong_types(path, body):
    before = snapshot()
    response = make_client().post(path, body, format="json")
    err = error(response, 400, "VALIDATION_ERROR")
    assert err["details"]["fields"]
    assert snapshot() == before


@pytest.mark.parametrize("path", SIGNED_IN_POSTS)
def test_signed_in_endpoints_wrong_types(path, access):
    before = snapshot()
    response = post(
        make_client(), path, {"password": 1, "current_password": None, "new_password": ["x"]}, access
    )
    error(response, 400, "VALIDATION_ERROR")
    assert snapshot() == before


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@", "@b.com", "a" * 250 + "@example.com", "a b@example.com"]
)
def test_malformed_email(email):
    response = post(
        make_client(), "/v1/auth/register", {"email": email, "password": "a good long passphrase"}
    )
    err = error(response, 400, "VALIDATION_ERROR")
    assert "email" in err["details"]["fields"]
    assert not User.objects.exists()


def test_unknown_fields_are_refused():
    response = post(
        make_client(),
        "/v1/auth/register",
        {"email": "a@example.com", "password": "a good long passphrase", "is_staff": True},
    )
    err = error(response, 400, "VALIDATION_ERROR")
    assert "is_staff" in err["details"]["fields"]
    assert not User.objects.exists()


def test_huge_body_is_413():
    big = "x" * (settings.K2_REQUEST_MAX_BODY_BYTES + 1)
    response = make_client().post(
        "/v1/auth/login", {"email": "a@example.com", "password": big}, format="json"
    )
    error(response, 413, "PAYLOAD_TOO_LARGE")


def test_form_encoded_body_is_415():
    response = make_client().post("/v1/auth/login", {"email": "a@example.com", "password": "x"})
    error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("path", ["/v1/auth/register/", "/v1/auth/login/"])
def test_trailing_slash_is_a_plain_404(path):
    error(make_client().post(path, {}, format="json"), 404, "NOT_FOUND")


def test_wrong_method(access):
    error(make_client().get("/v1/auth/login"), 405, "METHOD_NOT_ALLOWED")
    error(
        make_client().put("/v1/users/me", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {access}"),
        405,
        "METHOD_NOT_ALLOWED",
    )


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "eyJhbGciOiJIUzI1NiJ9." * 3, "é" * 10])
def test_bad_tokens_everywhere(token, access):
    client = make_client()
    for path, field in (
        ("/v1/auth/token/refresh", "refresh_token"),
        ("/v1/auth/2fa/verify", "challenge_token"),
    ):
        body = {field: token} if field == "refresh_token" else {field: token, "code": "123456"}
        response = post(client, path, body)
        assert response.status_code in {400, 401}, response.content
        assert response.json()["error"]["code"] in {"TOKEN_INVALID", "VALIDATION_ERROR"}
    for bad in ("", "x" * 5000):
        response = post(client, "/v1/auth/oauth/google", {"id_token": bad, "nonce": "n"})
        assert response.status_code in {400, 401, 503}
