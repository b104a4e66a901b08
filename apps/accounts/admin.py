"""Admin: users (KYC status, 2FA state, sessions inline, revoke-all action), sessions, OAuth
identities, signing keys. Secrets and hashes (password, refresh token hashes, TOTP seed, JWT
private keys, recovery codes) are never shown; writes go through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.admin_login import AdminLoginForm
from apps.accounts.choices import SessionRevokeReason
from apps.accounts.models import OAuthIdentity, Session, SigningKey, User
from apps.accounts.services import session_revoke, session_revoke_all, user_kyc_status_set
from k2.api.exceptions import ApplicationError
from k2.audit.admin import form_changes
from k2.audit.services import record

# /admin/login/: the API login's failure limits and TOTP step, audited (apps/accounts/admin_login.py).
admin.site.login_form = AdminLoginForm
admin.site.login_template = "accounts/admin_login.html"

_SESSION_FIELDS = (
    "id", "user", "auth_method", "two_factor_verified", "device_info", "ip_address",
    "created_at", "last_used_at", "refreshed_at", "refresh_count", "expires_at", "revoked_at",
    "revoked_reason",
)  # fmt: skip


# Only a superuser grants or withdraws staff, superuser and group membership, and never on their
# own record: `accounts.change_user` alone must not be a path to more privilege.
_PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups")


class ActiveSessionInline(admin.TabularInline):
    model = Session
    extra = 0
    can_delete = False
    show_change_link = True
    verbose_name_plural = "Active sessions"
    fields = ("id", "auth_method", "device_info", "ip_address", "created_at", "last_used_at", "expires_at")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        return super().get_queryset(request).filter(revoked_at__isnull=True).order_by("-last_used_at")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OAuthIdentityInline(admin.TabularInline):
    model = OAuthIdentity
    extra = 0
    can_delete = False
    fields = ("provider", "provider_user_id", "email", "created_at", "last_login_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "kyc_status",
        "email_verified",
        "totp_enabled",
        "is_active",
        "is_staff",
        "created_at",
    )
    list_filter = ("kyc_status", "totp_enabled", "email_verified", "is_staff", "is_active")
    search_fields = ("email", "display_name")
    ordering = ("-created_at",)
    # The password hash is left out entirely; staff reset passwords via the reset flow.
    fields = (
        "id", "email", "display_name", "kyc_status", "email_verified", "totp_enabled",
        "is_active", "is_staff", "is_superuser", "groups", "display_currency", "timezone",
        "notification_preferences", "last_login", "password_changed_at", "created_at", "updated_at",
    )  # fmt: skip
    readonly_fields = (
        "id", "email", "email_verified", "totp_enabled", "last_login", "password_changed_at",
        "created_at", "updated_at", "notification_preferences",
    )  # fmt: skip
    filter_horizontal = ("groups",)
    inlines = (ActiveSessionInline, OAuthIdentityInline)
    actions = ("revoke_all_sessions",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created through registration

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        readonly = tuple(super().get_readonly_fields(request, obj))
        own_record = obj is not None and obj.pk == request.user.pk
        if own_record or not request.user.is_superuser:
            readonly += _PRIVILEGE_FIELDS
        if obj is not None and (own_record or (obj.is_superuser and not request.user.is_superuser)):
            readonly += ("is_active",)  # nor may staff lock out a superuser, or themselves
        return readonly

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        # Each changed field's value before and after, in the admin's transaction (the user
        # form holds no secret: the password hash is not one of its fields).
        changed, values = form_changes(form, change=change)
        if changed:
            record(request.user, "user.admin_changed", obj, {"changed": changed, "values": values})
        kyc_changed = change and "kyc_status" in form.changed_data
        new_status = obj.kyc_status
        if kyc_changed:
            obj.kyc_status = form.initial.get("kyc_status", obj.kyc_status)
        super().save_model(request, obj, form, change)
        if kyc_changed:
            user_kyc_status_set(user=obj, status=new_status, actor=request.user)
            obj.kyc_status = new_status

    @admin.action(description="Revoke all sessions (sign out everywhere)")
    def revoke_all_sessions(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        total = 0
        for user in queryset:
            try:
                total += session_revoke_all(user=user, actor=request.user, reason=SessionRevokeReason.STAFF)
            except ApplicationError as exc:
                self.message_user(request, f"{user.email}: {exc.message}", messages.ERROR)
        self.message_user(request, f"Revoked {total} session(s).", messages.SUCCESS)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "auth_method",
        "ip_address",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )
    list_filter = ("auth_method", "revoked_reason", "two_factor_verified")
    search_fields = ("user__email", "id", "ip_address")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    ordering = ("-created_at",)
    fields = _SESSION_FIELDS  # token_hash and device_fingerprint are never shown
    readonly_fields = _SESSION_FIELDS
    actions = ("revoke_sessions",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke selected sessions")
    def revoke_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> None:
        count = sum(
            session_revoke(session=session, actor=request.user, reason=SessionRevokeReason.STAFF)
            for session in queryset.filter(revoked_at__isnull=True)
        )
        self.message_user(request, f"Revoked {count} session(s).", messages.SUCCESS)


@admin.register(OAuthIdentity)
class OAuthIdentityAdmin(admin.ModelAdmin):
    list_display = ("provider", "email", "user", "created_at", "last_login_at")
    list_filter = ("provider",)
    search_fields = ("email", "user__email", "provider_user_id")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("user", "provider", "provider_user_id", "email", "created_at", "last_login_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    """Read-only: rotate with `manage.py rotate_jwt_key`. The private key is never shown."""

    list_display = ("kid", "algorithm", "created_at", "retired_at", "verify_until")
    search_fields = ("kid",)
    fields = ("kid", "algorithm", "public_key", "created_at", "retired_at", "verify_until")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
