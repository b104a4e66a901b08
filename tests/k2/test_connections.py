"""Connections are shared per process, not per thread: ASGI runs every request's sync code in a
fresh thread, and per-thread connections (Django's defaults) meant a new PostgreSQL and a new
Redis connection for every request."""

from __future__ import annotations

import copy
import threading
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.db.utils import ConnectionHandler


@pytest.mark.django_db(transaction=True)
def test_threads_reuse_pooled_database_connections() -> None:
    # The web process's configuration (Procfile: DATABASE_POOL_MAX_SIZE=10), one wrapper per
    # thread as Django makes them.
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict["OPTIONS"]["pool"] = dict(settings.DATABASE_POOL_OPTIONS, max_size=4, min_size=1)
    settings_dict["CONN_MAX_AGE"] = 0

    handler = ConnectionHandler({"default": settings_dict})  # per-thread wrappers, as Django's

    def request() -> None:
        wrapper = handler["default"]
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
        wrapper.close()  # what Django does when a request ends: back to the pool

    pooled: Any = handler["default"]
    try:
        request()
        pooled.pool.wait(timeout=10)  # the pool has opened the connections it keeps
        opened = pooled.pool.get_stats()["connections_num"]
        for _ in range(5):
            thread = threading.Thread(target=request)
            thread.start()
            thread.join(10)
        assert pooled.pool.get_stats()["connections_num"] == opened  # 5 "requests", no new connection
    finally:
        pooled.close_pool()


def test_threads_share_one_connection_pool() -> None:
    key = f"test:{uuid.uuid4().hex}"
    pools: list[object] = []
    created: list[int] = []

    def request() -> None:
        cache = caches["default"]  # a new cache object in every thread, as in a request
        cache.set(key, 1, 30)
        assert cache.get(key) == 1
        pool = cache._cache._get_connection_pool(True)  # type: ignore[attr-defined]
        pools.append(pool)
        created.append(pool._created_connections)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
        thread.join(10)  # one after the other: a request returns its connection when done
    assert len(pools) == 8
    assert len({id(pool) for pool in pools}) == 1
    assert max(created) == created[0]  # no "request" needed a new connection
    caches["default"].delete(key)
