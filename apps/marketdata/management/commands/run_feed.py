"""`manage.py run_feed`: the market data feed process (Procfile `feed`).

Runs one `VenueFeed` per venue in the registry (or the `--venue`s given) until SIGINT/SIGTERM.
Run as many replicas as you like: a Redis lease per venue makes exactly one of them write.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.exchanges.venues import VENUES
from apps.marketdata.feed.runner import FeedConfig, VenueFeed
from k2.observability.logging import get_logger

log = get_logger(__name__)


class Command(BaseCommand):
    help = "Consume every venue's market stream: latest prices, candles, WebSocket fan-out."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", action="append", help="only this venue (repeatable)")
        parser.add_argument("--lease-seconds", type=float, default=None, help="override the lease TTL")
        parser.add_argument("--stats-interval", type=float, default=60.0, help="seconds between stats logs")

    def handle(self, *args: Any, **options: Any) -> None:
        venues = options["venue"] or list(VENUES)
        unknown = [v for v in venues if v not in VENUES]
        if unknown:
            raise CommandError(f"unknown venue(s): {', '.join(unknown)}; known: {', '.join(VENUES)}")
        overrides = {"lease_seconds": options["lease_seconds"]} if options["lease_seconds"] else {}
        asyncio.run(self._run(venues, FeedConfig.from_settings(**overrides), options["stats_interval"]))

    async def _run(self, venues: list[str], config: FeedConfig, stats_interval: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        feeds = [VenueFeed(venue, config=config) for venue in venues]
        log.info("feed_starting", venues=venues)
        tasks = [asyncio.create_task(feed.run(stop)) for feed in feeds]
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), stats_interval)
            except TimeoutError:
                for feed in feeds:
                    stats = {k: v for k, v in vars(feed.stats).items() if k != "history"}
                    log.info("feed_stats", venue=feed.venue, role=feed.role, state=feed.venue_state, **stats)
        log.info("feed_stopping")
        await asyncio.wait(tasks, timeout=15)
