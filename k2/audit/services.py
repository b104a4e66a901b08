"""Audit log services: `record` (every app calls it), sealing, verification and archival."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import connection, models, transaction
from django.utils import timezone

from k2.audit.hashing import GENESIS, canonical_json, entry_hash, hash_of_entry, normalise_details, seal_hash
from k2.audit.models import AuditArchive, AuditEntry, AuditSeal
from k2.core.queries import row_insert, rows_insert
from k2.observability import context
from k2.observability.logging import MASK, SECRET_KEY_RE, get_logger

log = get_logger(__name__)

SEAL_LOCK_KEY = 0x6B32_6175  # "k2au": only the sealer takes it; writers never lock
SEAL_MAX_ENTRIES = 5000


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (MASK if SECRET_KEY_RE.search(str(k)) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


@functools.lru_cache(maxsize=1024)  # a handful of addresses make most of a process's entries
def _normalise_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    # PostgreSQL's inet gives an IPv4-mapped IPv6 address back as ::ffff:203.0.113.5, Python
    # compresses it to ::ffff:cb00:7105: hashed one way and read back the other, the entry would
    # fail verification. Both sides agree on the plain IPv4 form, which is also what it means.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return address.compressed


def _actor(actor: Any) -> tuple[Any, str]:
    if actor is None:
        return None, "system"
    if isinstance(actor, str):
        return None, actor[:255]
    if getattr(actor, "is_authenticated", False):
        label = getattr(actor, "email", None) or str(actor)
        return actor.pk, str(label)[:255]
    return None, "anonymous"


def _target(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, models.Model):
        return target._meta.label_lower, str(target.pk)
    if isinstance(target, tuple) and len(target) == 2:
        return str(target[0])[:100], str(target[1])[:255]
    return "", str(target)[:255]


def record(
    actor: Any,
    action: str,
    target: Any = None,
    details: dict[str, Any] | None = None,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """Append one entry: who (`actor`: a user, None for the system, or a label), what (`action`,
    dotted like `order.placed`), on what (`target`: a model instance, `(type, id)` or an id) and
    `details` (JSON; secret-looking keys are masked). When, from where (IP, user agent) and the
    request id come from the current request context unless given.

    Joins the caller's transaction, so an entry exists exactly when the audited change does.
    Takes no lock: concurrent writers never wait on each other. Inside `atomic_audited` the
    entry is written later in the same transaction (its `id` and `txid` stay unset here).
    """
    entry = audit_entry(actor, action, target, details, ip=ip, user_agent=user_agent, request_id=request_id)
    held = _held.get()
    if held is not None:
        held.append(entry)
    else:
        row_insert(entry)
    return entry


_held: ContextVar[list[AuditEntry] | None] = ContextVar("k2_audit_held", default=None)


@contextmanager
def atomic_audited() -> Iterator[None]:
    """`transaction.atomic(durable=True)` in which `record` holds its entries back, so that the
    block's own write carries them in the same statement (`held_entries()`, passed as `along`
    to `k2.core.queries.row_update`). Whatever is still held is written, in one statement,
    before the commit; nothing is written if the block raises. The same entries in the same
    transaction, one or two round trips fewer per change (an order makes three changes).

    No savepoints inside: an entry recorded in one that rolls back would still be written."""
    with transaction.atomic(durable=True):
        with audit_held() as held:
            yield
        rows_insert(held)


@contextmanager
def audit_held() -> Iterator[list[AuditEntry]]:
    """A block in which `record` holds its entries back, in the list it yields, instead of
    writing them: for a caller that writes them along with its own change (`held_entries()`) or,
    if the change is not made, drops them. Entries still in the list at the end are not written
    here; `atomic_audited` is this plus a transaction that writes them."""
    held: list[AuditEntry] = []
    token = _held.set(held)
    try:
        yield held
    finally:
        _held.reset(token)


def held_entries() -> list[AuditEntry]:
    """The entries `record` is holding back (see `atomic_audited`), handed over to be written."""
    held = _held.get()
    if not held:
        return []
    taken = list(held)
    held.clear()
    return taken


def audit_entry(
    actor: Any,
    action: str,
    target: Any = None,
    details: dict[str, Any] | None = None,
    *,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """`record`'s entry, built but not written: for a write that carries it along in the same
    statement (`k2.core.queries.row_insert(..., along=[entry])`)."""
    ctx = context.current.get()
    actor_id, actor_label = _actor(actor)
    target_type, target_id = _target(target)
    fields: dict[str, Any] = {
        "created_at": timezone.now(),
        "actor_id": actor_id,
        "actor_label": actor_label,
        "action": action[:100],
        "target_type": target_type,
        "target_id": target_id,
        "details": normalise_details(_mask(details or {})),
        "ip": _normalise_ip(ip if ip is not None else (ctx.ip if ctx else None)),
        "user_agent": (user_agent if user_agent is not None else (ctx.user_agent if ctx else ""))[:512],
        "request_id": (request_id or (ctx.request_id if ctx else "") or "")[:128],
    }
    fields["entry_hash"] = entry_hash(**fields)
    return AuditEntry(**fields)


# --- sealing ------------------------------------------------------------------------------------


def _current_xmin() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
        return int(cursor.fetchone()[0])


def audit_seal(*, max_entries: int = SEAL_MAX_ENTRIES) -> AuditSeal | None:
    """Seal the entries of every transaction that has finished since the last seal.

    The window is bounded by the oldest transaction still running, so an entry whose
    transaction commits later always falls into a later window: none is ever skipped.
    """
    with transaction.atomic(durable=True):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
        last = AuditSeal.objects.order_by("-seq").first()
        low = last.xid_high if last else 0
        high = _current_xmin()
        if high <= low:
            return None
        rows = list(
            AuditEntry.objects.filter(txid__gte=low, txid__lt=high).order_by("txid", "id")[: max_entries + 1]
        )
        if not rows:
            return None
        if len(rows) > max_entries:
            # Cut between transactions, never inside one.
            cut = rows[-1].txid
            kept = [r for r in rows if r.txid < cut]
            if kept:
                rows, high = kept, cut
            else:  # one huge transaction: seal all of it
                rows = list(AuditEntry.objects.filter(txid=cut).order_by("id"))
                high = cut + 1
        rows.sort(key=lambda r: r.id)
        ids = [r.id for r in rows]
        hashes = [hash_of_entry(r) for r in rows]
        seq = (last.seq + 1) if last else 1
        prev = last.seal_hash if last else GENESIS
        seal = AuditSeal.objects.create(
            seq=seq,
            created_at=timezone.now(),
            xid_low=low,
            xid_high=high,
            entry_ids=ids,
            entry_hashes=hashes,
            prev_hash=prev,
            seal_hash=seal_hash(prev_hash=prev, seq=seq, xid_low=low, xid_high=high, ids=ids, hashes=hashes),
        )
    log.info("audit_sealed", seq=seal.seq, entries=len(ids))
    return seal


def audit_seal_all() -> int:
    """Seal until nothing finished is left unsealed; returns the number of seals made."""
    made = 0
    while audit_seal() is not None:
        made += 1
    return made


# --- verification ---------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    seals: int = 0
    entries: int = 0
    unsealed: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _entries_in(low: int, high: int) -> Iterator[AuditEntry]:
    return AuditEntry.objects.filter(txid__gte=low, txid__lt=high).order_by("id").iterator(chunk_size=2000)


def audit_verify() -> VerifyReport:
    """Recompute every hash and the seal chain; name each edited, deleted or inserted entry."""
    report = VerifyReport()
    prev_hash, prev_high, expected_seq = GENESIS, 0, 1
    for seal in AuditSeal.objects.order_by("seq").iterator(chunk_size=200):
        report.seals += 1
        if seal.seq != expected_seq:
            report.problems.append(f"seal {expected_seq} is missing (found seal {seal.seq} next)")
        if seal.prev_hash != prev_hash:
            report.problems.append(f"seal {seal.seq}: chain broken (previous hash does not match)")
        if seal.xid_low != prev_high:
            report.problems.append(f"seal {seal.seq}: transaction window does not follow seal {seal.seq - 1}")
        recomputed = seal_hash(
            prev_hash=seal.prev_hash, seq=seal.seq, xid_low=seal.xid_low, xid_high=seal.xid_high,
            ids=seal.entry_ids, hashes=seal.entry_hashes,
        )  # fmt: skip
        if recomputed != seal.seal_hash:
            report.problems.append(f"seal {seal.seq}: seal hash does not match its contents (seal edited)")
        sealed = dict(zip(seal.entry_ids, seal.entry_hashes, strict=False))
        seen: set[int] = set()
        for entry in _entries_in(seal.xid_low, seal.xid_high):
            report.entries += 1
            seen.add(entry.id)
            digest = hash_of_entry(entry)
            if entry.id not in sealed:
                report.problems.append(f"entry {entry.id}: inserted (not in seal {seal.seq})")
            elif digest != sealed[entry.id] or digest != entry.entry_hash:
                report.problems.append(f"entry {entry.id}: edited (content does not match seal {seal.seq})")
        for missing in sorted(set(sealed) - seen):
            report.problems.append(f"entry {missing}: deleted (listed in seal {seal.seq})")
        prev_hash, prev_high, expected_seq = seal.seal_hash, seal.xid_high, seal.seq + 1
    for entry in _entries_in(prev_high, 2**63 - 1):
        report.unsealed += 1
        report.entries += 1
        if hash_of_entry(entry) != entry.entry_hash:
            report.problems.append(f"entry {entry.id}: edited (unsealed; its own hash does not match)")
    return report


# --- archival -------------------------------------------------------------------------------------


def _archive_body(seal: AuditSeal) -> bytes:
    header = {
        "seal": {
            "seq": seal.seq, "created_at": seal.created_at.isoformat(), "xid_low": seal.xid_low,
            "xid_high": seal.xid_high, "prev_hash": seal.prev_hash, "seal_hash": seal.seal_hash,
            "entry_ids": seal.entry_ids, "entry_hashes": seal.entry_hashes,
        }
    }  # fmt: skip
    lines = [canonical_json(header)]
    for entry in _entries_in(seal.xid_low, seal.xid_high):
        lines.append(
            canonical_json(
                {
                    "id": entry.id,
                    "created_at": entry.created_at.isoformat(),
                    "txid": entry.txid,
                    "actor_id": str(entry.actor_id) if entry.actor_id else None,
                    "actor_label": entry.actor_label,
                    "action": entry.action,
                    "target_type": entry.target_type,
                    "target_id": entry.target_id,
                    "details": entry.details,
                    "ip": entry.ip,
                    "user_agent": entry.user_agent,
                    "request_id": entry.request_id,
                    "entry_hash": entry.entry_hash,
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()


def audit_archive(*, limit: int = 1000) -> list[AuditArchive]:
    """Write each sealed batch not yet archived to the `audit_archive` storage (local files by
    default; S3 with Object Lock when configured) as JSON lines, and record where it went."""
    storage = storages["audit_archive"]
    done: list[AuditArchive] = []
    pending = AuditSeal.objects.filter(archive__isnull=True).order_by("seq")[:limit]
    for seal in pending:
        body = _archive_body(seal)
        digest = hashlib.sha256(body).hexdigest()
        name = f"audit/{seal.created_at:%Y/%m/%d}/seal-{seal.seq:012d}.jsonl"
        if storage.exists(name):
            # A previous run wrote the file but died before recording it: trust it only if identical.
            with storage.open(name, "rb") as fh:
                existing = fh.read()
            if hashlib.sha256(existing).hexdigest() != digest:
                raise RuntimeError(f"archive object {name} exists with different content")
            stored = name
        else:
            stored = storage.save(name, ContentFile(body))
        with transaction.atomic(durable=True):
            done.append(
                AuditArchive.objects.create(
                    seal=seal, created_at=timezone.now(), storage_name=stored, sha256=digest
                )
            )
        log.info("audit_archived", seq=seal.seq, name=stored)
    return done


def archive_retain_until() -> str:
    return (timezone.now() + timedelta(days=settings.K2_AUDIT_ARCHIVE_RETENTION_DAYS)).isoformat()


def parse_archive(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = body.decode().splitlines()
    return json.loads(lines[0])["seal"], [json.loads(line) for line in lines[1:]]
