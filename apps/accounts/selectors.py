"""Accounts reads, including the one way to turn an access token into a user and session."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.choices import TOKEN_TYPE_ACCESS
from apps.accounts.exceptions import AccountDisabled, SessionNotFound, SessionRevoked, TokenInvalid
from apps.accounts.models import RecoveryCode, Session, User
from apps.accounts.tokens import decode
from k2.core.queries import row_get


def user_from_access_token(token: str) -> tuple[User, Session]:
    """The user and session an access token stands for, checked against the database.

    For the DRF authentication class and for anything else that receives a K2 access token
    (WebSocket consumers: wrap in `database_sync_to_async`). Raises `TokenInvalid`,
    `TokenExpired`, `SessionRevoked` (revoked or expired session) or `AccountDisabled`; all
    are `ApplicationError`s with status 401.

    The session row is read on every call (one indexed join with the user, the same query
    that loading the user would cost anyway), so a revoked session's tokens fail on the very
    next request on every replica, with no cache to invalidate.
    """
    claims = decode(token, token_type=TOKEN_TYPE_ACCESS)
    try:
        session_id = uuid.UUID(str(claims.get("session_id")))
        user_id = uuid.UUID(str(claims.get("sub")))
    except ValueError:
        raise TokenInvalid() from None
    session = row_get(Session, related=("user",), pk=session_id)
    if session is None or session.user_id != user_id:
        raise TokenInvalid()
    if session.revoked_at is not None:
        raise SessionRevoked()
    if session.expires_at <= timezone.now():
        raise SessionRevoked("This session has expired. Sign in again.")
    if not session.user.is_active:
        raise AccountDisabled()
    return session.user, session


def session_list(*, user: User) -> QuerySet[Session]:
    """The user's active sessions, most recently used first."""
    return Session.objects.active().filter(user=user).order_by("-last_used_at", "-id")


def session_get_active(*, user: User, session_id: object) -> Session:
    """One active session of `user`; SessionNotFound for anything else (including others')."""
    try:
        pk = uuid.UUID(str(session_id))
    except ValueError:
        raise SessionNotFound() from None
    session = Session.objects.active().filter(user=user, pk=pk).first()
    if session is None:
        raise SessionNotFound()
    return session


def recovery_codes_remaining(*, user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
