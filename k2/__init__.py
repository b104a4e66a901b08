"""K2 platform package: settings, urls, ASGI, Celery, and the cross-cutting pieces."""

from k2 import aio

aio.install()  # first: every process imports this package before it starts an event loop

from k2.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
