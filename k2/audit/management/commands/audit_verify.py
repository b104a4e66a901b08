from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Verify the audit log's hash chain; name every edited, deleted or inserted entry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seal-first", action="store_true", help="seal finished entries before verifying"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from k2.audit.services import audit_seal_all, audit_verify

        if options["seal_first"]:
            audit_seal_all()
        report = audit_verify()
        summary = f"{report.entries} entries, {report.seals} seals, {report.unsealed} not yet sealed"
        if report.ok:
            self.stdout.write(f"audit log OK: {summary}")
            return
        for problem in report.problems:
            self.stderr.write(f"TAMPERED: {problem}")
        raise CommandError(f"audit log verification FAILED ({len(report.problems)} problem(s)); {summary}")
