"""Every Celery task can be queued: Celery refuses (`ValueError` in `apply_async`) a task whose
soft time limit, its own or the global default, is above its hard limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from django.utils import timezone

from apps.trading.tasks import order_reconcile_task
from k2.celery import app


def test_every_task_soft_limit_is_within_its_hard_limit() -> None:
    app.loader.import_default_modules()
    ours = {name: task for name, task in app.tasks.items() if name.startswith(("apps.", "k2."))}
    assert ours
    for name, task in ours.items():
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        if hard and soft:
            assert soft < hard, f"{name}: soft limit {soft}s is not below the hard limit {hard}s"


def _worker_backends(cursor: Any, dbname: str) -> dict[int, Any]:
    """The test database's other PostgreSQL backends (the worker's): pid → last query start."""
    cursor.execute(
        "SELECT pid, query_start FROM pg_stat_activity"
        " WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        [dbname],
    )
    return dict(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_the_worker_keeps_its_database_connection_between_tasks() -> None:
    # The Procfile's worker (DATABASE_CONN_MAX_AGE=600), on a queue of this test's own. Celery's
    # Django fixup alone closed the connection around every task: a new one (and a new server
    # process) for each; K2 closes only what Django would between requests.
    db = connection.settings_dict
    url = (
        f"postgres://{quote(db['USER'])}:{quote(db['PASSWORD'] or '')}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    )
    queue = f"test-{uuid.uuid4().hex}"
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_CONN_MAX_AGE": "600", "DATABASE_POOL_MAX_SIZE": "0"}
    cmd = [sys.executable, "-m", "celery", "-A", "k2", "worker", "--concurrency", "1", "-Q", queue]
    cmd += ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "WARNING"]
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    used: list[int] = []
    try:
        with connection.cursor() as cursor:
            for _ in range(6):
                sent = timezone.now()
                order_reconcile_task.apply_async((str(uuid.uuid4()),), queue=queue)  # one query, no order
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and worker.poll() is None:
                    ran = [
                        pid for pid, at in _worker_backends(cursor, db["NAME"]).items() if at and at >= sent
                    ]
                    if ran:
                        used.extend(ran)
                        break
                    time.sleep(0.02)
                else:
                    # (a connection opened and closed for the task is gone before it is seen)
                    pytest.fail("no kept worker connection ran the task within 30 s")
    finally:
        worker.terminate()
        worker.wait(30)
    assert len(used) == 6
    assert len(set(used)) == 1  # six tasks, one connection
