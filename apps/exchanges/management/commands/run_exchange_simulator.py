"""`manage.py run_exchange_simulator cryptocom [--port 8601] [--host 127.0.0.1]`."""

from __future__ import annotations

import asyncio
import gc
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.exchanges.simulators.registry import DEFAULT_PORTS, SIMULATORS
from apps.exchanges.simulators.server import SimConfig


class Command(BaseCommand):
    help = "Run a local exchange simulator (REST + WebSocket + /_sim/ control) until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("venue", choices=sorted(SIMULATORS))
        parser.add_argument(
            "--port", type=int, default=None, help="default: the venue's port (cryptocom 8601, kalshi 8602)"
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--tick-interval", type=float, default=1.0, help="seconds between market moves")
        parser.add_argument("--heartbeat-interval", type=float, default=30.0)
        parser.add_argument("--no-rate-limits", action="store_true", help="do not enforce venue limits")

    def handle(self, *args: Any, **options: Any) -> None:
        venue = options["venue"]
        config = SimConfig(
            host=options["host"],
            port=options["port"] if options["port"] is not None else DEFAULT_PORTS[venue],
            seed=options["seed"],
            tick_interval=options["tick_interval"],
            heartbeat_interval=options["heartbeat_interval"],
            rate_limits=not options["no_rate_limits"],
        )
        asyncio.run(self._serve(venue, config))

    async def _serve(self, venue: str, config: SimConfig) -> None:
        server = SIMULATORS[venue](config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        # What is loaded by now (Django, the apps) lives as long as the process. Out of the cycle
        # collector's sight, a full pass took 7-14 ms in the trading bench, not the 80-100 ms
        # that stalled every request in flight: a real venue does not, and a benchmark measuring
        # through the simulator would count the stall against whichever path was calling.
        gc.freeze()
        self.stdout.write(
            f"{venue} simulator listening on {server.base_url} (control: {server.base_url}/_sim/state)"
        )
        self.stdout.flush()
        try:
            await stop.wait()
        finally:
            await server.stop()
            self.stdout.write(f"{venue} simulator stopped")
