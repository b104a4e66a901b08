"""The user-stream follower behind `manage.py run_user_streams` (Procfile `streams`).

One asyncio task per active exchange link holds that account's user stream (the adapter owns
heartbeats, reconnects, re-auth and re-subscribe); the set of links is re-read every
`K2_TRADING_STREAM_REFRESH_SECONDS`, so new links start and revoked ones stop without a restart,
and at once when the exchanges app announces a change (`LINKS_CHANGED_CHANNEL` on Redis): a user
who links an account and trades straight away has the stream follow the first order. A missed
announcement (Redis down, the follower reconnecting) only waits for the next refresh.

- an order update -> `order_apply_venue_state` (monotonic: a late message never regresses);
- a fill -> `execution_record` (exactly once, unique venue trade id);
- every (re)connect -> that link's live orders are reconciled, covering whatever the stream
  missed while it was down (and the periodic reconciliation task covers a dead follower); so
  does a "resync", a message the stream skipped because it could not be translated;
- a balance update -> it becomes the risk engine's cached balance for that link.

Everything it does is idempotent, so two followers (a deploy overlap, a second replica) only
repeat work; they never double a fill or regress an order.

Before each piece of work, Django's rule between requests (`close_old_connections`): with the
Procfile's `DATABASE_CONN_MAX_AGE` the connection is kept from one event to the next and
replaced once it has failed (checked on its socket by `k2.db`, no round trip when healthy). With
0, every event opened a connection and the server forked a backend for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from apps.exchanges.adapters import errors as ex
from apps.exchanges.adapters.base import BalanceUpdate, Fill, OrderState, StreamStatus
from apps.exchanges.calls import open_adapter
from apps.exchanges.choices import LinkStatus
from apps.exchanges.models import ExchangeLink
from apps.exchanges.services import LINKS_CHANGED_CHANNEL, link_credentials
from k2.aio import cancel_and_wait
from k2.core.cache import redis_url
from k2.observability.logging import get_logger

log = get_logger(__name__)

CLIENT_NAME = "k2-user-streams"  # the follower's Redis connection, as CLIENT LIST shows it


@dataclass(frozen=True)
class LinkInfo:
    link_id: str
    user_id: str
    venue: str
    version: str  # changes when the link is re-keyed: the stream restarts with new credentials


def _active_links(venues: list[str] | None) -> list[LinkInfo]:
    close_old_connections()
    qs = ExchangeLink.objects.filter(status=LinkStatus.ACTIVE)
    if venues:
        qs = qs.filter(exchange__in=venues)
    return [
        LinkInfo(str(link.pk), str(link.user_id), link.exchange, link.linked_at.isoformat())
        for link in qs.only("pk", "user_id", "exchange", "linked_at")
    ]


def _credentials(link_id: str) -> Any:
    close_old_connections()
    link = ExchangeLink.objects.filter(pk=link_id, status=LinkStatus.ACTIVE).first()
    return link_credentials(link) if link is not None else None


def _on_order(venue: str, state: OrderState) -> None:
    from apps.trading.selectors import order_find_for_venue
    from apps.trading.services import order_apply_venue_state

    close_old_connections()
    order_id = order_find_for_venue(
        venue=venue, venue_client_order_id=state.client_order_id, exchange_order_id=state.venue_order_id
    )
    if order_id is not None:
        order_apply_venue_state(order_id=order_id, state=state, source="stream")


def _on_fill(venue: str, fill: Fill) -> None:
    from apps.trading.services import execution_record

    close_old_connections()
    execution_record(venue=venue, fill=fill, source="stream")


def _on_connected(link: LinkInfo) -> None:
    from apps.trading.services import orders_reconcile_for_link

    close_old_connections()
    orders_reconcile_for_link(user_id=link.user_id, venue=link.venue)


def _on_balance(link: LinkInfo, event: BalanceUpdate) -> None:
    from apps.trading.risk import account_snapshot_store

    account_snapshot_store(link_id=link.link_id, balances=event.balances, read_at=event.time.timestamp())


class UserStreamSupervisor:
    def __init__(self, *, venues: list[str] | None = None, refresh_seconds: float | None = None) -> None:
        self.venues = venues
        self.refresh_seconds = refresh_seconds or settings.K2_TRADING_STREAM_REFRESH_SECONDS
        self.tasks: dict[str, tuple[LinkInfo, asyncio.Task[None]]] = {}
        self.handled = 0
        self.failed = 0  # link refreshes and events whose work raised (logged; retried or reconciled)
        self.connects = 0
        self.resyncs = 0  # a user stream skipped a message it could not translate
        self.refreshes = 0  # reads of the active links
        self.subscriptions = 0  # to the links' change announcements (the first, and each renewal)
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()  # refresh now (a link changed, or stopping)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        log.info("user_streams_started", venues=self.venues)
        listener = asyncio.create_task(self._listen(), name="user-streams-links-changed")
        try:
            while not self._stop.is_set():
                self._wake.clear()  # a change announced from here on is read by the next round
                try:
                    links = await sync_to_async(_active_links)(self.venues)
                    self._sync(links)
                    self.refreshes += 1
                except Exception as exc:  # the database blinking must not end the process
                    self.failed += 1
                    log.warning("user_streams_refresh_failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.refresh_seconds)
        finally:
            await cancel_and_wait(listener, *(task for _, task in self.tasks.values()))
            self.tasks.clear()
            log.info("user_streams_stopped")

    async def _listen(self) -> None:
        """Wake the refresh loop whenever a link change is announced. Each (re)subscription wakes
        it too: a change announced while no one was listening is read then."""
        failures = 0
        while True:
            client = aioredis.Redis.from_url(redis_url(), socket_connect_timeout=2, client_name=CLIENT_NAME)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LINKS_CHANGED_CHANNEL)
                self.subscriptions += 1
                self._wake.set()
                failures = 0
                while True:
                    if await pubsub.get_message(timeout=None) is not None:
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: the periodic refresh goes on meanwhile
                failures += 1
                log.warning("user_streams_announcements_lost", attempt=failures, error=repr(exc))
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _sync(self, links: list[LinkInfo]) -> None:
        wanted = {link.link_id: link for link in links}
        for link_id, (info, task) in list(self.tasks.items()):
            if wanted.get(link_id) != info or task.done():
                task.cancel()
                del self.tasks[link_id]
        for link_id, info in wanted.items():
            if link_id not in self.tasks:
                self.tasks[link_id] = (
                    info,
                    asyncio.create_task(self._follow(info), name=f"user-stream-{link_id}"),
                )

    async def _follow(self, link: LinkInfo) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                credentials = await sync_to_async(_credentials)(link.link_id)
                if credentials is None:
                    return
                async with (
                    open_adapter(link.venue, credentials=credentials) as adapter,
                    adapter.user_stream() as stream,
                ):
                    async for event in stream:
                        await self._handle(link, event)
                        failures = 0
            except asyncio.CancelledError:
                raise
            except ex.FatalError as error:  # bad credentials: the link checker will revoke it
                log.warning("user_stream_refused", link_id=link.link_id, venue=link.venue, code=error.code)
                failures = max(failures, 6)
            except Exception as error:
                log.warning("user_stream_failed", link_id=link.link_id, venue=link.venue, error=repr(error))
            failures += 1
            delay = min(60.0, 0.5 * 2 ** min(failures, 7)) * (0.5 + random.random() / 2)  # noqa: S311
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _handle(self, link: LinkInfo, event: Any) -> None:
        try:
            if isinstance(event, OrderState):
                await sync_to_async(_on_order)(link.venue, event)
            elif isinstance(event, Fill):
                await sync_to_async(_on_fill)(link.venue, event)
            elif isinstance(event, StreamStatus) and event.state in ("connected", "resync"):
                # connected: what the stream missed while down; resync: a message it skipped
                if event.state == "connected":
                    self.connects += 1
                else:
                    self.resyncs += 1
                await sync_to_async(_on_connected)(link)
            elif isinstance(event, BalanceUpdate):
                await sync_to_async(_on_balance)(link, event)
            self.handled += 1
        except Exception:  # one bad message must not stop the stream; reconciliation covers it
            self.failed += 1
            log.exception("user_stream_event_failed", link_id=link.link_id, event=type(event).__name__)
