from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Seal finished audit entries into the hash chain (beat does this every K2_AUDIT_SEAL_INTERVAL s)."

    def handle(self, *args: Any, **options: Any) -> None:
        from k2.audit.services import audit_seal_all

        self.stdout.write(f"sealed {audit_seal_all()} batch(es)")
