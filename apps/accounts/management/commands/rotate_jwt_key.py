"""`manage.py rotate_jwt_key`: add a new JWT signing key without logging anyone out.

The new key signs from now on (every replica within K2_JWT_KEYSET_CACHE_SECONDS); the previous
keys keep verifying for the overlap (default K2_JWT_KEY_OVERLAP_SECONDS = refresh lifetime).
`--prune` deletes keys whose overlap has ended. Key material is never printed. An overlap shorter
than the access-token lifetime (K2_JWT_ACCESS_TOKEN_SECONDS) would refuse tokens still in use, so
it needs `--force`; a negative one is always refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import SigningKey
from apps.accounts.services import jwt_key_rotate, jwt_keys_prune


class Command(BaseCommand):
    help = "Add a new JWT signing key; older keys keep verifying for the overlap period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--overlap-seconds",
            type=int,
            default=None,
            help="How long the retired keys still verify (default: K2_JWT_KEY_OVERLAP_SECONDS).",
        )
        parser.add_argument("--prune", action="store_true", help="Also delete keys past their overlap.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Accept an overlap shorter than the access-token lifetime (logs out sessions using it).",
        )
        parser.add_argument("--list", action="store_true", help="Only list the keys (kid, state); no change.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for key in SigningKey.objects.order_by("created_at"):
                state = (
                    "signing"
                    if key.retired_at is None
                    else f"verifying until {key.verify_until:%Y-%m-%d %H:%M}"
                )
                self.stdout.write(
                    f"{key.kid}  {key.algorithm}  created {key.created_at:%Y-%m-%d %H:%M}  {state}"
                )
            return
        seconds = options["overlap_seconds"]
        overlap = timedelta(seconds=seconds) if seconds is not None else settings.K2_JWT_KEY_OVERLAP
        if overlap < timedelta(0):
            raise CommandError("--overlap-seconds must not be negative")
        lifetime = settings.K2_JWT_ACCESS_TOKEN_LIFETIME
        if overlap < lifetime and not options["force"]:
            raise CommandError(
                f"an overlap of {int(overlap.total_seconds())}s is shorter than the access-token lifetime "
                f"({int(lifetime.total_seconds())}s): tokens already issued would be refused; "
                "pass --force to do it anyway"
            )
        key = jwt_key_rotate(actor="manage.py rotate_jwt_key", overlap=overlap)
        self.stdout.write(self.style.SUCCESS(f"New signing key {key.kid} ({key.algorithm})."))
        if options["prune"]:
            pruned = jwt_keys_prune(actor="manage.py rotate_jwt_key")
            self.stdout.write(f"Pruned {pruned} expired key(s).")
