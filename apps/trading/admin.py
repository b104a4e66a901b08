"""The trading ops console: orders and executions (read-only, searchable), cancel and reconcile
actions calling the same services as the API, risk limits and kill switches (take effect on the
next order: nothing caches them)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.trading.models import KillSwitch, Order, OrderExecution, RiskLimit
from k2.api.exceptions import ApplicationError
from k2.audit.admin import ReadOnlyAdmin, form_changes
from k2.audit.services import record


class ExecutionInline(admin.TabularInline):
    model = OrderExecution
    extra = 0
    can_delete = False
    fields = ("exchange_exec_id", "quantity", "price", "fee", "fee_currency", "liquidity", "executed_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "user", "exchange", "instrument", "side", "outcome", "order_type", "quantity", "price",
        "status", "filled_quantity", "error_code", "created_at",
    )  # fmt: skip
    list_filter = ("status", "exchange", "instrument_type", "side", "order_type")
    search_fields = (
        "=id", "user__email", "client_order_id", "venue_client_order_id", "exchange_order_id", "instrument",
    )  # fmt: skip
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    date_hierarchy = "created_at"
    inlines = (ExecutionInline,)
    actions = ("cancel_orders", "reconcile_orders")

    @admin.action(description="Cancel the selected orders (at the venue)")
    def cancel_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        from apps.trading.services import order_cancel

        for order in queryset:
            try:
                result = order_cancel(order_id=order.pk, actor=request.user)
                self.message_user(request, f"{order.pk}: {result.status}")
            except ApplicationError as error:
                self.message_user(request, f"{order.pk}: {error.code} {error.message}", messages.ERROR)

    @admin.action(description="Reconcile the selected orders with the venue now")
    def reconcile_orders(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        from apps.trading.services import order_reconcile

        for order in queryset:
            result = order_reconcile(order_id=order.pk, actor=request.user)
            self.message_user(request, f"{order.pk}: {result.status if result else 'gone'}")


@admin.register(OrderExecution)
class OrderExecutionAdmin(ReadOnlyAdmin):
    list_display = (
        "exchange_exec_id", "order", "user", "exchange", "instrument", "side", "quantity", "price", "fee",
        "fee_currency", "executed_at",
    )  # fmt: skip
    list_filter = ("exchange", "side", "liquidity")
    search_fields = (
        "=id", "exchange_exec_id", "user__email", "instrument", "=order__id", "order__client_order_id",
    )  # fmt: skip
    list_select_related = ("user", "order")
    raw_id_fields = ("order", "user")
    date_hierarchy = "executed_at"


class _AuditedAdmin(admin.ModelAdmin):
    """Every save and delete audited in the admin's transaction, with each changed field's value
    before and after (limits and switches hold no secrets)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed, values = form_changes(form, change=change)
        record(
            request.user,
            f"trading.{obj._meta.model_name}_saved",
            obj,
            {"changed": changed, "created": not change, "values": values},
        )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        record(request.user, f"trading.{obj._meta.model_name}_deleted", obj, {"repr": str(obj)})
        super().delete_model(request, obj)


@admin.register(RiskLimit)
class RiskLimitAdmin(_AuditedAdmin):
    list_display = (
        "__str__", "user", "instrument_type", "max_order_notional", "max_daily_notional",
        "max_position_notional", "max_orders_per_second", "max_orders_per_minute", "fat_finger_percent",
        "fat_finger_cents", "fat_finger_quantity_multiple",
    )  # fmt: skip
    list_filter = ("instrument_type",)
    search_fields = ("user__email", "note")
    list_select_related = ("user",)
    raw_id_fields = ("user",)


@admin.register(KillSwitch)
class KillSwitchAdmin(_AuditedAdmin):
    list_display = ("__str__", "scope", "venue", "user", "mode", "active", "reason", "updated_at")
    list_filter = ("active", "scope", "mode", "venue")
    search_fields = ("user__email", "venue", "reason")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    actions = ("deactivate",)

    @admin.action(description="Deactivate the selected switches")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        for switch in queryset.filter(active=True):
            switch.active = False
            switch.save(update_fields=["active", "updated_at"])
            details = {
                "changed": ["active"],
                "created": False,
                "values": {"active": {"from": "True", "to": "False"}},
            }
            record(request.user, "trading.killswitch_saved", switch, details)
        self.message_user(request, "Deactivated.")
