"""Every auth event is audited; secrets never appear in responses (beyond their one place),
logs or the audit log; every endpoint is in the OpenAPI schema."""

from __future__ import annotations

import io
import json
import logging

import pytest
from structlog.stdlib import ProcessorFormatter

from apps.accounts.models import Session, User
from k2.audit.models import AuditEntry
from k2.observability.logging import formatter_processors, shared_processors
from tests.accounts.conftest import (
    PASSWORD,
    data,
    enable_2fa,
    error,
    get,
    login,
    make_client,
    next_code,
    post,
    token_from_mail,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def captured_logs():
    """Everything logged during the test, rendered as in production (structlog JSON)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        ProcessorFormatter(processors=formatter_processors, foreign_pre_chain=shared_processors)
    )
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_every_auth_event_is_audited_and_no_secret_leaks(captured_logs, settings):
    client = make_client()
    post(client, "/v1/auth/register", {"email": "aud@example.com", "password": PASSWORD})
    verify_token = token_from_mail("verify-email")
    post(client, "/v1/auth/verify-email", {"token": verify_token})
    error(
        post(client, "/v1/auth/login", {"email": "aud@example.com", "password": "wrong password"}),
        401,
        "INVALID_CREDENTIALS",
    )
    first = login(client, "aud@example.com")
    refreshed = data(post(client, "/v1/auth/token/refresh", {"refresh_token": first["refresh_token"]}))
    post(client, "/v1/auth/token/refresh", {"refresh_token": first["refresh_token"]})  # reuse
    second = login(make_client(), "aud@example.com")
    access = second["access_token"]
    secret, codes = enable_2fa(client, access)
    code = next_code(secret)
    post(client, "/v1/auth/2fa/disable", {"password": PASSWORD, "code": code}, access)
    new_password = "new passphrase for audit"
    post(
        client,
        "/v1/auth/password/change",
        {"current_password": PASSWORD, "new_password": new_password},
        access,
    )
    post(client, "/v1/auth/password/reset", {"email": "aud@example.com"})
    reset_token = token_from_mail("reset-password")
    post(client, "/v1/auth/password/reset/confirm", {"token": reset_token, "new_password": PASSWORD + "!"})
    third = login(client, "aud@example.com", PASSWORD + "!")
    other = login(make_client(), "aud@example.com", PASSWORD + "!")
    client.delete(
        f"/v1/auth/sessions/{other['session_id']}", HTTP_AUTHORIZATION=f"Bearer {third['access_token']}"
    )
    post(client, "/v1/auth/logout", token=third["access_token"])

    actions = set(AuditEntry.objects.values_list("action", flat=True))
    expected = {
        "auth.register",
        "auth.email_verified",
        "auth.login_failed",
        "auth.login",
        "auth.session_created",
        "auth.token_refreshed",
        "auth.refresh_reuse_detected",
        "auth.2fa_enrolment_started",
        "auth.2fa_enabled",
        "auth.2fa_disabled",
        "security.two_factor_enabled",
        "security.two_factor_disabled",
        "auth.password_changed",
        "auth.password_reset_requested",
        "auth.password_reset",
        "auth.sessions_revoked",
        "auth.session_revoked",
        "auth.logout",
        "auth.jwt_key_created",
        "api.request",
    }
    assert expected <= actions, expected - actions
    user = User.objects.get()
    assert AuditEntry.objects.filter(action="auth.login", actor_id=user.id).exists()
    failed = AuditEntry.objects.get(action="auth.login_failed")
    assert failed.ip == "203.0.113.10"
    assert failed.details["reason"] == "wrong_password"

    secrets = [
        PASSWORD,
        new_password,
        verify_token,
        reset_token,
        secret,
        *codes,
        first["refresh_token"],
        refreshed["refresh_token"],
        access,
        third["access_token"],
    ]
    audit_dump = json.dumps(
        list(AuditEntry.objects.values("details", "actor_label", "target_id")), default=str
    )
    logs = captured_logs.getvalue()
    assert logs  # something was logged (emails sent, requests)
    for value in secrets:
        assert value not in audit_dump
        assert value not in logs
    assert all(s.token_hash not in audit_dump for s in Session.objects.all())


def test_responses_never_carry_hashes_or_password(user_factory):
    user_factory("r@example.com")
    client = make_client()
    body = login(client, "r@example.com")
    user = User.objects.get()
    session = Session.objects.get()
    for response in (
        get(client, "/v1/users/me", body["access_token"]),
        get(client, "/v1/auth/sessions", body["access_token"]),
    ):
        text = response.content.decode()
        assert user.password not in text
        assert session.token_hash not in text
        assert "token_hash" not in text
        assert "device_fingerprint" not in text


def test_openapi_schema_lists_every_endpoint(user_factory):
    user_factory("s@example.com", is_staff=True)
    response = make_client().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    paths = schema["paths"]
    expected = {
        "/v1/auth/register": ["post"],
        "/v1/auth/verify-email": ["post"],
        "/v1/auth/login": ["post"],
        "/v1/auth/token/refresh": ["post"],
        "/v1/auth/oauth/google": ["post"],
        "/v1/auth/oauth/apple": ["post"],
        "/v1/auth/2fa/enable": ["post"],
        "/v1/auth/2fa/verify": ["post"],
        "/v1/auth/2fa/disable": ["post"],
        "/v1/auth/logout": ["post"],
        "/v1/auth/sessions": ["get", "delete"],
        "/v1/auth/sessions/{session_id}": ["delete"],
        "/v1/auth/password/change": ["post"],
        "/v1/auth/password/reset": ["post"],
        "/v1/auth/password/reset/confirm": ["post"],
        "/v1/users/me": ["get", "patch"],
    }
    for path, methods in expected.items():
        assert path in paths, path
        for method in methods:
            assert method in paths[path], (path, method)
    login_op = paths["/v1/auth/login"]["post"]
    assert "requestBody" in login_op
    assert "bearerAuth" in schema["components"]["securitySchemes"]
