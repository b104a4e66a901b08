from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Seal, then archive every sealed batch not yet archived to object storage (K2_AUDIT_ARCHIVE_*)."

    def handle(self, *args: Any, **options: Any) -> None:
        from k2.audit.services import audit_archive, audit_seal_all

        audit_seal_all()
        archived = audit_archive()
        for item in archived:
            self.stdout.write(f"archived seal {item.seal.seq} -> {item.storage_name} (sha256 {item.sha256})")
        self.stdout.write(f"{len(archived)} batch(es) archived")
