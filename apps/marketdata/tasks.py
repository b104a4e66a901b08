from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True, time_limit=300, soft_time_limit=240)
def instruments_sync_task() -> dict[str, str]:
    """Periodic instrument sync from every venue (idempotent upserts; safe to redeliver)."""
    from apps.marketdata.services import instruments_sync

    return {venue: str(result) for venue, result in instruments_sync().items()}


@shared_task(acks_late=True, ignore_result=True, time_limit=600)
def market_trades_prune_task() -> int:
    """Drop trade dedupe rows past the retention window (bounded batches)."""
    from apps.marketdata.services import market_trades_prune

    return market_trades_prune()
