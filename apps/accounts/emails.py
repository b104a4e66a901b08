"""Account emails through Django's email backend (EMAIL_BACKEND; console in development,
locmem in tests). Called after commit; a delivery failure is logged, never raised into the
request that triggered it. The notifications app will take these over once it exists."""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail

from k2.observability.logging import get_logger

log = get_logger(__name__)


def _send(to: str, subject: str, body: str, kind: str) -> None:
    try:
        send_mail(f"[K2] {subject}", body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)
    except Exception as exc:
        log.warning("account_email_failed", kind=kind, error_type=type(exc).__name__)
    else:
        log.info("account_email_sent", kind=kind)


def send_verification_email(to: str, token: str) -> None:
    link = settings.K2_VERIFY_EMAIL_URL.format(token=token)
    _send(
        to,
        "Confirm your email address",
        "Welcome to K2.\n\nConfirm your email address by opening this link:\n\n"
        f"{link}\n\nOr send this code to POST /v1/auth/verify-email:\n\n{token}\n\n"
        "If you did not create a K2 account, ignore this email.\n",
        "verify_email",
    )


def send_already_registered_email(to: str) -> None:
    _send(
        to,
        "Someone tried to register with your email",
        "Someone (perhaps you) tried to create a K2 account with this email address, but it "
        "already has one.\n\nIf it was you, sign in, or reset your password if you forgot it.\n"
        "If it was not you, you can ignore this email; your account is unchanged.\n",
        "already_registered",
    )


def send_password_reset_email(to: str, token: str) -> None:
    link = settings.K2_PASSWORD_RESET_URL.format(token=token)
    _send(
        to,
        "Reset your password",
        f"A password reset was requested for your K2 account.\n\nOpen this link:\n\n{link}\n\n"
        f"Or send this code to POST /v1/auth/password/reset/confirm:\n\n{token}\n\n"
        "If you did not ask for this, ignore this email; your password is unchanged.\n",
        "password_reset",
    )


def send_security_notice(to: str, subject: str, body: str, kind: str) -> None:
    _send(
        to,
        subject,
        f"{body}\n\nIf this was not you, reset your password and review your sessions now.\n",
        kind,
    )
