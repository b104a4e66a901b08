"""The append-only audit log (architecture 1.2).

`AuditEntry` rows are only ever inserted: the database refuses UPDATE, DELETE and TRUNCATE
(triggers created by migration 0002). Writers take no lock: each row records the id of the
transaction that wrote it, and the sealer (`audit_seal`) later chains batches of committed
entries into `AuditSeal` rows, each holding the ids and content hashes of its entries and the
hash of the previous seal. `audit_verify` recomputes everything and names any entry that was
edited, deleted or inserted.
"""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Func


class CurrentTransactionId(Func):
    """The writing transaction's 64-bit id (top-level, even inside a savepoint)."""

    template = "(pg_current_xact_id()::text::bigint)"
    output_field = models.BigIntegerField()


class AuditEntry(models.Model):
    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(db_index=True)
    txid = models.BigIntegerField(db_default=CurrentTransactionId(), editable=False, db_index=True)
    actor_id = models.UUIDField(null=True, blank=True, db_index=True)
    actor_label = models.CharField(max_length=255, blank=True)
    action = models.CharField(max_length=100, db_index=True)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=255, blank=True, db_index=True)
    details = models.JSONField(default=dict)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)
    request_id = models.CharField(max_length=128, blank=True, db_index=True)
    entry_hash = models.CharField(max_length=64)

    class Meta:
        db_table = "audit_log"
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"#{self.id} {self.action} by {self.actor_label or 'system'}"


class AuditSeal(models.Model):
    """A hash-chained batch: every entry written by transactions with xid in [xid_low, xid_high)."""

    id = models.BigAutoField(primary_key=True)
    seq = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    xid_low = models.BigIntegerField()
    xid_high = models.BigIntegerField()
    entry_ids = ArrayField(models.BigIntegerField())
    entry_hashes = ArrayField(models.CharField(max_length=64))
    prev_hash = models.CharField(max_length=64)
    seal_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        db_table = "audit_seal"
        ordering = ("-seq",)
        constraints = [
            models.CheckConstraint(
                condition=models.Q(xid_high__gte=models.F("xid_low")), name="audit_seal_window"
            ),
        ]

    def __str__(self) -> str:
        return f"seal {self.seq} ({len(self.entry_ids)} entries)"


class AuditArchive(models.Model):
    """Where a seal's batch was archived (object storage), with the file's SHA-256."""

    id = models.BigAutoField(primary_key=True)
    seal = models.OneToOneField(AuditSeal, on_delete=models.PROTECT, related_name="archive")
    created_at = models.DateTimeField()
    storage_name = models.CharField(max_length=512)
    sha256 = models.CharField(max_length=64)

    class Meta:
        db_table = "audit_archive"

    def __str__(self) -> str:
        return self.storage_name
