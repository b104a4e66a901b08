"""Portfolio writes. The portfolio stores nothing; its one write is dropping a user's cached
venue snapshots when their holdings changed (a fill, an order update)."""

from __future__ import annotations

from typing import Any

from apps.exchanges.venues import VENUES
from apps.portfolio import cache
from k2.observability.logging import get_logger

log = get_logger(__name__)


def portfolio_invalidate(*, user_id: Any) -> None:
    """Forget the user's cached balances and positions at every venue, so the next read asks the
    venues again. Reads already in flight cannot write their older answer back (generation
    check). Safe to call any number of times, from any process; never raises."""
    try:
        cache.snapshots_invalidate(user_id, list(VENUES))
    except Exception as error:  # Redis down: the entries expire on their own within seconds
        log.warning("portfolio_invalidate_failed", user_id=str(user_id), error=repr(error))


def portfolio_forget_venue(*, user_id: Any, venue: str) -> None:
    """A link was made, changed or revoked: drop every cached snapshot of that venue for the
    user, the last good one included (served, marked stale, while a venue is down, it would
    show the previous account's holdings, or holdings K2 no longer has credentials for)."""
    try:
        cache.snapshots_invalidate(user_id, [venue], forget=True)
    except Exception as error:
        log.warning("portfolio_forget_failed", user_id=str(user_id), venue=venue, error=repr(error))
