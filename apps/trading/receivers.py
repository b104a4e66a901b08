"""Trading's part in other apps' changes (connected in `TradingConfig.ready`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.dispatch import receiver

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import Credentials, ExchangeAdapter, OrderState
from apps.exchanges.choices import LinkStatus
from apps.exchanges.exceptions import ExchangeAccountChanged, ExchangeUnavailable
from apps.exchanges.models import ExchangeLink
from apps.exchanges.services import link_credentials_proved
from apps.trading.choices import OrderStatus
from apps.trading.models import Order
from apps.trading.services import venue_ref
from apps.trading.venue import venue_call


@receiver(link_credentials_proved)
def open_orders_stay_reachable(
    sender: Any, *, user: Any, venue: str, credentials: Credentials, **_: Any
) -> None:
    """New credentials for an active link, where the user has orders resting (open or partly
    filled), must see them: the same account under a new key, not another account. With
    another account's, K2 could neither cancel those orders nor follow their fills (the venue
    answers "not found" for ever), so the change is refused until they are cancelled. Asked
    about the most recent one. (After an unlink, K2
    holds no credentials for those orders anyway: any account may be linked.)"""
    if not ExchangeLink.objects.filter(user=user, exchange=venue, status=LinkStatus.ACTIVE).exists():
        return
    resting = Order.objects.filter(
        user=user, exchange=venue, status__in=(OrderStatus.OPEN, OrderStatus.PARTIAL)
    ).order_by("-created_at")
    order = resting.first()
    if order is None:
        return

    async def get(adapter: ExchangeAdapter) -> OrderState:
        return await adapter.get_order(**venue_ref(order))

    try:
        venue_call(
            venue, get, credentials=credentials, timeout=settings.K2_TRADING_VENUE_TIMEOUT_SECONDS,
            actor=user, target=order,
        )  # fmt: skip
    except ex.OrderNotFound as error:
        raise ExchangeAccountChanged(details={"exchange": venue, "open_orders": resting.count()}) from error
    except ex.ExchangeError as error:
        raise ExchangeUnavailable(details={"exchange": venue}) from error
