"""Crypto.com adapter -> simulator: order round trips (place+cancel) p50/p99 and stream throughput."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import httpx

from apps.exchanges.adapters.base import (
    Credentials,
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


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


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
        samples: list[float] = []
        started = time.perf_counter()
        for _ in range(n):
            request = OrderRequest(
                "BTC-USD", Side.BUY, OrderType.LIMIT, Decimal("0.001"), uuid.uuid4().hex[:24], price=price
            )
            t0 = time.perf_counter()
            ack = await adapter.place_order(request)
            await adapter.cancel_order(venue_order_id=ack.venue_order_id)
            samples.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
    return Result(name, n, elapsed, percentile(samples, 0.5), percentile(samples, 0.99), max(samples))


async def stream_throughput(base_url: str, seconds: float) -> Result:
    """All market channels of three instruments on one socket; normalised events per second."""
    subs = [MarketSubscription(ch, i, depth=50, timeframe="1m") for i in INSTRUMENTS for ch in MarketChannel]
    settings = CryptocomSettings(stream=StreamSettings(connect_delay=0))
    count = 0
    async with CryptocomAdapter(base_url=f"{base_url}/exchange/v1", settings=settings) as adapter:
        stream = adapter.market_stream(subs)
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
            elapsed = time.perf_counter() - started
    return Result("market stream events", count, elapsed)


async def run(args: argparse.Namespace) -> list[Result]:
    # The simulator in its own process (as in `make run`), so it does not share our GIL.
    with SimulatorProcess("cryptocom", "--tick-interval", str(args.tick), "--no-rate-limits") as sim:
        base_url = sim.base_url
        redis = await _redis()
        try:
            account = httpx.post(f"{base_url}/_sim/accounts", json={}, timeout=5).json()
            creds = Credentials(account["api_key"], account["api_secret"])
            results = [await order_round_trips(base_url, creds, args.orders, False, None)]
            if redis is not None:
                results.append(await order_round_trips(base_url, creds, args.orders, True, redis))
            results.append(await stream_throughput(base_url, args.seconds))
        finally:
            if redis is not None:
                await redis.aclose()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench exchanges_cryptocom", description=__doc__)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
