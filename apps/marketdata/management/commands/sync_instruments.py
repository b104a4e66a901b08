"""`manage.py sync_instruments [--venue V]`: upsert instruments from every venue (or one)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.exchanges.venues import VENUES
from apps.marketdata.services import instruments_sync


class Command(BaseCommand):
    help = "Upsert the instrument registry from the venues' instrument lists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--venue", help="only this venue")

    def handle(self, *args: Any, **options: Any) -> None:
        venue = options["venue"]
        if venue and venue not in VENUES:
            raise CommandError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
        failed = False
        for name, result in instruments_sync(venue=venue).items():
            if isinstance(result, str):
                failed = True
                self.stderr.write(f"{name}: {result}")
            else:
                self.stdout.write(
                    f"{name}: {result.created} created, {result.updated} updated, "
                    f"{result.delisted} delisted, {len(result.skipped)} skipped"
                )
        if failed:
            raise CommandError("some venues failed to sync")
