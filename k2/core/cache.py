"""Django's Redis cache with one connection pool (and client) per process, not one per thread.

Django keeps a cache object per thread (per async context). Under Django's ASGI handler every
request runs its sync code in a fresh thread, so the stock backend opened a new Redis connection
for every request (K2's handler reuses threads, but each would still hold its own connections).
redis-py's pool is thread-safe and resets itself in a forked child, so all threads share one.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()
_scripts: dict[str, Any] = {}  # Lua source -> redis-py Script (its SHA)


class SharedPoolRedisCacheClient(RedisCacheClient):
    """Django builds a `redis.Redis` on every cache call (about 0.2 ms: it fills a table of ~170
    response callbacks); one client per server, on one pool, serves every thread instead."""

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        this: Any = self  # django-stubs do not declare the client's private attributes
        index = this._get_connection_pool_index(write)
        server, options = this._servers[index], this._pool_options
        registry_key = (server, repr(sorted(options.items(), key=lambda item: item[0])))
        client = _clients.get(registry_key)
        if client is None:
            with _clients_lock:
                client = _clients.get(registry_key)
                if client is None:
                    pool = this._pool_class.from_url(server, **options)
                    client = _clients[registry_key] = this._client(connection_pool=pool)
        return client

    def _get_connection_pool(self, write: bool) -> Any:
        return self.get_client(write=write).connection_pool


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient

    def client(self, *, write: bool = False) -> Any:
        """A redis-py client on the shared pool, for what the cache API cannot say (scripts).
        Keys are the caller's: pass them through `make_key` to share the cache's namespace."""
        this: Any = self
        return this._cache.get_client(write=write)

    def decode(self, value: bytes) -> Any:
        """A value read raw through `client()` (in a pipeline, say), as `get` would return it."""
        this: Any = self
        return this._cache._serializer.loads(value)

    def encode(self, value: Any) -> Any:
        """A value to write raw through `client()`, as `set` would store it (`get` reads it)."""
        this: Any = self
        return this._cache._serializer.dumps(value)


def _default() -> SharedPoolRedisCache:
    from django.core.cache import caches

    backend = caches["default"]
    if not isinstance(backend, SharedPoolRedisCache):
        raise TypeError(f"the default cache is {type(backend).__name__}, not SharedPoolRedisCache")
    return backend


def redis_client(*, write: bool = False) -> Any:
    """The default cache's redis-py client, on its shared pool (see `SharedPoolRedisCache.client`)."""
    return _default().client(write=write)


def redis_url() -> str:
    """The URL of the default cache's Redis server that takes writes (its first, when LOCATION
    lists replicas too): for clients `redis_client` cannot serve (asyncio, pub/sub)."""
    backend: Any = _default()  # django-stubs do not declare the client's private attributes
    return str(backend._cache._servers[0])


def cache_decode(value: bytes) -> Any:
    """A raw value of the default cache's, as `cache.get` would return it."""
    return _default().decode(value)


def cache_encode(value: Any) -> Any:
    """A value for the default cache, to write raw, as `cache.set` would store it."""
    return _default().encode(value)


def redis_run_script(source: str, *, keys: list[Any], args: list[Any]) -> Any:
    """Run a Lua script on the default cache's Redis in one round trip: sent once per process,
    run by its SHA afterwards (and sent again if Redis lost it). Keys are the caller's (pass
    them through `make_key` to share the cache's namespace)."""
    client = redis_client(write=True)
    script = _scripts.get(source)
    if script is None:
        script = _scripts.setdefault(source, client.register_script(source))
    return script(keys=keys, args=args, client=client)
