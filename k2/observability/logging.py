"""Structured JSON logs in the architecture's format (section 5.2), through structlog.

Every line carries timestamp, level, service, trace_id (the request id), user_id and message,
plus the event's own fields. Values under secret-looking keys are masked before rendering.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import structlog
from structlog.typing import EventDict, Processor

SECRET_KEY_RE = re.compile(
    r"(pass(word)?|secret|token|api_?key|private_?key|authorization|signature|sig|cookie|otp|"
    r"totp|credential|pem)",
    re.IGNORECASE,
)
MASK = "***"


def _mask_secrets(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key in list(event_dict):
        if key not in {"event", "message", "trace_id", "user_id"} and SECRET_KEY_RE.search(key):
            event_dict[key] = MASK
    return event_dict


def _add_service(_: Any, __: str, event_dict: EventDict) -> EventDict:
    from django.conf import settings

    event_dict.setdefault("service", getattr(settings, "K2_SERVICE_NAME", "k2"))
    return event_dict


def _rename_event(_: Any, __: str, event_dict: EventDict) -> EventDict:
    event_dict["message"] = event_dict.pop("event", "")
    event_dict.setdefault("trace_id", None)
    event_dict.setdefault("user_id", None)
    return event_dict


shared_processors: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    _add_service,
    _mask_secrets,
]


def _renderer(fmt: str) -> Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


formatter_processors: list[Processor] = [
    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    structlog.processors.format_exc_info,
    _rename_event,
    structlog.processors.JSONRenderer(),
]


def configure_structlog(fmt: str = "json") -> None:
    formatter_processors[-1] = _renderer(fmt)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


logging.captureWarnings(True)
