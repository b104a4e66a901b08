"""Suite-wide fixtures. The suite runs against the real PostgreSQL and Redis that `make test`
starts (k2.devstack); nothing here mocks them."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("K2_ENV", "test")


@pytest.fixture(autouse=True)
def _clean_redis(settings):  # noqa: ANN001
    """Each test starts with empty Redis databases (cache, rate limits, channel layer)."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.flushall()
    finally:
        client.close()
    yield


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()
