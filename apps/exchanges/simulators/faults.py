"""Fault injection for simulators: each fault applies to the next N matching requests."""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import asdict, dataclass
from typing import Any


class FaultKind(enum.StrEnum):
    LATENCY = "latency"  # delay the answer by latency_ms
    HTTP_500 = "http_500"  # answer 500 without executing
    HTTP_429 = "http_429"  # answer the venue's rate-limit error without executing
    # answer the venue's maintenance error without executing, with HTTP 503 (Crypto.com: 9010001
    # SYSTEM_MAINTENANCE in its envelope; Kalshi: `exchange_paused`)
    MAINTENANCE = "maintenance"
    DROP_WS = "drop_ws"  # abort open (then newly opened) WebSocket connections
    SEQUENCE_GAP = "sequence_gap"  # skip a sequence number in the next book delta
    NO_RESPONSE = "no_response"  # execute, then hold latency_ms and close without answering
    # execute, then answer the venue's timeout error; with `status`, answer as a proxy or gateway in
    # front of the venue would instead: that HTTP status with an HTML page, not the venue's body
    TIMEOUT_AFTER_EXECUTE = "timeout_after_execute"
    MALFORMED_WS = "malformed_ws"  # send the next matching data message malformed (rows unreadable)


@dataclass
class Fault:
    kind: FaultKind
    remaining: int
    method: str | None = None
    latency_ms: float = 0.0
    status: int | None = None  # timeout_after_execute: answer as a gateway with this HTTP status

    def matches(self, kind: FaultKind, method: str) -> bool:
        return (
            self.kind is kind
            and self.remaining > 0
            and (self.method is None or fnmatch.fnmatch(method, self.method))
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


class FaultInjector:
    """The pending faults of one simulator. `take` consumes one use of the first match."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(
        self,
        kind: FaultKind,
        count: int = 1,
        method: str | None = None,
        latency_ms: float = 0.0,
        status: int | None = None,
    ) -> Fault:
        fault = Fault(
            kind=kind, remaining=max(1, count), method=method or None, latency_ms=latency_ms, status=status
        )
        self.faults.append(fault)
        return fault

    def take(self, kind: FaultKind, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(kind, method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        self.faults.clear()

    def as_json(self) -> list[dict[str, Any]]:
        return [f.as_json() for f in self.faults]

    @staticmethod
    def parse(body: dict[str, Any]) -> tuple[FaultKind, int, str | None, float, int | None]:
        """Validate a `POST /_sim/faults` body; raises ValueError on bad input."""
        kind = FaultKind(str(body.get("kind")))
        count = int(body.get("count", 1))
        if not 1 <= count <= 100_000:
            raise ValueError("count must be 1..100000")
        method = body.get("method")
        latency_ms = float(body.get("latency_ms", 0))
        if not 0 <= latency_ms <= 600_000:
            raise ValueError("latency_ms must be 0..600000")
        status = body.get("status")
        if status is not None:
            status = int(status)
            if kind is not FaultKind.TIMEOUT_AFTER_EXECUTE or not 400 <= status <= 599:
                raise ValueError("status is for timeout_after_execute only, 400..599")
        return kind, count, str(method) if method else None, latency_ms, status
