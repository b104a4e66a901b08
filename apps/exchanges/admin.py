from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.exchanges.models import ExchangeLink
from k2.api.exceptions import ApplicationError
from k2.vault.admin import SecretAdminMixin


@admin.register(ExchangeLink)
class ExchangeLinkAdmin(SecretAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "exchange",
        "status",
        "key_hint",
        "linked_at",
        "last_checked_at",
        "last_error_code",
    )
    list_filter = ("exchange", "status")
    search_fields = ("user__email", "=id", "exchange_user_id")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = (
        "user", "exchange", "status", "key_hint", "exchange_user_id", "linked_at", "revoked_at",
        "last_checked_at", "last_error_code", "token_expires_at",
    )  # fmt: skip
    actions = ("check_now", "revoke")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Check the selected links with the venue now")
    def check_now(self, request: HttpRequest, queryset: QuerySet[ExchangeLink]) -> None:
        from apps.exchanges.services import exchange_link_check

        for link in queryset:
            outcome = exchange_link_check(link_id=link.pk)
            self.message_user(request, f"{link}: {outcome}")

    @admin.action(description="Revoke the selected links (erases their credentials)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ExchangeLink]) -> None:
        from apps.exchanges.services import exchange_link_revoke

        for link in queryset:
            try:
                exchange_link_revoke(user=link.user, link_id=link.pk, actor=request.user)
            except ApplicationError as error:
                self.message_user(request, f"{link}: {error.message}", messages.ERROR)
        self.message_user(request, f"{queryset.count()} link(s) revoked")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
