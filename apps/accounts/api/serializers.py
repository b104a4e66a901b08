"""Input and output shapes of the accounts API. Inputs check shape only (strict types: a
number is not a string, a string is not a boolean); rules live in the services."""

from __future__ import annotations

import re
import zoneinfo
from functools import cache
from typing import Any

from django.conf import settings
from rest_framework import serializers

from apps.accounts.choices import NOTIFICATION_CATEGORIES, NOTIFICATION_CHANNELS, DisplayCurrency
from apps.accounts.models import Session, User


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into text."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictEmailField(serializers.EmailField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data)).strip().lower()


def PasswordField(**kwargs: Any) -> StrictCharField:
    return StrictCharField(
        trim_whitespace=False,
        max_length=settings.K2_PASSWORD_MAX_LENGTH,
        style={"input_type": "password"},
        write_only=True,
        **kwargs,
    )


class StrictInputSerializer(serializers.Serializer):
    """Refuses fields it does not know (a typo must not be silently ignored)."""

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        initial = self.initial_data if isinstance(self.initial_data, dict) else {}
        unknown = sorted(set(initial) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return attrs


def _device_name() -> StrictCharField:
    return StrictCharField(
        required=False, allow_blank=True, max_length=100, help_text="Optional name shown in the session list."
    )


# --- auth inputs ----------------------------------------------------------------------------


class RegisterInputSerializer(StrictInputSerializer):
    email = StrictEmailField(max_length=255)
    password = PasswordField()


class VerifyEmailInputSerializer(StrictInputSerializer):
    token = StrictCharField(max_length=200)


class LoginInputSerializer(StrictInputSerializer):
    email = StrictEmailField(max_length=255)
    password = PasswordField()
    device_name = _device_name()


class RefreshInputSerializer(StrictInputSerializer):
    refresh_token = StrictCharField(max_length=4096)


class OAuthInputSerializer(StrictInputSerializer):
    id_token = StrictCharField(max_length=8192, help_text="The provider's OpenID Connect ID token.")
    nonce = StrictCharField(
        required=False,
        max_length=256,
        help_text="The raw nonce the client put in the authorisation request (Apple: before hashing).",
    )
    device_name = _device_name()


_CODE_RE = re.compile(r"^\d{6,8}$")


class TwoFactorCodeMixin(serializers.Serializer):
    code = StrictCharField(required=False, max_length=8, help_text="Current code from the authenticator app.")
    recovery_code = StrictCharField(required=False, max_length=32, help_text="A one-time recovery code.")

    def validate_code(self, value: str) -> str:
        if not _CODE_RE.match(value):
            raise serializers.ValidationError("Enter the 6-digit code from your authenticator app.")
        return value

    def _exactly_one_code(self, attrs: dict[str, Any]) -> None:
        if bool(attrs.get("code")) == bool(attrs.get("recovery_code")):
            raise serializers.ValidationError({"code": ["Send exactly one of code or recovery_code."]})


class TwoFactorVerifyInputSerializer(TwoFactorCodeMixin, StrictInputSerializer):
    challenge_token = StrictCharField(
        required=False,
        max_length=4096,
        help_text="From /v1/auth/login when it answered two_factor_required. Omit to confirm enrolment.",
    )
    device_name = _device_name()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        self._exactly_one_code(attrs)
        if attrs.get("recovery_code") and not attrs.get("challenge_token"):
            raise serializers.ValidationError(
                {"recovery_code": ["Recovery codes complete a sign-in; confirm enrolment with a code."]}
            )
        return attrs


class TwoFactorDisableInputSerializer(TwoFactorCodeMixin, StrictInputSerializer):
    password = PasswordField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        self._exactly_one_code(attrs)
        return attrs


class PasswordChangeInputSerializer(StrictInputSerializer):
    current_password = PasswordField()
    new_password = PasswordField()


class PasswordResetInputSerializer(StrictInputSerializer):
    email = StrictEmailField(max_length=255)


class PasswordResetConfirmInputSerializer(StrictInputSerializer):
    token = StrictCharField(max_length=200)
    new_password = PasswordField()


class EmptyInputSerializer(StrictInputSerializer):
    pass


# --- auth outputs -----------------------------------------------------------------------------


class AcceptedSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ProviderLinkSerializer(serializers.Serializer):
    provider = serializers.CharField()
    email = serializers.CharField()
    created_at = serializers.DateTimeField()


class UserSerializer(serializers.ModelSerializer):
    two_factor_enabled = serializers.BooleanField(source="totp_enabled", read_only=True)
    has_password = serializers.SerializerMethodField()
    linked_providers = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "email_verified",
            "display_name",
            "display_currency",
            "timezone",
            "notification_preferences",
            "kyc_status",
            "two_factor_enabled",
            "has_password",
            "linked_providers",
            "created_at",
        ]
        read_only_fields = fields

    def get_has_password(self, obj: User) -> bool:
        return obj.has_usable_password()

    def get_linked_providers(self, obj: User) -> list[dict[str, Any]]:
        return list(ProviderLinkSerializer(obj.oauth_identities.order_by("created_at"), many=True).data)


class AuthResultSerializer(serializers.Serializer):
    """`status` is `authenticated` (tokens present) or `two_factor_required` (challenge present)."""

    status = serializers.CharField(help_text="authenticated | two_factor_required")
    token_type = serializers.CharField(required=False, help_text="Bearer")
    access_token = serializers.CharField(required=False)
    access_expires_at = serializers.DateTimeField(required=False)
    expires_in = serializers.IntegerField(required=False, help_text="Seconds until the access token expires.")
    refresh_token = serializers.CharField(required=False)
    refresh_expires_at = serializers.DateTimeField(required=False)
    session_id = serializers.UUIDField(required=False)
    challenge_token = serializers.CharField(
        required=False, help_text="Send to /v1/auth/2fa/verify with a code."
    )
    challenge_expires_at = serializers.DateTimeField(required=False)
    user = UserSerializer(required=False)
    created = serializers.BooleanField(required=False, help_text="OAuth: the account was created just now.")


class TwoFactorEnrolmentSerializer(serializers.Serializer):
    secret = serializers.CharField(help_text="Base32 seed, for manual entry.")
    otpauth_uri = serializers.CharField()
    qr_code_png = serializers.CharField(help_text="data:image/png;base64,… of the otpauth URI.")
    qr_code_svg = serializers.CharField(help_text="data:image/svg+xml;base64,… of the otpauth URI.")
    digits = serializers.IntegerField()
    period = serializers.IntegerField()


class TwoFactorEnabledSerializer(serializers.Serializer):
    two_factor_enabled = serializers.BooleanField()
    recovery_codes = serializers.ListField(child=serializers.CharField(), help_text="Shown once.")


class TwoFactorVerifyResultSerializer(AuthResultSerializer):
    two_factor_enabled = serializers.BooleanField(required=False)
    recovery_codes = serializers.ListField(child=serializers.CharField(), required=False)


class TwoFactorDisabledSerializer(serializers.Serializer):
    two_factor_enabled = serializers.BooleanField()


class SessionSerializer(serializers.ModelSerializer):
    device = serializers.JSONField(source="device_info")
    current = serializers.SerializerMethodField()

    class Meta:
        model = Session
        fields = [
            "id", "device", "ip_address", "auth_method", "two_factor_verified",
            "created_at", "last_used_at", "expires_at", "current",
        ]  # fmt: skip
        read_only_fields = fields

    def get_current(self, obj: Session) -> bool:
        current = self.context.get("current_session_id")
        return current is not None and obj.pk == current


class RevokedSerializer(serializers.Serializer):
    revoked = serializers.IntegerField(help_text="How many sessions were ended.")


class LogoutSerializer(serializers.Serializer):
    logged_out = serializers.BooleanField()


class PasswordChangedSerializer(serializers.Serializer):
    password_changed = serializers.BooleanField()
    sessions_revoked = serializers.IntegerField()


class EmailVerifiedSerializer(serializers.Serializer):
    email_verified = serializers.BooleanField()


# --- profile -----------------------------------------------------------------------------------


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


_READ_ONLY_PROFILE_FIELDS = {
    "id", "email", "email_verified", "kyc_status", "two_factor_enabled", "has_password",
    "linked_providers", "created_at",
}  # fmt: skip


class UserUpdateSerializer(StrictInputSerializer):
    display_name = StrictCharField(required=False, allow_blank=True, max_length=100)
    display_currency = serializers.ChoiceField(required=False, choices=DisplayCurrency.choices)
    timezone = StrictCharField(required=False, max_length=64, help_text="IANA name, e.g. Europe/London.")
    notification_preferences = serializers.DictField(
        required=False,
        child=serializers.DictField(child=serializers.BooleanField()),
        help_text=(
            f"Per category ({', '.join(NOTIFICATION_CATEGORIES)}) a map of channel "
            f"({', '.join(NOTIFICATION_CHANNELS)}) to true/false; only what is sent changes."
        ),
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            read_only = sorted(set(data) & _READ_ONLY_PROFILE_FIELDS)
            if read_only:
                message = {
                    name: [
                        "This field is read-only."
                        + (" KYC status is set by K2 staff." if name == "kyc_status" else "")
                    ]
                    for name in read_only
                }
                raise serializers.ValidationError(message)
        return super().to_internal_value(data)

    def validate_timezone(self, value: str) -> str:
        if value not in _timezones():
            raise serializers.ValidationError("Not an IANA time zone name (e.g. America/New_York).")
        return value

    def validate_notification_preferences(self, value: dict[str, Any]) -> dict[str, Any]:
        raw = (
            self.initial_data.get("notification_preferences") if isinstance(self.initial_data, dict) else None
        )
        errors: dict[str, list[str]] = {}
        for category, channels in (raw or {}).items():
            if category not in NOTIFICATION_CATEGORIES:
                errors[category] = [f"Unknown category. Allowed: {', '.join(NOTIFICATION_CATEGORIES)}."]
                continue
            for channel, enabled in channels.items():
                if channel not in NOTIFICATION_CHANNELS:
                    errors[f"{category}.{channel}"] = [
                        f"Unknown channel. Allowed: {', '.join(NOTIFICATION_CHANNELS)}."
                    ]
                elif not isinstance(enabled, bool):
                    errors[f"{category}.{channel}"] = ["Must be true or false."]
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not attrs:
            raise serializers.ValidationError("Send at least one field to change.")
        return attrs
