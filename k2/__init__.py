"""K2 platform package: settings, urls, ASGI, Celery, and the cross-cutting pieces."""

from k2.celery import app as celery_app

__all__ = ["celery_app"]
