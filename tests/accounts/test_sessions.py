"""Sessions and JWTs: revocation takes effect at once, refresh rotation, bad tokens, key rotation."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import call_command

from apps.accounts.exceptions import SessionRevoked, TokenExpired, TokenInvalid
from apps.accounts.models import Session, SigningKey
from apps.accounts.selectors import user_from_access_token
from k2.audit.models import AuditEntry
from tests.accounts.conftest import IPHONE_UA, PASSWORD, data, error, get, login, make_client, post

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def user(user_factory):
    return user_factory("sam@example.com")


def test_access_token_claims_and_header(user):
    body = login(make_client(), "sam@example.com")
    header = jwt.get_unverified_header(body["access_token"])
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert header["alg"] == "ES256"
    assert header["kid"] == SigningKey.objects.get().kid
    assert claims["sub"] == str(user.id)
    assert claims["session_id"] == body["session_id"]
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert {"iat", "exp", "jti", "iss", "aud"} <= set(claims)
    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600
    assert body["expires_in"] <= 900
    session = Session.objects.get(pk=body["session_id"])
    assert session.token_hash != body["refresh_token"]
    assert len(session.token_hash) == 64


def test_user_from_access_token_for_other_apps(user):
    body = login(make_client(), "sam@example.com")
    found_user, session = user_from_access_token(body["access_token"])
    assert found_user == user
    assert str(session.id) == body["session_id"]
    post(make_client(), "/v1/auth/logout", token=body["access_token"])
    with pytest.raises(SessionRevoked):
        user_from_access_token(body["access_token"])
    with pytest.raises(TokenInvalid):
        user_from_access_token(body["refresh_token"])


def test_password_change_revokes_other_sessions(user):
    laptop, phone = make_client(), make_client(IPHONE_UA)
    mine, other = login(laptop, "sam@example.com"), login(phone, "sam@example.com")
    new = "an entirely new passphrase 2024"
    response = post(
        laptop,
        "/v1/auth/password/change",
        {"current_password": PASSWORD, "new_password": new},
        mine["access_token"],
    )
    assert data(response) == {"password_changed": True, "sessions_revoked": 1}
    assert data(get(laptop, "/v1/users/me", mine["access_token"]))["email"] == "sam@example.com"
    error(get(phone, "/v1/users/me", other["access_token"]), 401, "SESSION_REVOKED")
    error(
        post(phone, "/v1/auth/login", {"email": "sam@example.com", "password": PASSWORD}),
        401,
        "INVALID_CREDENTIALS",
    )
    assert login(phone, "sam@example.com", new)["status"] == "authenticated"
    assert AuditEntry.objects.filter(action="auth.password_changed").exists()
    assert AuditEntry.objects.get(action="auth.sessions_revoked").details["reason"] == "password_change"


def test_password_change_checks_current_and_rules(user):
    client = make_client()
    access = login(client, "sam@example.com")["access_token"]
    error(
        post(
            client,
            "/v1/auth/password/change",
            {"current_password": "nope nope nope", "new_password": "x" * 20},
            access,
        ),
        400,
        "PASSWORD_INCORRECT",
    )
    err = error(
        post(
            client,
            "/v1/auth/password/change",
            {"current_password": PASSWORD, "new_password": "short"},
            access,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert "new_password" in err["details"]["fields"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert AuditEntry.objects.filter(action="auth.password_change_failed").exists()


def test_delete_all_other_sessions(user):
    clients = [make_client() for _ in range(3)]
    bodies = [login(c, "sam@example.com") for c in clients]
    response = clients[0].delete(
        "/v1/auth/sessions", HTTP_AUTHORIZATION=f"Bearer {bodies[0]['access_token']}"
    )
    assert data(response) == {"revoked": 2}
    assert data(get(clients[0], "/v1/users/me", bodies[0]["access_token"]))
    for client, body in zip(clients[1:], bodies[1:], strict=True):
        error(get(client, "/v1/users/me", body["access_token"]), 401, "SESSION_REVOKED")


def test_cannot_touch_another_users_session(user, user_factory):
    user_factory("eve@example.com")
    sam = login(make_client(), "sam@example.com")
    eve = login(make_client(), "eve@example.com")
    client = make_client()
    error(
        client.delete(
            f"/v1/auth/sessions/{sam['session_id']}", HTTP_AUTHORIZATION=f"Bearer {eve['access_token']}"
        ),
        404,
        "SESSION_NOT_FOUND",
    )
    error(
        client.delete("/v1/auth/sessions/not-a-uuid", HTTP_AUTHORIZATION=f"Bearer {eve['access_token']}"),
        404,
        "SESSION_NOT_FOUND",
    )
    assert data(get(client, "/v1/users/me", sam["access_token"]))["email"] == "sam@example.com"
    assert [s["id"] for s in data(get(client, "/v1/auth/sessions", eve["access_token"]))] == [
        eve["session_id"]
    ]


def test_refresh_rotates_and_extends(user):
    client = make_client()
    body = login(client, "sam@example.com")
    rotated = data(post(client, "/v1/auth/token/refresh", {"refresh_token": body["refresh_token"]}))
    assert rotated["session_id"] == body["session_id"]
    assert rotated["access_token"] != body["access_token"]
    # The old access token stays valid until it expires (same session).
    assert data(get(client, "/v1/users/me", body["access_token"]))
    session = Session.objects.get(pk=body["session_id"])
    assert session.refresh_count == 1
    assert AuditEntry.objects.filter(action="auth.token_refreshed").exists()


def test_reuse_detection_revokes_and_notifies(user, mailoutbox):
    client = make_client()
    body = login(client, "sam@example.com")
    data(post(client, "/v1/auth/token/refresh", {"refresh_token": body["refresh_token"]}))
    error(
        post(client, "/v1/auth/token/refresh", {"refresh_token": body["refresh_token"]}),
        401,
        "REFRESH_TOKEN_REUSED",
    )
    session = Session.objects.get(pk=body["session_id"])
    assert session.revoked_reason == "refresh_reuse"
    assert AuditEntry.objects.filter(action="auth.refresh_reuse_detected", target_id=str(session.id)).exists()
    assert any("signed out" in m.subject for m in mailoutbox)


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer a b", "Bearer not-a-jwt", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
)
def test_malformed_authorization_is_401(user, header):
    error(make_client().get("/v1/users/me", HTTP_AUTHORIZATION=header), 401, "TOKEN_INVALID")


def test_no_token_is_401(user):
    response = make_client().get("/v1/users/me")
    error(response, 401, "UNAUTHENTICATED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_forged_expired_and_wrong_type_tokens(user, settings):
    client = make_client()
    body = login(client, "sam@example.com")
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    kid = jwt.get_unverified_header(body["access_token"])["kid"]
    forged = jwt.encode(
        claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": kid}
    )
    error(get(client, "/v1/users/me", forged), 401, "TOKEN_INVALID")
    hs = jwt.encode(claims, "s" * 32, algorithm="HS256", headers={"kid": kid})  # algorithm confusion
    error(get(client, "/v1/users/me", hs), 401, "TOKEN_INVALID")
    error(get(client, "/v1/users/me", body["refresh_token"]), 401, "TOKEN_INVALID")
    error(
        post(client, "/v1/auth/token/refresh", {"refresh_token": body["access_token"]}), 401, "TOKEN_INVALID"
    )
    # Expired: issue with a negative lifetime through the real signer.
    from apps.accounts import tokens

    settings.K2_JWT_LEEWAY_SECONDS = 0
    expired = tokens.encode(
        token_type="access",
        subject=str(user.id),
        lifetime=timedelta(seconds=-5),
        claims={"session_id": body["session_id"]},
    )
    error(get(client, "/v1/users/me", expired.token), 401, "TOKEN_EXPIRED")
    with pytest.raises(TokenExpired):
        user_from_access_token(expired.token)
    # A valid signature over a session that does not exist.
    ghost = tokens.encode(
        token_type="access",
        subject=str(user.id),
        lifetime=timedelta(minutes=5),
        claims={"session_id": str(uuid.uuid4())},
    )
    error(get(client, "/v1/users/me", ghost.token), 401, "TOKEN_INVALID")


def test_a_verified_token_is_still_refused_once_expired_and_in_the_wrong_place(user, settings):
    """Verified tokens are remembered per process; the memory must not outlive the token."""
    from apps.accounts import tokens

    client = make_client()
    body = login(client, "sam@example.com")
    settings.K2_JWT_LEEWAY_SECONDS = 0
    short = tokens.encode(
        token_type="access",
        subject=str(user.id),
        lifetime=timedelta(seconds=3),  # from a whole second: 2 to 3 s left for the checks below
        claims={"session_id": body["session_id"]},
    )
    assert data(get(client, "/v1/users/me", short.token))["email"] == "sam@example.com"
    assert (short.token, settings.K2_JWT_ISSUER, settings.K2_JWT_AUDIENCE) in tokens._VERIFIED
    # Verified (and remembered) as an access token, still refused where a refresh token goes.
    error(post(client, "/v1/auth/token/refresh", {"refresh_token": short.token}), 401, "TOKEN_INVALID")
    expires = short.expires_at.timestamp()
    time.sleep(max(0.0, expires - time.time()) + 0.05)  # at most ~3.05 s
    error(get(client, "/v1/users/me", short.token), 401, "TOKEN_EXPIRED")
    with pytest.raises(TokenExpired):
        user_from_access_token(short.token)


def test_key_rotation_keeps_old_tokens_valid(user):
    client = make_client()
    before = login(client, "sam@example.com")
    old_kid = jwt.get_unverified_header(before["access_token"])["kid"]
    call_command("rotate_jwt_key")
    after = login(client, "sam@example.com")
    new_kid = jwt.get_unverified_header(after["access_token"])["kid"]
    assert new_kid != old_kid
    assert data(get(client, "/v1/users/me", before["access_token"]))["email"] == "sam@example.com"
    rotated = data(post(client, "/v1/auth/token/refresh", {"refresh_token": before["refresh_token"]}))
    assert jwt.get_unverified_header(rotated["access_token"])["kid"] == new_kid
    old = SigningKey.objects.get(kid=old_kid)
    assert old.retired_at is not None
    assert old.verify_until is not None
    assert AuditEntry.objects.filter(action="auth.jwt_key_rotated").exists()
    # Once the overlap is over (prune), tokens of the old key are refused.
    SigningKey.objects.filter(kid=old_kid).update(verify_until=old.retired_at)
    call_command("rotate_jwt_key", "--prune")
    from apps.accounts import tokens

    tokens.keyset.clear()
    error(get(client, "/v1/users/me", before["access_token"]), 401, "TOKEN_INVALID")
    assert data(get(client, "/v1/users/me", after["access_token"]))


def test_private_keys_are_encrypted_at_rest(user):
    login(make_client(), "sam@example.com")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM jwt_signing_keys")
        (stored,) = cursor.fetchone()
    assert stored.startswith("k2v1$")
    assert "PRIVATE KEY" not in stored


def test_inactive_user_tokens_stop_working(user):
    client = make_client()
    body = login(client, "sam@example.com")
    user.is_active = False
    user.save()
    error(get(client, "/v1/users/me", body["access_token"]), 401, "ACCOUNT_DISABLED")


def test_last_used_is_tracked(user):
    client = make_client()
    body = login(client, "sam@example.com")
    Session.objects.filter(pk=body["session_id"]).update(last_used_at="2020-01-01T00:00:00Z")
    get(client, "/v1/users/me", body["access_token"])
    assert Session.objects.get(pk=body["session_id"]).last_used_at.year > 2020


def test_a_made_up_kid_costs_one_lookup_and_a_key_made_elsewhere_is_found(user):
    """A forged token naming a key that does not exist is refused after one indexed lookup, not
    a reload of the key set (every key parsed and the signing key decrypted, under the key
    set's lock: an unauthenticated request could force one each). A key another process made
    since this one loaded the set is still found."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.accounts import tokens

    client = make_client()
    signed = login(client, "sam@example.com")["access_token"]
    assert data(get(client, "/v1/users/me", signed))  # the key set is loaded
    forger = ec.generate_private_key(ec.SECP256R1())
    for kid in ("made-up", "k" * 64, "k" * 65):
        forged = jwt.encode({"sub": str(user.pk)}, forger, algorithm="ES256", headers={"kid": kid})
        with CaptureQueriesContext(connection) as queries, pytest.raises(TokenInvalid):
            tokens.decode(forged, token_type="access")
        assert len(queries) <= 1, [q["sql"] for q in queries]
        assert all("WHERE" in q["sql"] and '"kid" =' in q["sql"] for q in queries), queries.captured_queries

    call_command("rotate_jwt_key")
    new = login(client, "sam@example.com")["access_token"]
    new_kid = jwt.get_unverified_header(new)["kid"]
    tokens.keyset._keys.pop(new_kid)  # as a process that loaded the set before the rotation
    assert data(get(client, "/v1/users/me", new))["email"] == "sam@example.com"
