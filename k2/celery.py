"""The Celery application (worker and beat). Tasks are discovered in each app's tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")

app = Celery("k2")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
