"""Choices and constants of the accounts app."""

from __future__ import annotations

from django.db import models


class KycStatus(models.TextChoices):
    NOT_STARTED = "not_started", "Not started"
    PENDING = "pending", "Pending review"
    VERIFIED = "verified", "Verified"
    REJECTED = "rejected", "Rejected"


class DisplayCurrency(models.TextChoices):
    USD = "USD", "US dollar"
    EUR = "EUR", "Euro"
    GBP = "GBP", "Pound sterling"
    JPY = "JPY", "Japanese yen"
    CAD = "CAD", "Canadian dollar"
    AUD = "AUD", "Australian dollar"
    CHF = "CHF", "Swiss franc"
    SGD = "SGD", "Singapore dollar"


class AuthMethod(models.TextChoices):
    PASSWORD = "password", "Password"
    GOOGLE = "google", "Google"
    APPLE = "apple", "Apple"


class OAuthProvider(models.TextChoices):
    GOOGLE = "google", "Google"
    APPLE = "apple", "Apple"


class AccountTokenPurpose(models.TextChoices):
    VERIFY_EMAIL = "verify_email", "Email verification"
    PASSWORD_RESET = "password_reset", "Password reset"


class SessionRevokeReason(models.TextChoices):
    LOGOUT = "logout", "Logged out"
    USER = "user", "Revoked by the user"
    PASSWORD_CHANGE = "password_change", "Password changed"
    PASSWORD_RESET = "password_reset", "Password reset"
    REFRESH_REUSE = "refresh_reuse", "Refresh token reuse detected"
    STAFF = "staff", "Revoked by staff"
    ACCOUNT_TAKEOVER_GUARD = "account_takeover_guard", "Pre-verification password discarded"


# Notification channel defaults a user can set on /users/me (the notifications app reads them).
NOTIFICATION_CHANNELS = ("email", "push", "in_app")
NOTIFICATION_CATEGORIES = ("order_updates", "price_alerts", "event_alerts", "account_security")


def default_notification_preferences() -> dict[str, dict[str, bool]]:
    return {category: dict.fromkeys(NOTIFICATION_CHANNELS, True) for category in NOTIFICATION_CATEGORIES}


# JWT token types (the `token_type` claim); each endpoint accepts exactly one.
TOKEN_TYPE_ACCESS = "access"
TOKEN_TYPE_REFRESH = "refresh"
TOKEN_TYPE_CHALLENGE = "2fa_challenge"
