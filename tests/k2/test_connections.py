"""Connections are shared per process, not per thread: ASGI runs every request's sync code in a
fresh thread, and per-thread connections (Django's defaults) meant a new PostgreSQL and a new
Redis connection for every request."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.db.utils import ConnectionHandler

from k2.db.base import connection_usable, has_input


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


def _pooled_handler(**pool: Any) -> ConnectionHandler:
    """The web process's configuration (a pool, Django's pool checks off: K2's backend checks)."""
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict["OPTIONS"]["pool"] = dict(settings.DATABASE_POOL_OPTIONS, **pool)
    settings_dict["CONN_MAX_AGE"] = 0
    settings_dict["CONN_HEALTH_CHECKS"] = False
    return ConnectionHandler({"default": settings_dict})


def _backend_pid(wrapper: Any) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def pool_connection_has_input(pool: Any) -> bool:
    with pool.connection(timeout=5) as conn:  # the pool's idle connection, looked at in place
        return has_input(conn)


def _end_backend(pid: int, goodbye_arrived: Callable[[], bool]) -> None:
    """The server ends backend `pid` (as a restart or an idle timeout would), and its goodbye
    reaches the client's socket (`goodbye_arrived`, waited for at most 10 s)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not goodbye_arrived():
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_the_server_ended_is_never_handed_out() -> None:
    # Django's pool check (an empty query) is off; without K2's own, the next request would get
    # the dead connection and fail (`psycopg.OperationalError`).
    handler = _pooled_handler(min_size=1, max_size=1)  # one connection: the one ended
    wrapper: Any = handler["default"]
    assert wrapper.settings_dict["ENGINE"] == "k2.db"
    try:
        ended = _backend_pid(wrapper)
        wrapper.close()  # back to the pool
        _end_backend(ended, lambda: pool_connection_has_input(wrapper.pool))
        assert _backend_pid(wrapper) != ended  # a new connection, and the request goes on
        wrapper.close()
    finally:
        wrapper.close_pool()


@pytest.mark.django_db(transaction=True)
def test_a_healthy_pooled_connection_is_handed_out_without_a_round_trip() -> None:
    handler = _pooled_handler(min_size=1, max_size=1)
    wrapper: Any = handler["default"]
    try:
        pid = _backend_pid(wrapper)
        wrapper.close()
        pooled = wrapper.pool.getconn()
        sent_before = _server_statements(pid)
        assert connection_usable(pooled)
        assert _server_statements(pid) == sent_before
        wrapper.pool.putconn(pooled)
        assert _backend_pid(wrapper) == pid  # the same connection, reused
        wrapper.close()
    finally:
        wrapper.close_pool()


def _server_statements(pid: int) -> Any:
    """What the server last heard from backend `pid` and when (pg_stat_activity)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT query, query_start FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()


@pytest.fixture
def kept(transactional_db: Any) -> Iterator[Any]:
    """A connection of a process that keeps it between tasks (the Procfile's Celery worker: no
    pool, `DATABASE_CONN_MAX_AGE`, Django's health checks)."""
    settings_dict = copy.deepcopy(connection.settings_dict)
    settings_dict["OPTIONS"].pop("pool", None)
    settings_dict["CONN_MAX_AGE"] = 600
    settings_dict["CONN_HEALTH_CHECKS"] = True
    wrapper = ConnectionHandler({"default": settings_dict})["default"]
    yield wrapper
    wrapper.close()


def _next_task(wrapper: Any) -> None:
    """What Celery's Django fixup does before each task, then the task's first query's check."""
    wrapper.close_if_unusable_or_obsolete()
    wrapper.close_if_health_check_failed()


def test_a_kept_connection_is_checked_before_each_task_without_a_round_trip(kept: Any) -> None:
    pid = _backend_pid(kept)
    sent_before = _server_statements(pid)
    _next_task(kept)  # Django's own check would send "SELECT 1"
    assert _server_statements(pid) == sent_before
    assert _backend_pid(kept) == pid  # the same connection, kept


def test_a_kept_connection_the_server_ended_is_replaced_before_the_next_task(kept: Any) -> None:
    ended = _backend_pid(kept)
    _end_backend(ended, lambda: has_input(kept.connection))
    _next_task(kept)
    assert _backend_pid(kept) != ended  # a new connection, and the task goes on


def test_a_kept_connection_left_in_a_failed_transaction_is_not_reused(kept: Any) -> None:
    pid = _backend_pid(kept)
    raw = kept.connection
    raw.autocommit = False  # what an interrupted atomic block leaves behind
    with pytest.raises(psycopg.errors.DivisionByZero), raw.cursor() as cursor:
        cursor.execute("SELECT 1 / 0")
    assert kept.is_usable() is False
    raw.rollback()
    raw.autocommit = True
    assert kept.is_usable() is True
    assert _backend_pid(kept) == pid
