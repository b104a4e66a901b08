"""A Redis lease per venue so exactly one feed replica writes a venue's prices.

The owner renews the lease well before it expires; a replica that fails to renew (crashed,
partitioned, paused) loses it at expiry and a standby takes over. Every price write is fenced
by the lease token inside the same Redis script, so a stale owner cannot write after losing it.
"""

from __future__ import annotations

import secrets
import socket
from typing import Any

import redis.asyncio as aioredis

from apps.marketdata import cache


class LeaseLost(Exception):
    """This replica no longer owns the venue."""


class VenueLease:
    def __init__(self, client: aioredis.Redis, venue: str, ttl_seconds: float) -> None:
        self.client = client
        self.venue = venue
        self.key = cache.lease_key(venue)
        self.ttl_ms = max(100, int(ttl_seconds * 1000))
        self.token = f"{socket.gethostname()}:{secrets.token_hex(8)}"
        self._renew: Any = client.register_script(cache.RENEW_LEASE)
        self._release: Any = client.register_script(cache.RELEASE_LEASE)

    async def acquire(self) -> bool:
        return bool(await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> None:
        if not await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            raise LeaseLost(self.venue)

    async def release(self) -> None:
        await self._release(keys=[self.key], args=[self.token])

    async def owner(self) -> str | None:
        raw = await self.client.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw
