"""Crypto.com adapter -> simulator: order round trips (place+cancel) p50/p99 and stream throughput."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from apps.exchanges.adapters.base import (
    Credentials,
    EventStream,
    ExchangeAdapter,
    MarketChannel,
    MarketSubscription,
    OrderRequest,
    OrderType,
    Side,
)
from apps.exchanges.adapters.cryptocom import (
    CryptocomAdapter,
    CryptocomSettings,
    RestSettings,
    StreamSettings,
)
from apps.exchanges.simulators.harness import SimulatorProcess
from bench.trading import percentile

INSTRUMENTS = ("BTC-USD", "ETH-USD", "SOL-USD")


@dataclass
class Result:
    name: str
    count: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def print_table(results: list[Result]) -> None:
    header = (
        f"{'benchmark':34} {'n':>7} {'seconds':>8} {'per s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        latencies = " ".join(_ms(v) for v in (r.p50_ms, r.p99_ms, r.max_ms))
        print(f"{r.name:34} {r.count:7d} {r.seconds:8.2f} {r.rate:10.1f} {latencies}")


def _ms(value: float | None) -> str:
    return f"{value:8.2f}" if value is not None else f"{'-':>8}"


async def _redis():
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    import redis.asyncio as redis

    client = redis.Redis.from_url(url)
    try:
        await asyncio.wait_for(client.ping(), 2)
    except Exception:
        await client.aclose()
        return None
    return client


@asynccontextmanager
async def simulator_account(venue: str, tick: float) -> AsyncIterator[tuple[str, dict[str, Any], Any]]:
    """The venue's simulator in its own process (as in `make run`, so it does not share our GIL),
    a fresh account on it, and the devstack's Redis (None without one): (base URL, account,
    redis). The simulator is stopped and Redis closed on the way out."""
    with SimulatorProcess(venue, "--tick-interval", str(tick), "--no-rate-limits") as sim:
        redis = await _redis()
        try:
            account = httpx.post(f"{sim.base_url}/_sim/accounts", json={}, timeout=5).json()
            yield sim.base_url, account, redis
        finally:
            if redis is not None:
                await redis.aclose()


async def time_place_cancel(
    adapter: ExchangeAdapter, request: Callable[[], OrderRequest], n: int, name: str
) -> Result:
    """`n` sequential place + cancel pairs of `request()`; the latency of each pair."""
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(n):
        order = request()
        t0 = time.perf_counter()
        ack = await adapter.place_order(order)
        await adapter.cancel_order(venue_order_id=ack.venue_order_id)
        samples.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    return Result(name, n, elapsed, percentile(samples, 0.5), percentile(samples, 0.99), max(samples))


async def count_events(stream: EventStream[Any], seconds: float) -> tuple[int, float]:
    """Once `stream` has connected (its first event, within 10 s), the events it yields in the
    next `seconds`: (count, seconds measured)."""
    count = 0
    async with stream:
        events = aiter(stream)
        await asyncio.wait_for(anext(events), 10)  # connected
        started = time.perf_counter()
        deadline = started + seconds
        while (now := time.perf_counter()) < deadline:
            try:
                await asyncio.wait_for(anext(events), max(0.001, deadline - now))
            except TimeoutError:
                break
            count += 1
        return count, time.perf_counter() - started


def bench_main(
    prog: str,
    description: str | None,
    run: Callable[[argparse.Namespace], Awaitable[list[Result]]],
    argv: list[str],
) -> int:
    """The exchange benches' command line: parse, run (bounded at 120 s), print the table."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--orders", type=int, default=300, help="place+cancel pairs (default 300)")
    parser.add_argument("--seconds", type=float, default=3.0, help="stream measuring window (default 3)")
    parser.add_argument("--tick", type=float, default=0.05, help="simulator market tick in s (default 0.05)")
    args = parser.parse_args(argv)
    args.orders = max(1, min(args.orders, 10_000))
    args.seconds = max(0.5, min(args.seconds, 60))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")
    results = asyncio.run(asyncio.wait_for(run(args), timeout=120))
    print_table(results)
    return 0


async def order_round_trips(
    base_url: str, creds: Credentials, n: int, limited: bool, redis: object
) -> Result:
    """Sequential place + cancel of a resting limit order; latency of the pair."""
    settings = CryptocomSettings(rest=RestSettings(rate_limits=limited))
    name = "order place+cancel" + (" (rate-limited)" if limited else "")
    async with CryptocomAdapter(
        credentials=creds,
        base_url=f"{base_url}/exchange/v1",
        settings=settings,
        redis=redis if limited else None,
    ) as adapter:
        bid = (await adapter.get_ticker("BTC-USD")).bid or Decimal(1)
        price = (bid * Decimal("0.8")).quantize(Decimal("0.01"))

        def request() -> OrderRequest:
            return OrderRequest(
                "BTC-USD", Side.BUY, OrderType.LIMIT, Decimal("0.001"), uuid.uuid4().hex[:24], price=price
            )

        return await time_place_cancel(adapter, request, n, name)


async def stream_throughput(base_url: str, seconds: float) -> Result:
    """All market channels of three instruments on one socket; normalised events per second."""
    subs = [MarketSubscription(ch, i, depth=50, timeframe="1m") for i in INSTRUMENTS for ch in MarketChannel]
    settings = CryptocomSettings(stream=StreamSettings(connect_delay=0))
    async with CryptocomAdapter(base_url=f"{base_url}/exchange/v1", settings=settings) as adapter:
        count, elapsed = await count_events(adapter.market_stream(subs), seconds)
    return Result("market stream events", count, elapsed)


async def run(args: argparse.Namespace) -> list[Result]:
    async with simulator_account("cryptocom", args.tick) as (base_url, account, redis):
        creds = Credentials(account["api_key"], account["api_secret"])
        results = [await order_round_trips(base_url, creds, args.orders, False, None)]
        if redis is not None:
            results.append(await order_round_trips(base_url, creds, args.orders, True, redis))
        results.append(await stream_throughput(base_url, args.seconds))
    return results


def main(argv: list[str]) -> int:
    return bench_main("python -m bench exchanges_cryptocom", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
