"""A cancelled task stops, even when its cancellation coincides with an awaited result.

Python 3.11's `asyncio.wait_for` dropped such a cancellation, and redis-py 8 sends every command
under `wait_for`: the market-data feed sometimes would not stop (a test's teardown hung for two
minutes in CI). `k2.aio` installs 3.12's `wait_for` when the `k2` package is imported.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio as aioredis
from django.conf import settings


async def test_wait_for_keeps_a_cancellation_that_coincides_with_the_result() -> None:
    inner: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def caller() -> str:
        return await asyncio.wait_for(inner, 5)

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the caller now waits on `inner`
    inner.set_result("done")
    task.cancel()  # in the same loop iteration: the result and the cancellation together
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_wait_for_still_times_out_and_returns() -> None:
    assert await asyncio.wait_for(asyncio.sleep(0, "ok"), 1) == "ok"
    assert await asyncio.wait_for(asyncio.sleep(0, "none"), None) == "none"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(5), 0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(5), 0)


async def test_a_task_cancelled_while_it_talks_to_redis_stops() -> None:
    client = aioredis.Redis.from_url(settings.REDIS_URL)  # redis-py's defaults, socket timeout on
    script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1], 'PX', 1000)")

    async def busy() -> None:
        while True:
            await asyncio.sleep(0)
            await script(keys=["k2:test:aio"], args=["x"])

    rng = random.Random(7)  # spreads the cancel points; fixed seed
    still_running = 0
    deadline = time.monotonic() + 30
    try:
        for _ in range(40):
            if time.monotonic() > deadline:
                break
            task = asyncio.create_task(busy())
            await asyncio.sleep(rng.uniform(0, 0.003))
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=1)
            if not done:
                still_running += 1
                task.cancel()  # a second request ends it; the first was lost
                await asyncio.wait({task}, timeout=1)
        assert still_running == 0, f"{still_running} of 40 cancelled tasks kept running"
    finally:
        await client.delete("k2:test:aio")
        await client.aclose()
