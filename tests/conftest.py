"""Suite-wide fixtures. The suite runs against the real PostgreSQL and Redis that `make test`
starts (k2.devstack); nothing here mocks them."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("K2_ENV", "test")

# The Kalshi simulator's fixtures, for every directory that trades on it (registered here, once,
# so pytest rewrites their asserts before any test module imports them).
pytest_plugins = ["tests.exchanges.kalshi_fixtures"]


@pytest.fixture(autouse=True)
def _clean_redis(settings):
    """Each test starts with empty Redis databases (cache, rate limits, channel layer)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture(autouse=True)
def _no_email_in_flight(settings):
    """Account emails go out on background threads (`apps.accounts.emails`): none of another
    test's lands in this test's outbox, and none outlives this test (nor the settings it was
    sent with: this is torn down before `settings`)."""
    from apps.accounts import emails

    assert emails.wait_for_pending(), "account emails of an earlier test still pending"
    yield
    assert emails.wait_for_pending(), "account emails still pending at the end of the test"


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture(scope="session", autouse=True)
def _audit_tables_flushable_between_tests():
    """Django flushes tables with TRUNCATE after transactional tests; the audit guard refuses
    TRUNCATE (as it must). Test teardown alone runs the flush with triggers paused
    (session_replication_role, a superuser-only setting); tests themselves run with the guard on."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        with self.connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
        try:
            original(self, sql_list)
        finally:
            with self.connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = DEFAULT")

    DatabaseOperations.execute_sql_flush = execute_sql_flush  # type: ignore[method-assign]
    yield
    DatabaseOperations.execute_sql_flush = original  # type: ignore[method-assign]


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end the sessions other threads left open (the
    handler's and `sync_to_async`'s pooled threads keep their connections: Django closes only
    the main thread's), so the drop does not fail with "being accessed by other users"."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
