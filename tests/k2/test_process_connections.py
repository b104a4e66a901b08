"""The Procfile's long-running processes without a connection pool (the Celery worker, the
market-data feed) keep their PostgreSQL connection between tasks and between writes
(`DATABASE_CONN_MAX_AGE` in their Procfile line). With Django's default of 0 the worker opened a
connection, and the server forked a backend process for it, for every task, and the feed for
every batch of trades or candles (several a second). Each process runs for real here, against
this test's database. (The user streams, the third such process, run in-process with the same
setting: tests/trading/test_updates.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import datetime
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from apps.trading.tasks import order_reconcile_task
from tests.exchanges.conftest import SimHandle, cryptocom_sim, cryptocom_sim_thread  # noqa: F401 - fixtures
from tests.procfile import ROOT, procfile_conn_max_age


def process_env(process: str, **extra: str) -> dict[str, str]:
    """This environment pointed at the test database, as the Procfile runs `process`."""
    db = connection.settings_dict
    password = quote(db["PASSWORD"] or "", safe="")
    url = f"postgres://{quote(db['USER'], safe='')}:{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DATABASE_POOL_MAX_SIZE": "0",
        "DATABASE_CONN_MAX_AGE": procfile_conn_max_age(process),
        **extra,
    }


def backends_used(after: datetime) -> set[int]:
    """The test database's other backends (the process's) that started a query after `after`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'"
            " AND pid <> pg_backend_pid() AND query_start >= %s",
            [connection.settings_dict["NAME"], after],
        )
        return {row[0] for row in cursor.fetchall()}


def backends_used_after(after: datetime, proc: subprocess.Popen[bytes], what: str) -> set[int]:
    """`backends_used(after)` once it names one, waiting at most 30 s; `what` says what failed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if found := backends_used(after):
            return found
        time.sleep(0.02)
    # (a connection opened and closed for each piece of work is gone before it is seen)
    pytest.fail(f"{what} within 30 s")


@pytest.mark.django_db(transaction=True)
def test_the_worker_keeps_its_database_connection_between_tasks() -> None:
    queue = f"test-{uuid.uuid4().hex}"  # this test's own
    cmd = [sys.executable, "-m", "celery", "-A", "k2", "worker", "--concurrency", "1", "-Q", queue]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
    worker = subprocess.Popen(
        cmd, env=process_env("worker"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    used: list[int] = []
    try:
        for _ in range(6):
            sent = timezone.now()
            order_reconcile_task.apply_async((str(uuid.uuid4()),), queue=queue)  # one query, no order
            used.extend(backends_used_after(sent, worker, "no kept worker connection ran the task"))
    finally:
        worker.terminate()
        worker.wait(30)
    assert len(used) == 6
    assert len(set(used)) == 1  # six tasks, one connection


@pytest.mark.django_db(transaction=True)
def test_the_feed_keeps_its_database_connection_between_writes(cryptocom_sim: SimHandle) -> None:  # noqa: F811
    ws = cryptocom_sim.base_url.replace("http://", "ws://")
    env = process_env(
        "feed",
        K2_CRYPTOCOM_REST_URL=cryptocom_sim.rest_url,
        K2_CRYPTOCOM_MARKET_WS_URL=f"{ws}/exchange/v1/market",
    )
    cmd = [sys.executable, "manage.py", "run_feed", "--venue", "cryptocom", "--stats-interval", "3600"]
    feed = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = timezone.now()
        first = backends_used_after(started, feed, "the feed wrote nothing")
        used: set[int] = set(first)
        writes = 0
        deadline = time.monotonic() + 30
        while writes < 5 and time.monotonic() < deadline:  # the simulator trades every 50 ms
            since = timezone.now()
            used |= backends_used_after(since, feed, "the feed stopped writing on a kept connection")
            writes += 1
    finally:
        feed.terminate()
        feed.wait(30)
    assert writes == 5
    assert len(used) == 1  # one connection for all of it
