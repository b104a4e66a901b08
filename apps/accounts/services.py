"""Accounts services: every write of registration, login, sessions, 2FA, passwords, OAuth and
profile. Each public service opens its own durable transaction; audit entries join it, and
emails go out only after commit. Where a failure must leave a trace (failed login, failed 2FA
attempt), the trace is committed first and the error raised after the transaction ends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django_otp.oath import TOTP
from rest_framework.exceptions import Throttled

from apps.accounts import devices, emails, oauth, throttling, tokens
from apps.accounts.choices import (
    NOTIFICATION_CATEGORIES,
    NOTIFICATION_CHANNELS,
    TOKEN_TYPE_ACCESS,
    TOKEN_TYPE_CHALLENGE,
    TOKEN_TYPE_REFRESH,
    AccountTokenPurpose,
    AuthMethod,
    SessionRevokeReason,
)
from apps.accounts.exceptions import (
    AccountDisabled,
    EmailTokenInvalid,
    InvalidCredentials,
    OAuthEmailConflict,
    OAuthEmailRequired,
    OAuthTokenInvalid,
    PasswordIncorrect,
    PasswordNotSet,
    RefreshTokenReused,
    SessionRevoked,
    TokenExpired,
    TokenInvalid,
    TwoFactorAlreadyEnabled,
    TwoFactorEnrolmentMissing,
    TwoFactorInvalid,
    TwoFactorNotEnabled,
)
from apps.accounts.models import (
    AccountToken,
    OAuthIdentity,
    RecoveryCode,
    Session,
    SigningKey,
    TOTPDevice,
    User,
)
from k2.audit.services import record
from k2.observability.logging import get_logger

log = get_logger(__name__)

SESSION_TOUCH_INTERVAL = timedelta(minutes=1)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _on_commit_email(func: Any, *args: Any) -> None:
    """Send an account email after commit, off the request (see `emails`): no request waits on
    the mail server, so a reset for an unknown address answers as fast as for a known one."""
    emails.send_after_commit(func, *args)


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_at: Any
    refresh_expires_at: Any
    session: Session


@dataclass(frozen=True)
class TwoFactorChallenge:
    challenge_token: str
    expires_at: Any


@dataclass(frozen=True)
class LoginResult:
    user: User
    tokens: TokenPair | None = None
    challenge: TwoFactorChallenge | None = None
    created: bool = False


@dataclass(frozen=True)
class ClientInfo:
    """Where a request comes from (for sessions and audit)."""

    ip: str | None = None
    user_agent: str = ""
    device_name: str = ""


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    otpauth_uri: str
    qr_code_svg: str
    qr_code_png: str
    digits: int
    period: int


@dataclass
class _SecondFactor:
    ok: bool
    method: str = ""
    locked_seconds: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


# --- passwords -------------------------------------------------------------------------------------


def _validate_new_password(password: str, *, user: User, field_name: str = "password") -> None:
    limit = settings.K2_PASSWORD_MAX_LENGTH
    if len(password) > limit:
        raise DjangoValidationError({field_name: [f"Ensure this field has no more than {limit} characters."]})
    try:
        password_validation.validate_password(password, user=user)
    except DjangoValidationError as exc:
        raise DjangoValidationError({field_name: list(exc.messages)}) from None


def _dummy_password_check(password: str) -> None:
    """Spend the time a real hash check would, so unknown emails answer as slowly as known ones."""
    make_password(password[: settings.K2_PASSWORD_MAX_LENGTH])


# --- email tokens --------------------------------------------------------------------------------


def _account_token_issue(*, user: User, purpose: str, ttl: timedelta) -> str:
    raw = secrets.token_urlsafe(32)
    AccountToken.objects.create(
        user=user,
        purpose=purpose,
        token_hash=_sha256(raw),
        email=user.email,
        expires_at=timezone.now() + ttl,
    )
    return raw


def _account_token_consume(*, raw: str, purpose: str) -> AccountToken:
    """Lock and mark used the live token matching `raw`; EmailTokenInvalid otherwise."""
    if not raw or len(raw) > 200:
        raise EmailTokenInvalid()
    row = (
        AccountToken.objects.select_for_update()
        .select_related("user")
        .filter(token_hash=_sha256(raw), purpose=purpose)
        .first()
    )
    now = timezone.now()
    if (
        row is None
        or row.used_at is not None
        or row.expires_at <= now
        or row.email.lower() != row.user.email.lower()
        or not row.user.is_active
    ):
        raise EmailTokenInvalid()
    row.used_at = now
    row.save(update_fields=["used_at", "updated_at"])
    return row


# --- registration -----------------------------------------------------------------------------------


def user_register(*, email: str, password: str) -> None:
    """Register `email`, or (if it is taken) tell its owner by email. The caller answers the
    same either way, so registration does not reveal which addresses have accounts: password
    rules are checked first (they do not depend on the address), and the taken path spends the
    same hashing time as the new one."""
    email = User.objects.normalize_email(email).strip().lower()
    _validate_new_password(password, user=User(email=email))
    existing = User.objects.filter(email__iexact=email).first()
    if existing is None:
        try:
            with transaction.atomic(durable=True):
                user = User.objects.create_user(email, password)
                token = _account_token_issue(
                    user=user,
                    purpose=AccountTokenPurpose.VERIFY_EMAIL,
                    ttl=settings.K2_EMAIL_VERIFICATION_TTL,
                )
                record(user, "auth.register", target=user, details={"method": AuthMethod.PASSWORD})
                _on_commit_email(emails.send_verification_email, user.email, token)
            return
        except IntegrityError:  # registered concurrently: fall through to the "taken" path
            existing = User.objects.filter(email__iexact=email).first()
            if existing is None:
                raise
    else:
        _dummy_password_check(password)
    with transaction.atomic(durable=True):
        record("anonymous", "auth.register_existing_email", target=existing)
        _on_commit_email(emails.send_already_registered_email, existing.email)


def _oauth_identities_unlink_unproven(*, user: User) -> None:
    """Call (in the caller's transaction) when `user`'s address is proven for the first time.
    Linking an identity leaves the account verified, so one already linked to a still-unverified
    account was linked from an address its provider had not verified (possible before
    OAUTH_EMAIL_REQUIRED covered new accounts): its holder never proved the address, so the
    identity is removed and the sessions it opened are ended."""
    links = list(OAuthIdentity.objects.select_for_update().filter(user=user).order_by("pk"))
    if not links:
        return
    OAuthIdentity.objects.filter(pk__in=[link.pk for link in links]).delete()
    _revoke(
        Session.objects.filter(user=user, auth_method__in={link.provider for link in links}),
        reason=SessionRevokeReason.ACCOUNT_TAKEOVER_GUARD,
    )
    for link in links:
        record(
            user,
            "auth.oauth_unlinked",
            target=user,
            details={"provider": link.provider, "reason": "email_unverified_when_linked"},
        )


def email_verify(*, token: str) -> User:
    """Mark the address the token was sent to as verified (once; the token is then spent)."""
    with transaction.atomic(durable=True):
        row = _account_token_consume(raw=token, purpose=AccountTokenPurpose.VERIFY_EMAIL)
        user = row.user
        if not user.email_verified:
            _oauth_identities_unlink_unproven(user=user)
            user.email_verified = True
            user.save(update_fields=["email_verified", "updated_at"])
        record(user, "auth.email_verified", target=user)
    return user


# --- sessions and tokens --------------------------------------------------------------------------


def _issue_pair(*, user: User, session: Session) -> tuple[tokens.IssuedToken, tokens.IssuedToken]:
    claims = {"session_id": str(session.id)}
    access = tokens.encode(
        token_type=TOKEN_TYPE_ACCESS,
        subject=str(user.id),
        lifetime=settings.K2_JWT_ACCESS_TOKEN_LIFETIME,
        claims=claims,
    )
    refresh = tokens.encode(
        token_type=TOKEN_TYPE_REFRESH,
        subject=str(user.id),
        lifetime=settings.K2_JWT_REFRESH_TOKEN_LIFETIME,
        claims=claims,
    )
    return access, refresh


def _session_create(
    *, user: User, client: ClientInfo, auth_method: str, two_factor_verified: bool
) -> TokenPair:
    """Create a session and its first token pair (inside the caller's transaction); notice a
    sign-in from a device this user has not used before."""
    now = timezone.now()
    fingerprint = devices.fingerprint(client.user_agent, client.device_name)
    has_history = Session.objects.filter(user=user).exists()
    known_device = Session.objects.filter(user=user, device_fingerprint=fingerprint).exists()
    session = Session(
        user=user,
        token_hash="",
        device_info=devices.describe(client.user_agent, client.device_name),
        device_fingerprint=fingerprint,
        ip_address=client.ip,
        auth_method=auth_method,
        two_factor_verified=two_factor_verified,
        last_used_at=now,
        expires_at=now + settings.K2_JWT_REFRESH_TOKEN_LIFETIME,
    )
    access, refresh = _issue_pair(user=user, session=session)
    session.token_hash = _sha256(refresh.token)
    session.expires_at = refresh.expires_at
    session.save(force_insert=True)
    user.last_login = now
    user.save(update_fields=["last_login"])
    record(
        user,
        "auth.session_created",
        target=session,
        details={
            "auth_method": auth_method,
            "two_factor": two_factor_verified,
            "device": session.device_info,
        },
    )
    if has_history and not known_device:
        details = {"session_id": str(session.id), "device": session.device_info, "ip": client.ip}
        record(user, "security.new_device_login", target=user, details=details)
        where = session.device_info["client"] + " on " + session.device_info["os"]
        _on_commit_email(
            emails.send_security_notice,
            user.email,
            "New sign-in to your account",
            f"Your K2 account was signed in from a new device ({where}, IP {client.ip or 'unknown'}).",
            "new_device_login",
        )
    return TokenPair(access.token, refresh.token, access.expires_at, refresh.expires_at, session)


def _challenge_issue(*, user: User, auth_method: str, device_name: str = "") -> TwoFactorChallenge:
    issued = tokens.encode(
        token_type=TOKEN_TYPE_CHALLENGE,
        subject=str(user.id),
        lifetime=settings.K2_JWT_CHALLENGE_TOKEN_LIFETIME,
        claims={"auth_method": auth_method, "device_name": device_name[:100]},
    )
    record(user, "auth.two_factor_challenge_issued", target=user, details={"auth_method": auth_method})
    return TwoFactorChallenge(issued.token, issued.expires_at)


def _revoke(queryset: Any, *, reason: str) -> list[Session]:
    """Revoke the active sessions in `queryset` (caller's transaction); returns them. After
    commit, their open `/ws/prices` sockets are closed (an access token outlives a revocation
    only as a socket already open, so they are told)."""
    from apps.marketdata.ws.hub import sessions_revoked_publish_on_commit

    now = timezone.now()
    sessions = list(queryset.filter(revoked_at__isnull=True).select_for_update().order_by("pk"))
    if sessions:
        Session.objects.filter(pk__in=[s.pk for s in sessions]).update(
            revoked_at=now, revoked_reason=reason, updated_at=now
        )
        sessions_revoked_publish_on_commit(revoked=[(s.user_id, s.pk) for s in sessions])
    for session in sessions:
        session.revoked_at, session.revoked_reason = now, reason
    return sessions


def session_revoke(*, session: Session, actor: Any, reason: str = SessionRevokeReason.USER) -> bool:
    """End one session: its access and refresh tokens are refused from the next request on.
    Returns False if it had already ended."""
    with transaction.atomic(durable=True):
        revoked = _revoke(Session.objects.filter(pk=session.pk), reason=reason)
        if revoked:
            action = "auth.logout" if reason == SessionRevokeReason.LOGOUT else "auth.session_revoked"
            record(actor, action, target=session, details={"reason": reason, "user_id": str(session.user_id)})
    return bool(revoked)


def session_revoke_all(
    *, user: User, actor: Any, reason: str = SessionRevokeReason.USER, keep: Session | None = None
) -> int:
    """End every active API session of `user` (except `keep`) and every Django admin session of
    theirs. Returns how many API sessions were ended."""
    with transaction.atomic(durable=True):
        return _session_revoke_all(user=user, actor=actor, reason=reason, keep=keep)


def _session_revoke_all(*, user: User, actor: Any, reason: str, keep: Session | None) -> int:
    """The admin sessions (django.contrib.sessions, signed in at /admin/) end by raising
    `admin_session_epoch`, part of their session auth hash: each is refused and flushed at its
    next request, whatever its session key or the session backend. They cannot be counted (the
    session store is not searchable by user), so the audit entry says they were ended; it is
    written for staff, the only users who can hold one, even when no API session was active."""
    qs = Session.objects.filter(user=user)
    if keep is not None:
        qs = qs.exclude(pk=keep.pk)
    revoked = _revoke(qs, reason=reason)
    User.objects.filter(pk=user.pk).update(admin_session_epoch=F("admin_session_epoch") + 1)
    user.refresh_from_db(fields=["admin_session_epoch"])  # a later save of `user` must not undo it
    if revoked or user.is_staff:
        details = {
            "reason": reason,
            "count": len(revoked),
            "session_ids": [str(s.id) for s in revoked],
            "admin_sessions_ended": True,
        }
        record(actor, "auth.sessions_revoked", target=user, details=details)
    return len(revoked)


def session_touch(*, session: Session) -> None:
    """Record that the session was used (at most once a minute per session). Decided on the row
    the request has just read, so most requests cost nothing here."""
    now = timezone.now()
    if now - session.last_used_at >= SESSION_TOUCH_INTERVAL:
        Session.objects.filter(pk=session.pk).update(last_used_at=now)


def session_refresh(*, refresh_token: str, client: ClientInfo) -> TokenPair:
    """Rotate a refresh token: the presented one is spent and a new pair returned.

    A refresh token that was already spent means two parties hold it (the user and a thief,
    or a client replaying it): the whole session is revoked and REFRESH_TOKEN_REUSED raised.
    """
    claims = tokens.decode(refresh_token, token_type=TOKEN_TYPE_REFRESH)
    session_id, user_id = _uuid_or_none(claims.get("session_id")), _uuid_or_none(claims.get("sub"))
    if session_id is None or user_id is None:
        raise TokenInvalid()
    tokens.keyset.signer()  # make sure a signing key exists before the transaction
    failure: Exception | None = None
    pair: TokenPair | None = None
    with transaction.atomic(durable=True):
        session = (
            Session.objects.select_for_update()
            .select_related("user")
            .filter(pk=session_id, user_id=user_id)
            .first()
        )
        if session is None:
            raise TokenInvalid()
        user = session.user
        now = timezone.now()
        if session.revoked_at is not None:
            record(user, "auth.refresh_refused", target=session, details={"reason": "session_revoked"})
            failure = SessionRevoked()
        elif session.expires_at <= now:
            record(user, "auth.refresh_refused", target=session, details={"reason": "session_expired"})
            failure = TokenExpired("The session has expired. Sign in again.")
        elif not user.is_active:
            _revoke(Session.objects.filter(pk=session.pk), reason=SessionRevokeReason.STAFF)
            failure = AccountDisabled()
        elif not hmac.compare_digest(session.token_hash, _sha256(refresh_token)):
            _revoke(Session.objects.filter(pk=session.pk), reason=SessionRevokeReason.REFRESH_REUSE)
            record(
                user,
                "auth.refresh_reuse_detected",
                target=session,
                details={"session_id": str(session.id), "refresh_count": session.refresh_count},
            )
            _on_commit_email(
                emails.send_security_notice,
                user.email,
                "A session was signed out for your safety",
                "An old sign-in token of your K2 account was used again, which can mean it was "
                "copied. We signed that session out.",
                "refresh_reuse",
            )
            failure = RefreshTokenReused()
        else:
            access, refresh = _issue_pair(user=user, session=session)
            session.token_hash = _sha256(refresh.token)
            session.expires_at = refresh.expires_at
            session.last_used_at = now
            session.refreshed_at = now
            session.refresh_count += 1
            session.save(
                update_fields=[
                    "token_hash", "expires_at", "last_used_at", "refreshed_at", "refresh_count", "updated_at"
                ]
            )  # fmt: skip
            record(
                user, "auth.token_refreshed", target=session, details={"refresh_count": session.refresh_count}
            )
            pair = TokenPair(access.token, refresh.token, access.expires_at, refresh.expires_at, session)
    if failure is not None:
        raise failure
    assert pair is not None
    return pair


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError):
        return None


# --- login ---------------------------------------------------------------------------------------------


def _audit_failure(
    actor: Any, action: str, *, target: Any = None, details: dict[str, Any] | None = None
) -> None:
    with transaction.atomic(durable=True):
        record(actor, action, target=target, details=details)


def _login_throttled(*, email: str, scope: str, wait: int) -> NoReturn:
    _audit_failure("anonymous", "auth.login_throttled", details={"email": email, "scope": scope})
    raise Throttled(wait=wait, detail="Too many failed sign-in attempts. Try again later.")


def auth_login(*, email: str, password: str, client: ClientInfo) -> LoginResult:
    """Password login: tokens, or a 2FA challenge when the user has 2FA on.

    Failed attempts count per account and per IP; over the limit, the attempt is refused with
    429 before the password is checked. Unknown email, OAuth-only account and wrong password
    answer alike and cost one password hash each.
    """
    email = email.strip().lower()
    try:
        attempt = throttling.login_attempt(email=email, ip=client.ip)
    except throttling.LoginRefused as refused:
        _login_throttled(email=email, scope=refused.scope, wait=refused.wait)

    user = User.objects.filter(email__iexact=email).first()
    if user is None or not user.has_usable_password():
        _dummy_password_check(password)
        ok = False
    else:
        ok = user.check_password(password)
    if not ok:
        reason = "unknown_email" if user is None else "wrong_password"
        _audit_failure(
            "anonymous", "auth.login_failed", target=user, details={"email": email, "reason": reason}
        )
        raise InvalidCredentials()
    assert user is not None
    if not user.is_active:
        _audit_failure(user, "auth.login_failed", target=user, details={"reason": "account_disabled"})
        raise AccountDisabled()
    attempt.succeeded()
    tokens.keyset.signer()
    with transaction.atomic(durable=True):
        if user.totp_enabled:
            challenge = _challenge_issue(
                user=user, auth_method=AuthMethod.PASSWORD, device_name=client.device_name
            )
            return LoginResult(user=user, challenge=challenge)
        pair = _session_create(
            user=user, client=client, auth_method=AuthMethod.PASSWORD, two_factor_verified=False
        )
        record(
            user,
            "auth.login",
            target=user,
            details={"method": AuthMethod.PASSWORD, "session_id": str(pair.session.id)},
        )
    return LoginResult(user=user, tokens=pair)


# --- TOTP 2FA -----------------------------------------------------------------------------------------

_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_RECOVERY_RE = re.compile(r"[^A-Z0-9]")


def _recovery_normalise(code: str) -> str:
    return _RECOVERY_RE.sub("", code.upper())


def _recovery_codes_issue(*, user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = []
    for _ in range(settings.K2_RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    RecoveryCode.objects.bulk_create(
        [RecoveryCode(user=user, code_hash=_sha256(_recovery_normalise(c))) for c in codes]
    )
    return codes


def _totp_for(device: TOTPDevice) -> TOTP:
    key = base64.b32decode(device.key.reveal())
    return TOTP(key, step=device.step, t0=0, digits=device.digits, drift=0)


def _verify_totp(device: TOTPDevice, code: str) -> _SecondFactor:
    """Check `code` against the device (caller holds the row lock). A code is accepted once:
    only time steps after the last accepted one verify. Failures back off (django-otp)."""
    allowed, info = device.verify_is_allowed()
    if not allowed:
        locked_until = (info or {}).get("locked_until")
        wait = int((locked_until - timezone.now()).total_seconds()) + 1 if locked_until else 1
        return _SecondFactor(ok=False, method="totp", locked_seconds=max(wait, 1))
    totp = _totp_for(device)
    ok = (
        code.isdigit()
        and len(code) == device.digits
        and totp.verify(int(code), tolerance=device.tolerance, min_t=device.last_t + 1)
    )
    if ok:
        device.last_t = totp.t()
        device.throttle_reset(commit=False)
        device.last_used_at = timezone.now()
        device.save(
            update_fields=[
                "last_t",
                "throttling_failure_count",
                "throttling_failure_timestamp",
                "last_used_at",
            ]
        )
        return _SecondFactor(ok=True, method="totp")
    device.throttle_increment(commit=False)
    device.save(update_fields=["throttling_failure_count", "throttling_failure_timestamp"])
    return _SecondFactor(ok=False, method="totp")


def _verify_recovery_code(user: User, code: str) -> _SecondFactor:
    row = (
        RecoveryCode.objects.select_for_update()
        .filter(user=user, code_hash=_sha256(_recovery_normalise(code)), used_at__isnull=True)
        .first()
    )
    if row is None:
        return _SecondFactor(ok=False, method="recovery_code")
    row.used_at = timezone.now()
    row.save(update_fields=["used_at", "updated_at"])
    remaining = RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
    return _SecondFactor(ok=True, method="recovery_code", details={"recovery_codes_remaining": remaining})


def _second_factor(*, user: User, code: str | None, recovery_code: str | None) -> _SecondFactor:
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
    if device is None:
        return _SecondFactor(ok=False, method="none")
    if recovery_code:
        return _verify_recovery_code(user, recovery_code)
    return _verify_totp(device, code or "")


def _recovery_code_used(user: User, result: _SecondFactor) -> None:
    """Report a sign-in with a recovery code: audited (codes left, never the code) and told to
    the user by email, who may not know their codes are in someone else's hands."""
    record(user, "auth.2fa_recovery_code_used", target=user, details=result.details)
    _notify_2fa_change(
        user, "recovery_code_used", "A two-factor recovery code was used to sign in to your account."
    )


def two_factor_code_check(*, user: User, code: str) -> _SecondFactor:
    """Check the second factor of a sign-in that has one box for it (the admin's), as the API's
    2FA step does: digits are a TOTP code of `user`'s confirmed device, anything else a recovery
    code, spent on success (each works once) and reported as the API reports it. Returns `.ok`,
    `.method` (`totp` or `recovery_code`) and `.locked_seconds` when the device is locked out
    after too many wrong codes; counting and recording a failure is the caller's."""
    code = code.strip()
    is_totp = code.isdigit() and len(code) <= 8  # recovery codes are 16 characters, mostly letters
    with transaction.atomic(durable=True):
        result = _second_factor(
            user=user, code=code if is_totp else None, recovery_code=None if is_totp else code
        )
        if result.ok and result.method == "recovery_code":
            _recovery_code_used(user, result)
    return result


def _raise_second_factor_failure(result: _SecondFactor, counter: throttling.FailureCounter) -> None:
    if result.locked_seconds is not None:
        raise Throttled(wait=result.locked_seconds, detail="Too many wrong codes. Try again later.")
    counter.fail()
    raise TwoFactorInvalid()


def _notify_2fa_change(user: User, event: str, text: str) -> None:
    record(user, f"security.{event}", target=user)
    _on_commit_email(
        emails.send_security_notice, user.email, "Two-factor authentication changed", text, event
    )


def totp_enable(*, user: User) -> TotpEnrolment:
    """Start (or restart) TOTP enrolment: a new seed, not active until `totp_confirm`."""
    with transaction.atomic(durable=True):
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.totp_enabled:
            raise TwoFactorAlreadyEnabled()
        TOTPDevice.objects.filter(user=locked).delete()
        secret = base64.b32encode(secrets.token_bytes(20)).decode("ascii")
        device = TOTPDevice(user=locked, name="Authenticator app", confirmed=False, key=secret)
        device.tolerance = settings.K2_TOTP_TOLERANCE
        device.save(force_insert=True)
        record(user, "auth.2fa_enrolment_started", target=user)
    issuer = settings.K2_TOTP_ISSUER
    label = quote(f"{issuer}:{user.email}")
    params = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": device.digits,
            "period": device.step,
        }
    )
    uri = f"otpauth://totp/{label}?{params}"
    return TotpEnrolment(secret, uri, _qr_svg(uri), _qr_png(uri), device.digits, device.step)


def _qr_svg(data: str) -> str:
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage)
    return "data:image/svg+xml;base64," + base64.b64encode(image.to_string()).decode("ascii")


def _qr_png(data: str) -> str:
    buffer = io.BytesIO()
    qrcode.make(data).save(buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def totp_confirm(*, user: User, code: str) -> list[str]:
    """Confirm enrolment with a current code: 2FA is on from now and one-time recovery codes
    are returned (shown once; stored hashed)."""
    counter = throttling.two_factor_counter(str(user.pk))
    counter.check()
    result = _SecondFactor(ok=False)
    codes: list[str] = []
    with transaction.atomic(durable=True):
        locked = User.objects.select_for_update().get(pk=user.pk)
        if locked.totp_enabled:
            raise TwoFactorAlreadyEnabled()
        device = TOTPDevice.objects.select_for_update().filter(user=locked, confirmed=False).first()
        if device is None:
            raise TwoFactorEnrolmentMissing()
        result = _verify_totp(device, code)
        if result.ok:
            device.confirmed = True
            device.confirmed_at = timezone.now()
            device.save(update_fields=["confirmed", "confirmed_at"])
            locked.totp_enabled = True
            locked.save(update_fields=["totp_enabled", "updated_at"])
            codes = _recovery_codes_issue(user=locked)
            record(user, "auth.2fa_enabled", target=user, details={"recovery_codes_issued": len(codes)})
            _notify_2fa_change(locked, "two_factor_enabled", "Two-factor authentication was turned on.")
        else:
            record(user, "auth.2fa_confirm_failed", target=user)
    if not result.ok:
        _raise_second_factor_failure(result, counter)
    counter.reset()
    return codes


def totp_disable(*, user: User, password: str, code: str | None, recovery_code: str | None) -> None:
    """Turn 2FA off; needs the password and a current code (or a recovery code)."""
    counter = throttling.two_factor_counter(str(user.pk))
    counter.check()
    if not user.totp_enabled:
        raise TwoFactorNotEnabled()
    if not user.has_usable_password():
        raise PasswordNotSet()
    if not user.check_password(password):
        counter.fail()
        _audit_failure(user, "auth.2fa_disable_failed", target=user, details={"reason": "wrong_password"})
        raise PasswordIncorrect()
    with transaction.atomic(durable=True):
        locked = User.objects.select_for_update().get(pk=user.pk)
        result = _second_factor(user=locked, code=code, recovery_code=recovery_code)
        if result.ok:
            TOTPDevice.objects.filter(user=locked).delete()
            RecoveryCode.objects.filter(user=locked).delete()
            locked.totp_enabled = False
            locked.save(update_fields=["totp_enabled", "updated_at"])
            record(user, "auth.2fa_disabled", target=user, details={"method": result.method})
            _notify_2fa_change(locked, "two_factor_disabled", "Two-factor authentication was turned off.")
        else:
            record(user, "auth.2fa_disable_failed", target=user, details={"reason": "wrong_code"})
    if not result.ok:
        _raise_second_factor_failure(result, counter)
    counter.reset()
    user.totp_enabled = False


def auth_two_factor_login(
    *, challenge_token: str, code: str | None, recovery_code: str | None, client: ClientInfo
) -> LoginResult:
    """Complete a login challenge with a TOTP code or a recovery code (each accepted once)."""
    claims = tokens.decode(challenge_token, token_type=TOKEN_TYPE_CHALLENGE)
    user_id = _uuid_or_none(claims.get("sub"))
    user = User.objects.filter(pk=user_id).first() if user_id else None
    if user is None:
        raise TokenInvalid()
    if not user.is_active:
        raise AccountDisabled()
    used_key = f"accounts:challenge-used:{claims['jti']}"
    if cache.get(used_key):
        raise TokenInvalid("This sign-in challenge was already completed. Sign in again.")
    counter = throttling.two_factor_counter(str(user.pk))
    counter.check()
    auth_method = str(claims.get("auth_method") or AuthMethod.PASSWORD)
    if not client.device_name and isinstance(claims.get("device_name"), str):
        client = ClientInfo(ip=client.ip, user_agent=client.user_agent, device_name=claims["device_name"])
    tokens.keyset.signer()
    pair: TokenPair | None = None
    with transaction.atomic(durable=True):
        result = _second_factor(user=user, code=code, recovery_code=recovery_code)
        if result.ok:
            ttl = (
                int(settings.K2_JWT_CHALLENGE_TOKEN_LIFETIME.total_seconds()) + settings.K2_JWT_LEEWAY_SECONDS
            )
            if not cache.add(used_key, 1, ttl):
                raise TokenInvalid("This sign-in challenge was already completed. Sign in again.")
            pair = _session_create(
                user=user, client=client, auth_method=auth_method, two_factor_verified=True
            )
            details = {
                "method": auth_method,
                "second_factor": result.method,
                "session_id": str(pair.session.id),
            }
            record(user, "auth.login", target=user, details=details)
            if result.method == "recovery_code":
                _recovery_code_used(user, result)
        else:
            record(user, "auth.2fa_failed", target=user, details={"method": result.method or "totp"})
    if not result.ok:
        _raise_second_factor_failure(result, counter)
    counter.reset()
    assert pair is not None
    return LoginResult(user=user, tokens=pair)


# --- passwords ----------------------------------------------------------------------------------------


def password_change(*, user: User, session: Session | None, current_password: str, new_password: str) -> int:
    """Change the password; every other session is signed out and every outstanding reset link
    spent. Returns how many sessions were signed out."""
    counter = throttling.login_account_counter(user.email)
    counter.check()
    if not user.has_usable_password():
        raise PasswordNotSet()
    # Counted before the check, as a login is (concurrent guesses share the account's limit);
    # the attempt is taken back when the current password was right.
    if counter.fail() > counter.limit:
        counter.check()  # raises: over the limit
    if not user.check_password(current_password):
        _audit_failure(user, "auth.password_change_failed", target=user, details={"reason": "wrong_password"})
        raise PasswordIncorrect()
    counter.forgive()
    _validate_new_password(new_password, user=user, field_name="new_password")
    with transaction.atomic(durable=True):
        locked = User.objects.select_for_update().get(pk=user.pk)
        locked.set_password(new_password)
        locked.password_changed_at = timezone.now()
        locked.save(update_fields=["password", "password_changed_at", "updated_at"])
        AccountToken.objects.filter(
            user=locked, purpose=AccountTokenPurpose.PASSWORD_RESET, used_at__isnull=True
        ).update(used_at=timezone.now())
        revoked = _session_revoke_all(
            user=locked, actor=user, reason=SessionRevokeReason.PASSWORD_CHANGE, keep=session
        )
        record(user, "auth.password_changed", target=user, details={"sessions_revoked": revoked})
        _on_commit_email(
            emails.send_security_notice,
            locked.email,
            "Your password was changed",
            "The password of your K2 account was changed and your other sessions were signed out.",
            "password_changed",
        )
    user.password = locked.password
    return revoked


def password_reset_request(*, email: str) -> None:
    """Email a reset link if an active account has this address. Answers the same either way."""
    email = User.objects.normalize_email(email).strip().lower()
    user = User.objects.filter(email__iexact=email, is_active=True).first()
    with transaction.atomic(durable=True):
        if user is None:
            record("anonymous", "auth.password_reset_requested", details={"email": email, "account": False})
            return
        token = _account_token_issue(
            user=user, purpose=AccountTokenPurpose.PASSWORD_RESET, ttl=settings.K2_PASSWORD_RESET_TTL
        )
        record("anonymous", "auth.password_reset_requested", target=user, details={"account": True})
        _on_commit_email(emails.send_password_reset_email, user.email, token)


def password_reset_confirm(*, token: str, new_password: str) -> int:
    """Set a new password with an emailed token; signs out every session and spends every
    outstanding reset token. Proves control of the address, so it also verifies the email."""
    with transaction.atomic(durable=True):
        row = _account_token_consume(raw=token, purpose=AccountTokenPurpose.PASSWORD_RESET)
        user = User.objects.select_for_update().get(pk=row.user_id)
        _validate_new_password(new_password, user=user, field_name="new_password")
        if not user.email_verified:
            _oauth_identities_unlink_unproven(user=user)
        user.set_password(new_password)
        user.password_changed_at = timezone.now()
        user.email_verified = True
        user.save(update_fields=["password", "password_changed_at", "email_verified", "updated_at"])
        AccountToken.objects.filter(
            user=user, purpose=AccountTokenPurpose.PASSWORD_RESET, used_at__isnull=True
        ).update(used_at=timezone.now())
        revoked = _session_revoke_all(
            user=user, actor=user, reason=SessionRevokeReason.PASSWORD_RESET, keep=None
        )
        record(user, "auth.password_reset", target=user, details={"sessions_revoked": revoked})
        _on_commit_email(
            emails.send_security_notice,
            user.email,
            "Your password was reset",
            "The password of your K2 account was reset and every session was signed out.",
            "password_reset",
        )
    throttling.login_account_counter(user.email).reset()
    return revoked


# --- OAuth ---------------------------------------------------------------------------------------------


def oauth_login(*, provider: str, id_token: str, nonce: str | None, client: ClientInfo) -> LoginResult:
    """Sign in with a Google or Apple ID token, creating the user on first sign-in.

    Account linking policy: a new provider identity attaches to an existing account with the
    same email only if the provider says the address is verified (else OAUTH_EMAIL_CONFLICT),
    and creates an account only from a verified address (else OAUTH_EMAIL_REQUIRED): an
    unverified one could be someone else's, who would later claim the account by reset.
    If that account had never verified its email, whoever set its password never proved they
    own the address: the password is discarded and its sessions ended (pre-hijack guard).
    """
    try:
        identity = oauth.verify_id_token(provider=provider, id_token=id_token, nonce=nonce)
    except OAuthTokenInvalid as exc:
        _audit_failure("anonymous", "auth.oauth_failed", details={"provider": provider, **exc.details})
        raise
    tokens.keyset.signer()
    with transaction.atomic(durable=True):
        link = (
            OAuthIdentity.objects.select_for_update()
            .select_related("user")
            .filter(provider=provider, provider_user_id=identity.subject)
            .first()
        )
        created = False
        if link is not None:
            user = link.user
        else:
            if not identity.email:
                raise OAuthEmailRequired()
            existing = User.objects.select_for_update().filter(email__iexact=identity.email).first()
            if existing is not None:
                if not identity.email_verified:
                    raise OAuthEmailConflict()
                user = existing
                if not user.email_verified:
                    user.set_unusable_password()
                    user.email_verified = True
                    user.save(update_fields=["password", "email_verified", "updated_at"])
                    _session_revoke_all(
                        user=user, actor=user, reason=SessionRevokeReason.ACCOUNT_TAKEOVER_GUARD, keep=None
                    )
                    record(
                        user,
                        "auth.oauth_unverified_password_discarded",
                        target=user,
                        details={"provider": provider},
                    )
            else:
                if not identity.email_verified:
                    raise OAuthEmailRequired(
                        "The provider has not verified this email address; K2 needs a verified one "
                        "to create an account."
                    )
                user = User.objects.create_user(identity.email, None, email_verified=True)
                created = True
                record(user, "auth.register", target=user, details={"method": provider})
            link = OAuthIdentity.objects.create(
                user=user, provider=provider, provider_user_id=identity.subject, email=identity.email
            )
            record(user, "auth.oauth_linked", target=link, details={"provider": provider})
        if not user.is_active:
            raise AccountDisabled()
        link.last_login_at = timezone.now()
        link.save(update_fields=["last_login_at", "updated_at"])
        if user.totp_enabled:
            challenge = _challenge_issue(user=user, auth_method=provider, device_name=client.device_name)
            return LoginResult(user=user, challenge=challenge, created=created)
        pair = _session_create(user=user, client=client, auth_method=provider, two_factor_verified=False)
        record(
            user,
            "auth.oauth_login",
            target=user,
            details={"provider": provider, "created": created, "session_id": str(pair.session.id)},
        )
    return LoginResult(user=user, tokens=pair, created=created)


# --- profile --------------------------------------------------------------------------------------------


def user_profile_update(*, user: User, data: dict[str, Any]) -> User:
    """Update profile settings (already validated by the serializer). Notification
    preferences merge into the current ones, so a client can send just what changes."""
    editable = {"display_name", "display_currency", "timezone", "notification_preferences"}
    unknown = set(data) - editable
    if unknown:
        raise DjangoValidationError(
            {name: ["This field cannot be changed here."] for name in sorted(unknown)}
        )
    with transaction.atomic(durable=True):
        locked = User.objects.select_for_update().get(pk=user.pk)
        changed: list[str] = []
        for name, value in data.items():
            if name == "notification_preferences":
                merged = {
                    category: dict(locked.notification_preferences.get(category, {}))
                    for category in NOTIFICATION_CATEGORIES
                }
                for category, channels in value.items():
                    merged.setdefault(category, {}).update(channels)
                for category in merged:
                    for channel in NOTIFICATION_CHANNELS:
                        merged[category].setdefault(channel, True)
                value = merged
            if getattr(locked, name) != value:
                setattr(locked, name, value)
                changed.append(name)
        if changed:
            locked.save(update_fields=[*changed, "updated_at"])
            record(user, "user.profile_updated", target=locked, details={"fields": changed})
    return locked


def user_kyc_status_set(*, user: User, status: str, actor: Any) -> User:
    """Staff only (admin): set the KYC status. Not durable: the admin change form calls it
    inside its own transaction, and the change and its audit entry commit with that."""
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        previous = locked.kyc_status
        if previous != status:
            locked.kyc_status = status
            locked.save(update_fields=["kyc_status", "updated_at"])
            record(actor, "user.kyc_status_changed", target=locked, details={"from": previous, "to": status})
    return locked


# --- JWT signing keys ------------------------------------------------------------------------------------


def jwt_key_create(*, algorithm: str | None = None) -> SigningKey:
    """Make a signing key (used to bootstrap the first one). Joins the caller's transaction."""
    algorithm = algorithm or settings.K2_JWT_ALGORITHM
    private_pem, public_pem = tokens.generate_key_pair(algorithm)
    with transaction.atomic():
        key = SigningKey(
            kid=tokens.new_kid(), algorithm=algorithm, private_key=private_pem, public_key=public_pem
        )
        key.save(force_insert=True)
        record(None, "auth.jwt_key_created", target=key, details={"kid": key.kid, "algorithm": algorithm})
    return key


def jwt_key_rotate(
    *, actor: Any = None, overlap: timedelta | None = None, algorithm: str | None = None
) -> SigningKey:
    """Add a new signing key. The previous ones stop signing but keep verifying for `overlap`
    (default: the refresh-token lifetime), so every token already issued stays valid."""
    overlap = overlap if overlap is not None else settings.K2_JWT_KEY_OVERLAP
    algorithm = algorithm or settings.K2_JWT_ALGORITHM
    private_pem, public_pem = tokens.generate_key_pair(algorithm)
    now = timezone.now()
    with transaction.atomic(durable=True):
        previous = list(SigningKey.objects.select_for_update().filter(retired_at__isnull=True).order_by("pk"))
        for old in previous:
            old.retired_at = now
            old.verify_until = now + overlap
            old.save(update_fields=["retired_at", "verify_until", "updated_at"])
        key = SigningKey(
            kid=tokens.new_kid(), algorithm=algorithm, private_key=private_pem, public_key=public_pem
        )
        key.save(force_insert=True)
        record(
            actor,
            "auth.jwt_key_rotated",
            target=key,
            details={
                "kid": key.kid,
                "retired": [k.kid for k in previous],
                "verify_until": (now + overlap).isoformat(),
            },
        )
        transaction.on_commit(tokens.keyset.clear)
    return key


def jwt_keys_prune(*, actor: Any = None) -> int:
    """Delete keys whose verification window has ended (tokens they signed are already refused)."""
    with transaction.atomic(durable=True):
        expired = list(
            SigningKey.objects.filter(verify_until__lte=timezone.now()).values_list("kid", flat=True)
        )
        if expired:
            SigningKey.objects.filter(kid__in=expired).delete()
            record(actor, "auth.jwt_keys_pruned", details={"kids": expired})
        transaction.on_commit(tokens.keyset.clear)
    return len(expired)
