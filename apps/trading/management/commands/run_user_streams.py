"""`manage.py run_user_streams`: follow every active exchange link's user stream (orders, fills)
and record what it says; see `apps.trading.streams`."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.trading.streams import UserStreamSupervisor


class Command(BaseCommand):
    help = "Follow the user streams of all active exchange links and record order updates and fills."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", action="append", help="only these venues (repeatable)")

    def handle(self, *args: Any, **options: Any) -> None:
        supervisor = UserStreamSupervisor(venues=options.get("venue"))

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, supervisor.stop)
            await supervisor.run()

        asyncio.run(main())
