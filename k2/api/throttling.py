"""DRF's request-rate throttles, counted in Redis in one atomic step.

DRF's own keep each client's request history as a pickled list in the cache: two round trips
per request, a list that grows with the rate (1,200 timestamps at 1200/min), and a read-then-write
race that lets concurrent requests through together. These keep the same sliding-window log in a
Redis sorted set, trimmed, counted and appended by one Lua script: one round trip, exact under
concurrency, and the same `Retry-After` (when the oldest counted request leaves the window).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from django.core.cache import cache
from rest_framework import throttling

from k2.core.cache import redis_run_script

if TYPE_CHECKING:  # rest_framework.views imports the throttle classes named in the settings
    from rest_framework.request import Request
    from rest_framework.views import APIView

_SLIDING_WINDOW = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
    return {0, redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(window * 1000))
return {1, '0'}
"""


class RedisRateThrottle(throttling.SimpleRateThrottle):
    """Base for DRF's rate throttles (listed after them): same rates, scopes and keys, counted
    in Redis."""

    num_requests: int
    duration: int
    _wait: float = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = time.time()
        allowed, oldest = redis_run_script(
            _SLIDING_WINDOW,
            keys=[cache.make_key(self.key)],
            args=[now, self.duration, self.num_requests, f"{now}:{uuid.uuid4().hex[:8]}"],
        )
        if allowed:
            return True
        self._wait = float(oldest) + self.duration - now
        return False

    def wait(self) -> float | None:
        return max(self._wait, 0.0) or None


class AnonRateThrottle(throttling.AnonRateThrottle, RedisRateThrottle):
    pass


class UserRateThrottle(throttling.UserRateThrottle, RedisRateThrottle):
    pass


class ScopedRateThrottle(throttling.ScopedRateThrottle, RedisRateThrottle):
    pass
