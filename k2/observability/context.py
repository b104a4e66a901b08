"""Per-request context (request id, user, client) shared by logging and the audit log.

Context variables work for sync views, async consumers and Celery tasks alike.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    ip: str | None = None
    user_agent: str = ""


current: ContextVar[RequestContext | None] = ContextVar("k2_request_context", default=None)


def new_request_id() -> str:
    return f"req-{uuid.uuid4()}"


def clean_request_id(candidate: str | None) -> str:
    """The client's X-Request-ID when it is a safe token, else a fresh one."""
    if candidate and REQUEST_ID_RE.match(candidate):
        return candidate
    return new_request_id()


def get_request_id() -> str | None:
    ctx = current.get()
    return ctx.request_id if ctx else None
