"""Django's PostgreSQL backend, except how a pooled connection is checked before it is handed out.

With `CONN_HEALTH_CHECKS`, Django has its pool (psycopg_pool) check every connection it hands
out with an empty query: a round trip to the server for every request of the web process, the
largest share of a small request's database time. Here a pooled connection is checked without
one: one it was returned broken is never handed out (the pool discards those), and a connection
the server has since ended (a restart, `pg_terminate_backend`, an idle timeout) has something to
read on its socket (the server's error, or end of file), which a healthy idle connection never
has. Only then is the empty query sent; a connection that fails it is discarded and the next one
tried. This catches what the empty query caught: neither can tell a network path that went
silent from a slow server, and the pool's `max_lifetime` bounds how old a connection gets.

Settings (k2/settings.py): `ENGINE = "k2.db"`; with a pool, `CONN_HEALTH_CHECKS` is off (the
pool's own check would still send the query). Without one, Django's health checks apply, made
by the same check (`is_usable`): a process that keeps its connection between pieces of work
(the Celery worker, the feed and the user-stream follower, `DATABASE_CONN_MAX_AGE` in the
Procfile) has it checked before each one without a round trip.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool


def has_input(connection: psycopg.Connection[Any]) -> bool:
    """Something waits to be read on an idle connection's socket (without reading it)."""
    poller = select.poll()
    poller.register(connection.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def connection_usable(connection: psycopg.Connection[Any]) -> bool:
    """An idle connection can be used: open, and nothing from the server waiting on its socket
    (if something is, the empty query decides), and not inside a failed transaction. No round
    trip for a healthy connection."""
    if connection.closed or connection.info.transaction_status == TransactionStatus.INERROR:
        return False
    if not has_input(connection):
        return True
    try:
        ConnectionPool.check_connection(connection)  # the input may be a notice: ask the server
    except psycopg.Error:
        return False
    return True


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        """Django's health check of a kept connection (`CONN_HEALTH_CHECKS`, and after an error),
        which sends `SELECT 1`: here the socket decides, as for a pooled one."""
        return self.connection is not None and connection_usable(self.connection)

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        pool = self.pool  # type: ignore[attr-defined]  # (Django 5.1+; not in django-stubs yet)
        if not pool:
            return super().get_new_connection(conn_params)
        for _ in range(pool.max_size):  # every connection the pool holds may have been ended
            connection = super().get_new_connection(conn_params)
            if connection_usable(connection):
                return connection
            connection.close()
            pool.putconn(connection)  # closed: the pool drops it and opens another in its place
        return super().get_new_connection(conn_params)  # a new one, or the pool's own error
