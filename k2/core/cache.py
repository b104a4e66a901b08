"""Django's Redis cache with one connection pool per process instead of one per thread.

Django keeps a cache object per thread (per async context). Under ASGI every request runs its
sync code in a fresh thread, so the stock backend opened a new Redis connection for every request.
redis-py's pool is thread-safe and resets itself in a forked child, so all threads share one.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_pools: dict[tuple[str, str], Any] = {}
_pools_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    def _get_connection_pool(self, write: bool) -> Any:
        """Django's per-client `_pools`, filled from the process-wide registry on first use."""
        this: Any = self  # django-stubs do not declare the client's private attributes
        index = this._get_connection_pool_index(write)
        pool = this._pools.get(index)
        if pool is None:
            server, options = this._servers[index], this._pool_options
            key = (server, repr(sorted(options.items(), key=lambda item: item[0])))
            with _pools_lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = this._pool_class.from_url(server, **options)
            this._pools[index] = pool
        return pool


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient

    def client(self, *, write: bool = False) -> Any:
        """A redis-py client on the shared pool, for what the cache API cannot say (scripts).
        Keys are the caller's: pass them through `make_key` to share the cache's namespace."""
        this: Any = self
        return this._cache.get_client(write=write)
