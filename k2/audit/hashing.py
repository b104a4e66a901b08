"""Canonical content hashes for audit entries and seals (SHA-256 over canonical JSON)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def normalise_details(details: Any) -> Any:
    """What JSONB will give back: plain JSON types (Decimal, UUID, datetime become strings)."""
    return json.loads(canonical_json(details if details is not None else {}))


def entry_hash(
    *,
    created_at: datetime,
    actor_id: Any,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: str,
    details: Any,
    ip: str | None,
    user_agent: str,
    request_id: str,
) -> str:
    payload = {
        "created_at": created_at.isoformat(),
        "actor_id": str(actor_id) if actor_id else None,
        "actor_label": actor_label,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "details": details,
        "ip": ip,
        "user_agent": user_agent,
        "request_id": request_id,
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def hash_of_entry(entry: Any) -> str:
    """Recompute an AuditEntry's hash from its stored content."""
    return entry_hash(
        created_at=entry.created_at,
        actor_id=entry.actor_id,
        actor_label=entry.actor_label,
        action=entry.action,
        target_type=entry.target_type,
        target_id=entry.target_id,
        details=entry.details,
        ip=entry.ip,
        user_agent=entry.user_agent,
        request_id=entry.request_id,
    )


def seal_hash(
    *, prev_hash: str, seq: int, xid_low: int, xid_high: int, ids: Sequence[int], hashes: Sequence[str]
) -> str:
    h = hashlib.sha256()
    h.update(f"{prev_hash}|{seq}|{xid_low}|{xid_high}|{len(ids)}".encode())
    for entry_id, digest in zip(ids, hashes, strict=True):
        h.update(f"|{entry_id}:{digest}".encode())
    return h.hexdigest()
