"""Kalshi adapter -> simulator: order round trips (place+cancel) p50/p99 and stream throughput."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx

from apps.exchanges.adapters.base import (
    Credentials,
    MarketChannel,
    MarketSubscription,
    OrderRequest,
    OrderType,
    Outcome,
    Side,
)
from apps.exchanges.adapters.kalshi import KalshiAdapter, KalshiSettings, RestSettings, StreamSettings
from apps.exchanges.simulators.harness import SimulatorProcess
from bench.exchanges_cryptocom import Result, _redis, percentile, print_table


async def order_round_trips(base_url: str, creds: Credentials, n: int, limited: bool, redis: Any) -> Result:
    """Sequential place + cancel of a resting YES bid (V2 endpoints); latency of the pair."""
    settings = KalshiSettings(rest=RestSettings(rate_limits=limited))
    name = "order place+cancel" + (" (basic tier limits)" if limited else "")
    async with KalshiAdapter(
        credentials=creds,
        base_url=f"{base_url}/trade-api/v2",
        settings=settings,
        redis=redis if limited else None,
    ) as adapter:
        ticker = (await adapter.get_instruments())[0].symbol
        samples: list[float] = []
        started = time.perf_counter()
        for _ in range(n):
            request = OrderRequest(
                ticker, Side.BUY, OrderType.LIMIT, Decimal(1), uuid.uuid4().hex, price=Decimal("0.01"),
                outcome=Outcome.YES,
            )  # fmt: skip
            t0 = time.perf_counter()
            ack = await adapter.place_order(request)
            await adapter.cancel_order(venue_order_id=ack.venue_order_id)
            samples.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
    return Result(name, n, elapsed, percentile(samples, 0.5), percentile(samples, 0.99), max(samples))


async def stream_throughput(base_url: str, creds: Credentials, seconds: float) -> Result:
    """Books, tickers and trades of every market on one signed socket; normalised events per second."""
    settings = KalshiSettings(stream=StreamSettings())
    count = 0
    async with KalshiAdapter(
        credentials=creds, base_url=f"{base_url}/trade-api/v2", settings=settings
    ) as adapter:
        tickers = [i.symbol for i in await adapter.get_instruments()]
        channels = (MarketChannel.BOOK, MarketChannel.TICKER, MarketChannel.TRADES)
        subs = [MarketSubscription(ch, t) for t in tickers for ch in channels]
        stream = adapter.market_stream(subs)
        async with stream:
            events = aiter(stream)
            await asyncio.wait_for(anext(events), 10)
            started = time.perf_counter()
            deadline = started + seconds
            while (now := time.perf_counter()) < deadline:
                try:
                    await asyncio.wait_for(anext(events), max(0.001, deadline - now))
                except TimeoutError:
                    break
                count += 1
            elapsed = time.perf_counter() - started
    return Result(f"market stream events ({len(tickers)} markets)", count, elapsed)


async def run(args: argparse.Namespace) -> list[Result]:
    # The simulator in its own process (as in `make run`), so it does not share our GIL.
    with SimulatorProcess("kalshi", "--tick-interval", str(args.tick), "--no-rate-limits") as sim:
        base_url = sim.base_url
        redis = await _redis()
        try:
            account = httpx.post(f"{base_url}/_sim/accounts", json={}, timeout=5).json()
            creds = Credentials(account["api_key_id"], account["private_key_pem"])
            results = [await order_round_trips(base_url, creds, args.orders, False, None)]
            if redis is not None:
                limited = min(args.orders, 60)  # basic tier: 100 write tokens/s, 12 per place+cancel
                results.append(await order_round_trips(base_url, creds, limited, True, redis))
            results.append(await stream_throughput(base_url, creds, args.seconds))
        finally:
            if redis is not None:
                await redis.aclose()
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench exchanges_kalshi", description=__doc__)
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
