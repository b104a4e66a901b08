"""``manage.py rotate_master_key``: re-wrap every stored data key under the active master key.

Rotation procedure (no downtime):

1. Add the new master key to ``K2_VAULT_MASTER_KEYS``, keeping the old one
   (``old:...,new:...``), and set ``K2_VAULT_ACTIVE_KEY_ID=new``. With KMS, point
   ``K2_VAULT_KMS_KEY_ID`` at the new key and keep the old key enabled.
2. Deploy. New writes are wrapped under the new key; old records still decrypt.
3. Run ``manage.py rotate_master_key`` (``--dry-run`` first to see the counts). It finds every
   `EncryptedTextField` of every installed model and re-wraps, in small batches each in its own
   transaction, every value whose token names another key. Only the wrapped data key changes;
   the payload is kept (and authenticated first). Rows locked by other writers are skipped, so
   the run never blocks traffic; it ends by counting what is left.
4. Re-run until it reports ``remaining 0`` everywhere (it is idempotent and resumable: an
   interrupted run just leaves rows for the next one).
5. Remove the old key from ``K2_VAULT_MASTER_KEYS`` (or disable the old KMS key) and deploy.

Each run (not ``--dry-run``) writes one audit entry ``vault.master_key_rotated`` with the active
key id and the counts per model and field, never a value or key.

Exits non-zero if a value could not be re-wrapped (it names model, field and primary key, never
the value); such a row still needs its old key.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.db.models.functions import Cast

from k2.audit.services import record
from k2.vault import crypto
from k2.vault.exceptions import VaultError
from k2.vault.fields import EncryptedTextField
from k2.vault.providers import get_provider
from k2.vault.secret import Secret

_TOKEN = "_k2_vault_token"


def _encrypted_columns() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every (model, field) storing vault tokens, each table column once."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy:
            continue
        for field in model._meta.local_concrete_fields:
            if isinstance(field, EncryptedTextField):
                found.append((model, field))
    return found


def _stale(model: type[models.Model], field: EncryptedTextField, active_key_id: str) -> models.QuerySet[Any]:
    """Rows whose token is not wrapped under the active key, with the raw token annotated."""
    prefix = f"{crypto.TOKEN_VERSION}${active_key_id}$"
    return (
        model._base_manager.annotate(**{_TOKEN: Cast(field.attname, models.TextField())})
        .filter(**{f"{_TOKEN}__isnull": False})
        .exclude(**{f"{_TOKEN}__startswith": prefix})
    )


class Command(BaseCommand):
    help = (
        "Re-wrap vault data keys under the active master key (K2_VAULT_ACTIVE_KEY_ID or "
        "K2_VAULT_KMS_KEY_ID), in small batches, skipping rows locked by others. Procedure: add the "
        "new key next to the old one, make it active, deploy, run this until 'remaining 0', then "
        "remove the old key. Idempotent and resumable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only count what would be re-wrapped")
        parser.add_argument("--batch-size", type=int, default=200, help="rows per transaction")

    def handle(self, *args: Any, dry_run: bool, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        active_key_id = get_provider().active_key_id
        self.stdout.write(f"active master key: {active_key_id}")
        failures = 0
        columns: list[dict[str, Any]] = []
        for model, field in _encrypted_columns():
            label = f"{model._meta.label}.{field.name}"
            if dry_run:
                count = _stale(model, field, active_key_id).count()
                self.stdout.write(f"{label}: would re-wrap {count}")
                continue
            rewrapped, failed = self._rotate(model, field, active_key_id, batch_size)
            remaining = _stale(model, field, active_key_id).count()
            failures += len(failed)
            self.stdout.write(f"{label}: re-wrapped {rewrapped}, failed {len(failed)}, remaining {remaining}")
            for pk in failed:
                self.stderr.write(f"{label}: pk={pk} could not be re-wrapped")
            columns.append(
                {
                    "model": model._meta.label,
                    "field": field.name,
                    "rewrapped": rewrapped,
                    "failed": len(failed),
                    "remaining": remaining,
                }
            )
        if not dry_run:
            record(
                "manage.py rotate_master_key",
                "vault.master_key_rotated",
                details={"active_key_id": active_key_id, "failed": failures, "columns": columns},
            )
        if failures:
            raise CommandError(f"{failures} value(s) could not be re-wrapped; keep the old key configured")

    def _rotate(
        self, model: type[models.Model], field: EncryptedTextField, active_key_id: str, batch_size: int
    ) -> tuple[int, list[Any]]:
        """Walk the stale rows in pk order, one transaction per batch; return (done, failed pks)."""
        rewrapped, failed = 0, []
        last_pk: Any = None
        while True:
            with transaction.atomic():
                rows = _stale(model, field, active_key_id).order_by("pk")
                if last_pk is not None:
                    rows = rows.filter(pk__gt=last_pk)
                batch = list(
                    rows.select_for_update(skip_locked=True, of=("self",)).values_list("pk", _TOKEN)[
                        :batch_size
                    ]
                )
                for pk, token in batch:
                    try:
                        new_token = crypto.rewrap(token, context=field.vault_context)
                    except VaultError:
                        failed.append(pk)
                        continue
                    model._base_manager.filter(pk=pk).update(
                        **{field.attname: Secret.from_token(new_token, context=field.vault_context)}
                    )
                    rewrapped += 1
            if len(batch) < batch_size:
                return rewrapped, failed
            last_pk = batch[-1][0]
