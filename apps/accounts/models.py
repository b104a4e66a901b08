"""Accounts tables (architecture 2.1): `users`, `oauth_providers`, `sessions`, plus the TOTP
device, recovery codes, single-use email tokens and the JWT signing keys.

Nothing secret is stored in the clear: refresh tokens, recovery codes and email tokens as
SHA-256 digests (they are 128+ bit random values, so a fast hash is enough), the TOTP seed and
the JWT private keys encrypted with the vault.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_otp.models import Device, ThrottlingMixin, TimestampMixin

from apps.accounts.choices import (
    AccountTokenPurpose,
    AuthMethod,
    DisplayCurrency,
    KycStatus,
    OAuthProvider,
    SessionRevokeReason,
    default_notification_preferences,
)
from k2.core.models import BaseModel
from k2.vault.fields import EncryptedTextField

_SESSION_AUTH_HASH_SALT = "apps.accounts.models.User.get_session_auth_hash"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):  # type: ignore[django-manager-missing]  # untyped django-otp base
    """A K2 user, keyed by email. `password` is unusable for OAuth-only users."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=255, unique=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    email_verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    # Profile, settings and preferences (/v1/users/me).
    display_name = models.CharField(max_length=100, blank=True, default="")
    display_currency = models.CharField(
        max_length=3, choices=DisplayCurrency.choices, default=DisplayCurrency.USD
    )
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA time zone name")
    notification_preferences = models.JSONField(default=default_notification_preferences)
    kyc_status = models.CharField(
        max_length=20, choices=KycStatus.choices, default=KycStatus.NOT_STARTED, db_index=True
    )
    # Denormalised from the confirmed TOTP device (architecture `users.totp_enabled`), kept in
    # step by the 2FA services in the same transaction.
    totp_enabled = models.BooleanField(default=False, db_index=True)
    password_changed_at = models.DateTimeField(null=True, blank=True)
    # Raised by `services.session_revoke_all`. Mixed into the session auth hash that Django keeps
    # in each of its own sessions (the admin's; the API uses `Session` below) and compares on
    # every request, so raising it ends all of them, as a password change does.
    admin_session_epoch = models.PositiveIntegerField(default=0, editable=False)

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        db_table = "users"
        constraints = [models.UniqueConstraint(Lower("email"), name="users_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        """A full save of an existing user writes every field but `admin_session_epoch`: only
        `session_revoke_all` raises it, in the database, so an instance read before a revocation
        (an admin change form, a password form) cannot write the old epoch back and revive the
        admin sessions it ended."""
        full = not args and kwargs.get("update_fields") is None and not kwargs.get("force_insert")
        if full and not self._state.adding:
            kwargs["update_fields"] = _user_fields_saved_in_full()
        super().save(*args, **kwargs)

    # Django's session auth hash is an HMAC of the password hash (django.contrib.auth.get_user
    # flushes a session whose stored hash no longer matches); K2 adds `admin_session_epoch`. At
    # 0 it is Django's own, so sessions from before the field stay valid. Both the current and
    # the SECRET_KEY_FALLBACKS hashes carry it: a fallback without it would revive a revoked
    # session after a key rotation.
    def get_session_auth_hash(self) -> str:
        if not self.admin_session_epoch:
            return super().get_session_auth_hash()
        return self._epoch_session_auth_hash(secret=None)

    def get_session_auth_fallback_hash(self) -> Iterator[str]:
        if not self.admin_session_epoch:
            yield from super().get_session_auth_fallback_hash()
            return
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._epoch_session_auth_hash(secret=secret)

    def _epoch_session_auth_hash(self, *, secret: str | bytes | None) -> str:
        value = f"{self.password}:{self.admin_session_epoch}"
        return salted_hmac(_SESSION_AUTH_HASH_SALT, value, secret=secret, algorithm="sha256").hexdigest()


@functools.cache
def _user_fields_saved_in_full() -> tuple[str, ...]:
    return tuple(
        f.name for f in User._meta.concrete_fields if not f.primary_key and f.name != "admin_session_epoch"
    )


class OAuthIdentity(BaseModel):
    """A Google or Apple account linked to a user (architecture `oauth_providers`)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_identities"
    )
    provider = models.CharField(max_length=50, choices=OAuthProvider.choices)
    provider_user_id = models.CharField(max_length=255)
    email = models.EmailField(max_length=255, blank=True, default="")
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "oauth_providers"
        verbose_name = "OAuth identity"
        verbose_name_plural = "OAuth identities"
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_user_id"], name="oauth_provider_subject_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.provider_user_id}"


class SessionQuerySet(models.QuerySet["Session"]):
    def active(self) -> SessionQuerySet:
        return self.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())


class Session(BaseModel):
    """One signed-in device (architecture `sessions`).

    Access tokens name the session (`session_id` claim) and are refused as soon as it is
    revoked or expired. `token_hash` is the SHA-256 of the one refresh token currently valid;
    each refresh replaces it, so a refresh token presented twice is detectably stale.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sessions")
    token_hash = models.CharField(max_length=64)
    device_info = models.JSONField(default=dict, blank=True)
    device_fingerprint = models.CharField(max_length=64, blank=True, default="", db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    auth_method = models.CharField(max_length=20, choices=AuthMethod.choices, default=AuthMethod.PASSWORD)
    two_factor_verified = models.BooleanField(default=False)
    last_used_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_count = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(
        max_length=32, choices=SessionRevokeReason.choices, blank=True, default=""
    )

    objects = SessionQuerySet.as_manager()

    class Meta:
        db_table = "sessions"
        indexes = [models.Index(fields=["user", "revoked_at", "expires_at"], name="sessions_user_active_idx")]

    def __str__(self) -> str:
        return f"session {self.id} ({self.user_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class TOTPDevice(TimestampMixin, ThrottlingMixin, Device):
    """A django-otp TOTP device whose seed is encrypted with the vault.

    `last_t` is the time step of the last accepted code: only later steps verify, so a code is
    accepted once. Verification failures back off exponentially (django-otp ThrottlingMixin).
    A user has at most one device; `confirmed` turns true when enrolment is verified.
    """

    id: models.UUIDField = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user: models.ForeignKey[User, User] = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="totp_devices"
    )
    key = EncryptedTextField(help_text="Base32 TOTP seed (encrypted)")
    step: models.PositiveSmallIntegerField = models.PositiveSmallIntegerField(default=30)
    digits: models.PositiveSmallIntegerField = models.PositiveSmallIntegerField(default=6)
    tolerance: models.PositiveSmallIntegerField = models.PositiveSmallIntegerField(default=1)
    last_t: models.BigIntegerField = models.BigIntegerField(default=-1)
    confirmed_at: models.DateTimeField = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "totp_devices"
        verbose_name = "TOTP device"
        constraints = [models.UniqueConstraint(fields=["user"], name="totp_devices_one_per_user")]

    def get_throttle_factor(self) -> int:
        return int(settings.K2_TOTP_THROTTLE_FACTOR)


class RecoveryCode(BaseModel):
    """A one-time 2FA recovery code, stored as a SHA-256 digest."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    code_hash = models.CharField(max_length=64, unique=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "recovery_codes"

    def __str__(self) -> str:
        return f"recovery code {self.id}"


class AccountToken(BaseModel):
    """A single-use emailed token (email verification, password reset), stored hashed."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_tokens"
    )
    purpose = models.CharField(max_length=20, choices=AccountTokenPurpose.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    email = models.EmailField(max_length=255)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "account_tokens"
        indexes = [models.Index(fields=["user", "purpose"], name="account_tokens_user_purpose")]

    def __str__(self) -> str:
        return f"{self.purpose} token {self.id}"


class SigningKey(BaseModel):
    """A JWT signing key pair. The newest non-retired key signs; every key whose
    `verify_until` has not passed verifies (tokens name it in the `kid` header), so rotation
    never logs anyone out. The private key is encrypted with the vault."""

    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=10)
    private_key = EncryptedTextField(help_text="PEM private key (encrypted)")
    public_key = models.TextField(help_text="PEM public key")
    retired_at = models.DateTimeField(null=True, blank=True, help_text="When it stopped signing")
    verify_until = models.DateTimeField(null=True, blank=True, help_text="Tokens it signed are refused after")

    class Meta:
        db_table = "jwt_signing_keys"
        verbose_name = "JWT signing key"

    def __str__(self) -> str:
        return self.kid
