from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(acks_late=True, ignore_result=True)
def exchange_links_check_task() -> int:
    """Fan out one check per active link (oldest-checked first, bounded batch)."""
    from apps.exchanges.selectors import exchange_link_ids_to_check

    ids = exchange_link_ids_to_check()
    for link_id in ids:
        exchange_link_check_task.delay(str(link_id))
    return len(ids)


@shared_task(acks_late=True, ignore_result=True, time_limit=60, soft_time_limit=50)
def exchange_link_check_task(link_id: Any) -> str:
    from apps.exchanges.services import exchange_link_check

    return exchange_link_check(link_id=link_id)
