"""Cache invalidation on trading changes (STYLE 2: signals only for decoupled side effects).

Every saved `OrderExecution` (a fill) and every saved `Order` that has reached its venue (a
status or fill update) drops the owner's cached portfolio once the transaction commits, so no
reader can cache the state from before the change; a link saved with new credentials or a new
status drops that venue's snapshots, the last good one included. Trading does not need to know the portfolio
exists; code that changes holdings outside these models calls
`apps.portfolio.services.portfolio_invalidate` itself.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from apps.exchanges.models import ExchangeLink
from apps.portfolio.services import portfolio_forget_venue, portfolio_invalidate
from apps.trading.choices import OrderStatus
from apps.trading.models import Order, OrderExecution

UNSENT = frozenset({OrderStatus.PENDING, OrderStatus.SUBMITTED})


def _invalidate_on_commit(user_id: Any) -> None:
    transaction.on_commit(lambda: portfolio_invalidate(user_id=user_id), robust=True)


@receiver(post_save, sender=OrderExecution, dispatch_uid="portfolio_invalidate_on_execution")
def execution_saved(sender: type[OrderExecution], instance: OrderExecution, **kwargs: Any) -> None:
    _invalidate_on_commit(instance.user_id)


@receiver(post_save, sender=Order, dispatch_uid="portfolio_invalidate_on_order")
def order_saved(sender: type[Order], instance: Order, **kwargs: Any) -> None:
    if instance.status in UNSENT or instance.metadata.get("rejected_by") == "risk":
        return  # nothing reached a venue yet: no balance or position can have changed
    _invalidate_on_commit(instance.user_id)


# A link's credentials or status changed (linked, linked again, unlinked, refused by the venue);
# a health check's bookkeeping (last_checked_at, last_error_code) is no change of account.
LINK_ACCOUNT_FIELDS = frozenset({"status", "access_token", "access_secret"})


@receiver(post_save, sender=ExchangeLink, dispatch_uid="portfolio_forget_on_link_change")
def link_saved(sender: type[ExchangeLink], instance: ExchangeLink, **kwargs: Any) -> None:
    fields = kwargs.get("update_fields")
    if fields is not None and not LINK_ACCOUNT_FIELDS & set(fields):
        return
    user_id, venue = instance.user_id, instance.exchange
    transaction.on_commit(lambda: portfolio_forget_venue(user_id=user_id, venue=venue), robust=True)
