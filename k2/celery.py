"""The Celery application (worker and beat). Tasks are discovered in each app's tasks.py."""

import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")

app = Celery("k2")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _connections_checked(task: Any = None, **_kwargs: Any) -> None:
    """Between tasks, as Django between requests: a connection past `CONN_MAX_AGE`, or one an
    error left unusable, is closed; a kept one is health-checked before its next query (k2.db:
    on its socket, no round trip). Not for an eager task, which runs inside its caller's
    transaction (as Celery's own fixup)."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
