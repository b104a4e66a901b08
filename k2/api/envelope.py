"""The response envelope shared by DRF responses, Django error handlers and health checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from k2.observability.context import get_request_id, new_request_id


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meta(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"request_id": get_request_id() or new_request_id(), "timestamp": utc_timestamp()}
    if extra:
        body.update(extra)
    return body


def wrap(data: Any, *, status_code: int, extra_meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Success bodies become {"data", "meta"}; error bodies ({"error": ...}) just gain "meta"."""
    if status_code >= 400 and isinstance(data, dict) and "error" in data:
        return {"error": data["error"], "meta": meta(extra_meta)}
    if status_code >= 400:
        # An error built outside our handler (should not happen): keep the contract anyway.
        return {
            "error": {"code": "ERROR", "message": "The request failed.", "details": {"body": data}},
            "meta": meta(extra_meta),
        }
    return {"data": data, "meta": meta(extra_meta)}
