"""The Redis token bucket: atomic reservations shared by every client of one Redis."""

from __future__ import annotations

import time

import pytest

from apps.exchanges.adapters.errors import RateLimited
from apps.exchanges.adapters.ratelimit import RateLimiter, RateRule, credential_fingerprint

ORDERS = RateRule.per(5, 1.0)


def limiter(
    redis, *, max_wait: float = 0.0, credential: str = "key-1", orders: RateRule = ORDERS
) -> RateLimiter:
    rules = {"orders": orders, "global": RateRule.per(8, 1.0)}
    return RateLimiter(
        venue="testvenue",
        credential=credential,
        rules=rules,
        redis=redis,
        max_wait=max_wait,
        global_group="global",
    )


async def test_bucket_state_lives_in_redis_not_in_the_process(aioredis, settings):
    import redis.asyncio as redis

    other_connection = redis.Redis.from_url(settings.REDIS_URL)
    # One token back every 2 s: the six reservations fall well inside one refill even on a loaded
    # host (at 5/s a token came back every 200 ms, and in one full run the sixth one passed).
    slow = RateRule.per(5, 10.0)
    try:
        a, b = limiter(aioredis, orders=slow), limiter(other_connection, orders=slow)
        for _ in range(3):
            await a.acquire("orders")
        for _ in range(2):
            await b.acquire("orders")
        with pytest.raises(RateLimited) as info:
            await b.acquire("orders")
        assert info.value.retry_after is not None
        assert 0 < info.value.retry_after <= 2.0
        # an in-memory limiter knows nothing of Redis's bucket
        await limiter(None, orders=slow).acquire("orders")
        other_key = limiter(other_connection, credential="key-2", orders=slow)
        await other_key.acquire("orders")  # another credential has its own bucket
    finally:
        await other_connection.aclose()
    keys = {k.decode() for k in await aioredis.keys("k2:ratelimit:testvenue:*")}
    fp = credential_fingerprint("key-1")
    assert f"k2:ratelimit:testvenue:{fp}:orders" in keys
    assert not any("key-1" in k for k in keys)


async def test_waits_within_bound_then_refuses(aioredis):
    patient = limiter(aioredis, max_wait=1.0)
    started = time.monotonic()
    waits = [await patient.acquire("orders") for _ in range(7)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert time.monotonic() - started >= 0.35  # 2 more tokens at 5/s
    impatient = limiter(aioredis, max_wait=0.05)
    with pytest.raises(RateLimited):
        await impatient.acquire("orders")


async def test_global_group_is_charged_too(aioredis):
    lim = RateLimiter(
        venue="tv",
        credential="k",
        redis=aioredis,
        max_wait=0,
        global_group="global",
        rules={"a": RateRule.per(10, 1.0), "b": RateRule.per(10, 1.0), "global": RateRule.per(4, 1.0)},
    )
    for group in ("a", "b", "a", "b"):
        await lim.acquire(group)
    with pytest.raises(RateLimited):
        await lim.acquire("a")


async def test_penalize_blocks_everyone_sharing_the_bucket(aioredis):
    a, b = limiter(aioredis, max_wait=0.05), limiter(aioredis, max_wait=0.05)
    await a.penalize("orders", 0.5)
    with pytest.raises(RateLimited):
        await b.acquire("orders")
