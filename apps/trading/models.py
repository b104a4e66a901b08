"""Trading tables (architecture `orders` / `order_executions`) and the risk configuration.

Amounts are DECIMAL(20,8). `client_order_id` is the user's idempotency key (unique per user);
`venue_client_order_id` is the globally unique id K2 generates and the venue receives, so K2 can
always find the order at the venue even when the submission's answer was lost.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from apps.trading.choices import (
    LIVE_STATUSES,
    InstrumentType,
    KillSwitchMode,
    KillSwitchScope,
    Liquidity,
    OrderStatus,
    OrderType,
    Outcome,
    Side,
    TimeInForce,
)
from k2.core.models import BaseModel


def _amount(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=8, **kwargs)  # type: ignore[arg-type]


def new_venue_client_order_id() -> str:
    """32 hex characters: unique everywhere, within every venue's length limit (Crypto.com: 36)."""
    return uuid.uuid4().hex


class Order(BaseModel):
    """One order of one user at one venue. Its `status` only changes through
    `apps.trading.services.order_transition` (checked, locked, audited)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    client_order_id = models.CharField(max_length=50, help_text="the user's idempotency key")
    venue_client_order_id = models.CharField(
        max_length=36, unique=True, default=new_venue_client_order_id, editable=False
    )
    request_fingerprint = models.CharField(max_length=64, editable=False)
    exchange = models.CharField(max_length=50)
    exchange_order_id = models.CharField(max_length=100, blank=True, default="")
    instrument = models.CharField(max_length=100)
    instrument_type = models.CharField(max_length=10, choices=InstrumentType.choices)
    side = models.CharField(max_length=4, choices=Side.choices)
    outcome = models.CharField(max_length=3, choices=Outcome.choices, blank=True, default="")
    order_type = models.CharField(max_length=10, choices=OrderType.choices)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC)
    post_only = models.BooleanField(default=False)
    quantity = _amount()
    price = _amount(null=True, blank=True)
    notional = _amount(null=True, blank=True, help_text="estimated at the risk check, quote currency")
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.PENDING)
    filled_quantity = _amount(default=Decimal(0))
    avg_fill_price = _amount(null=True, blank=True)
    fees = _amount(default=Decimal(0))
    fee_currency = models.CharField(max_length=20, blank=True, default="")
    submitted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "orders"
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=["user", "client_order_id"], name="orders_user_client_order_id"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orders_quantity_positive"),
            models.CheckConstraint(
                condition=Q(price__isnull=True) | Q(price__gt=0), name="orders_price_positive"
            ),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0) & Q(filled_quantity__lte=F("quantity")),
                name="orders_filled_within_quantity",
            ),
            models.CheckConstraint(condition=Q(status__in=OrderStatus.values), name="orders_status_valid"),
        ]
        indexes = [
            models.Index(fields=["user", "created_at"]),
            models.Index(fields=["status", "updated_at"]),
            models.Index(fields=["exchange", "exchange_order_id"]),
            # The risk checks' resting orders (`selectors.recent_activity`), of any age.
            models.Index(
                fields=["user", "instrument"],
                condition=Q(status__in=sorted(LIVE_STATUSES)),
                name="orders_user_instrument_live",
            ),
            # The risk checks' daily notional (`selectors.recent_activity`): today's orders that
            # count towards it, without the ones that never will (refused, or cancelled unfilled:
            # most of an active trader's orders).
            models.Index(
                fields=["user", "instrument_type", "created_at"],
                condition=Q(submitted_at__isnull=False)
                & ~Q(status=OrderStatus.REJECTED)
                & ~Q(status=OrderStatus.CANCELLED, filled_quantity=0),
                name="orders_user_daily_notional",
            ),
            # The risk checks' usual order size (`selectors.recent_activity`): the user's latest
            # orders on the instrument, read newest first up to the history's length, however
            # many orders the user has on other instruments.
            models.Index(
                fields=["user", "instrument", "created_at"],
                condition=Q(submitted_at__isnull=False) & ~Q(status=OrderStatus.REJECTED),
                name="orders_user_instrument_sizes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.instrument} ({self.status})"

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity


class OrderExecution(BaseModel):
    """One fill of one order, exactly once: unique on the venue's trade id."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="executions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    exchange = models.CharField(max_length=50)
    exchange_exec_id = models.CharField(max_length=100)
    instrument = models.CharField(max_length=100)
    side = models.CharField(max_length=4, choices=Side.choices)
    outcome = models.CharField(max_length=3, choices=Outcome.choices, blank=True, default="")
    quantity = _amount()
    price = _amount()
    fee = _amount(default=Decimal(0))
    fee_currency = models.CharField(max_length=20, blank=True, default="")
    liquidity = models.CharField(max_length=5, choices=Liquidity.choices, blank=True, default="")
    executed_at = models.DateTimeField()

    class Meta:
        db_table = "order_executions"
        ordering = ("-executed_at", "-id")
        constraints = [
            models.UniqueConstraint(
                fields=["exchange", "exchange_exec_id"], name="order_executions_venue_trade"
            ),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_executions_quantity_positive"),
        ]
        indexes = [models.Index(fields=["user", "executed_at"])]

    def __str__(self) -> str:
        return f"{self.quantity} @ {self.price} ({self.exchange_exec_id})"


class RiskLimit(BaseModel):
    """Risk limits for one user (or everyone: no user) and one instrument type (or all: blank).
    A blank field falls through: user+type, user, type, everyone, then the settings default."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    instrument_type = models.CharField(max_length=10, choices=InstrumentType.choices, blank=True, default="")
    max_order_notional = _amount(null=True, blank=True)
    max_daily_notional = _amount(null=True, blank=True)
    max_position_notional = _amount(null=True, blank=True)
    max_orders_per_second = models.PositiveIntegerField(null=True, blank=True)
    max_orders_per_minute = models.PositiveIntegerField(null=True, blank=True)
    fat_finger_percent = _amount(null=True, blank=True, help_text="crypto: max % from the latest price")
    fat_finger_cents = _amount(null=True, blank=True, help_text="events: max cents from the latest price")
    fat_finger_quantity_multiple = _amount(
        null=True, blank=True, help_text="max multiple of the user's median order size"
    )
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "trading_risk_limits"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "instrument_type"],
                condition=Q(user__isnull=False),
                name="risk_limits_user_type",
            ),
            models.UniqueConstraint(
                fields=["instrument_type"], condition=Q(user__isnull=True), name="risk_limits_default_type"
            ),
        ]

    def __str__(self) -> str:
        who = self.user_id or "everyone"
        return f"limits for {who} / {self.instrument_type or 'all types'}"


class KillSwitch(BaseModel):
    """An active switch stops new orders in its scope at once: `halt` refuses them all,
    `reduce_only` lets through only sells that shrink a held position."""

    scope = models.CharField(max_length=10, choices=KillSwitchScope.choices)
    venue = models.CharField(max_length=50, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    mode = models.CharField(max_length=12, choices=KillSwitchMode.choices, default=KillSwitchMode.HALT)
    active = models.BooleanField(default=True)
    reason = models.CharField(max_length=300)

    class Meta:
        db_table = "trading_kill_switches"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(scope=KillSwitchScope.GLOBAL, venue="", user__isnull=True)
                    | (Q(scope=KillSwitchScope.VENUE, user__isnull=True) & ~Q(venue=""))
                    | Q(scope=KillSwitchScope.USER, venue="", user__isnull=False)
                ),
                name="kill_switches_scope_target",
            ),
        ]
        indexes = [models.Index(fields=["active", "scope"])]

    def __str__(self) -> str:
        target = {"venue": self.venue, "user": str(self.user_id)}.get(self.scope, "all")
        return f"{self.mode} {self.scope}:{target} ({'on' if self.active else 'off'})"
