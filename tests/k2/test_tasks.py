"""Every Celery task can be queued: Celery refuses (`ValueError` in `apply_async`) a task whose
soft time limit, its own or the global default, is above its hard limit."""

from __future__ import annotations

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
