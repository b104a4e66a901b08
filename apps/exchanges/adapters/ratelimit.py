"""A token-bucket rate limiter shared by every K2 process through Redis.

One bucket per (venue, credential, method group); the credential is hashed, never stored raw.
Acquiring is a *reservation*: one atomic Lua script refills the buckets, takes the tokens and
tells the caller how long to wait until its turn. If the wait would exceed the caller's bound,
nothing is taken and `RateLimited` is raised instead, so K2 waits a little rather than earning a
429. After a 429 that comes anyway, `penalize` empties the bucket for everyone sharing it.

Without a Redis client the same algorithm runs in process memory (one process only; for tools
and tests that do not need sharing).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apps.exchanges.adapters.errors import RateLimited

if TYPE_CHECKING:
    from redis.asyncio import Redis

_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local max_wait = tonumber(ARGV[1])
local after = {}
local wait = 0
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  local cost = tonumber(ARGV[i * 3 + 1])
  local st = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(st[1])
  local ts = tonumber(st[2])
  if tokens == nil or ts == nil then tokens = cap; ts = now end
  tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
  after[i] = tokens - cost
  if after[i] < 0 then
    local w = -after[i] / rate
    if w > wait then wait = w end
  end
end
if wait > max_wait then return {0, tostring(wait)} end
for i = 1, #KEYS do
  local cap = tonumber(ARGV[i * 3 - 1])
  local rate = tonumber(ARGV[i * 3])
  redis.call('HSET', KEYS[i], 'tokens', tostring(after[i]), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(cap / rate + max_wait + wait) + 1000)
end
return {1, tostring(wait)}
"""

_PENALIZE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local rate = tonumber(ARGV[1])
local ms = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'tokens', tostring(-ms * rate), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(ms) + 60000)
return 1
"""


@dataclass(frozen=True, slots=True)
class RateRule:
    """`capacity` tokens, refilled at `per_second`; `RateRule.per(15, 0.1)` = 15 per 100 ms."""

    capacity: float
    per_second: float

    @classmethod
    def per(cls, count: float, seconds: float) -> RateRule:
        return cls(capacity=count, per_second=count / seconds)


def credential_fingerprint(api_key: str) -> str:
    """A stable, non-reversible id for a credential, safe to use in keys and logs."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:20]


class _MemoryBuckets:
    """The Lua algorithm in process memory, for limiters created without Redis."""

    def __init__(self) -> None:
        self.state: dict[str, tuple[float, float]] = {}

    def acquire(
        self, keys: Sequence[str], rules: Sequence[tuple[RateRule, float]], max_wait_ms: float
    ) -> float:
        now = time.monotonic() * 1000
        after: list[float] = []
        wait = 0.0
        for key, (rule, cost) in zip(keys, rules, strict=True):
            rate = rule.per_second / 1000
            tokens, ts = self.state.get(key, (rule.capacity, now))
            tokens = min(rule.capacity, tokens + max(0.0, now - ts) * rate) - cost
            after.append(tokens)
            if tokens < 0:
                wait = max(wait, -tokens / rate)
        if wait > max_wait_ms:
            return -wait
        for key, tokens in zip(keys, after, strict=True):
            self.state[key] = (tokens, now)
        return wait

    def penalize(self, key: str, rule: RateRule, ms: float) -> None:
        self.state[key] = (-ms * rule.per_second / 1000, time.monotonic() * 1000)


_MEMORY = _MemoryBuckets()


class RateLimiter:
    """Token buckets for one venue and one credential, one per method group.

    `acquire("orders")` waits (up to `max_wait` seconds) for a token in the group's bucket and in
    the `global_group` bucket if one is configured, then returns the seconds waited.
    """

    def __init__(
        self,
        *,
        venue: str,
        credential: str,
        rules: Mapping[str, RateRule],
        redis: Redis | None = None,
        max_wait: float = 2.0,
        global_group: str | None = None,
        prefix: str = "k2:ratelimit",
    ) -> None:
        self.venue = venue
        self.rules = dict(rules)
        self.redis = redis
        self.max_wait = max_wait
        self.global_group = global_group
        self._prefix = f"{prefix}:{venue}:{credential_fingerprint(credential)}"
        self._acquire_script: Any = redis.register_script(_ACQUIRE_LUA) if redis is not None else None
        self._penalize_script: Any = redis.register_script(_PENALIZE_LUA) if redis is not None else None

    def key(self, group: str) -> str:
        return f"{self._prefix}:{group}"

    def _groups(self, group: str) -> list[str]:
        groups = [group]
        if self.global_group and self.global_group != group:
            groups.append(self.global_group)
        return [g for g in groups if g in self.rules]

    async def acquire(self, group: str, cost: float = 1.0) -> float:
        """Take `cost` tokens from the group; sleep until they are ours. Raises `RateLimited`."""
        groups = self._groups(group)
        if not groups:
            return 0.0
        keys = [self.key(g) for g in groups]
        max_wait_ms = self.max_wait * 1000
        if self._acquire_script is not None:
            args: list[float] = [max_wait_ms]
            for g in groups:
                rule = self.rules[g]
                args += [rule.capacity, rule.per_second / 1000, cost]
            ok, wait_text = await self._acquire_script(keys=keys, args=args)
            wait_ms = float(wait_text)
            if not int(ok):
                wait_ms = -wait_ms
        else:
            wait_ms = _MEMORY.acquire(keys, [(self.rules[g], cost) for g in groups], max_wait_ms)
        if wait_ms < 0:
            raise RateLimited(
                f"local rate limit for {group}: next slot in {-wait_ms:.0f} ms",
                retry_after=-wait_ms / 1000,
                venue=self.venue,
            )
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)
        return wait_ms / 1000

    async def penalize(self, group: str, seconds: float) -> None:
        """After a venue 429: nobody sharing this bucket sends for `seconds`."""
        rule = self.rules.get(group)
        if rule is None or seconds <= 0:
            return
        if self._penalize_script is not None:
            await self._penalize_script(keys=[self.key(group)], args=[rule.per_second / 1000, seconds * 1000])
        else:
            _MEMORY.penalize(self.key(group), rule, seconds * 1000)

    @staticmethod
    def backoff(attempt: int, *, base: float = 0.1, cap: float = 32.0) -> float:
        """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
        return random.uniform(0, min(cap, base * math.pow(2, attempt)))  # noqa: S311 - jitter, not crypto
