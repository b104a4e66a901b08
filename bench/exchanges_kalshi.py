"""Kalshi adapter -> simulator: order round trips (place+cancel) p50/p99 and stream throughput."""

from __future__ import annotations

import argparse
import sys
import uuid
from decimal import Decimal
from typing import Any

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
from bench.exchanges_cryptocom import Result, bench_main, count_events, simulator_account, time_place_cancel


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

        def request() -> OrderRequest:
            return OrderRequest(
                ticker, Side.BUY, OrderType.LIMIT, Decimal(1), uuid.uuid4().hex, price=Decimal("0.01"),
                outcome=Outcome.YES,
            )  # fmt: skip

        return await time_place_cancel(adapter, request, n, name)


async def stream_throughput(base_url: str, creds: Credentials, seconds: float) -> Result:
    """Books, tickers and trades of every market on one signed socket; normalised events per second."""
    settings = KalshiSettings(stream=StreamSettings())
    async with KalshiAdapter(
        credentials=creds, base_url=f"{base_url}/trade-api/v2", settings=settings
    ) as adapter:
        tickers = [i.symbol for i in await adapter.get_instruments()]
        channels = (MarketChannel.BOOK, MarketChannel.TICKER, MarketChannel.TRADES)
        subs = [MarketSubscription(ch, t) for t in tickers for ch in channels]
        count, elapsed = await count_events(adapter.market_stream(subs), seconds)
    return Result(f"market stream events ({len(tickers)} markets)", count, elapsed)


async def run(args: argparse.Namespace) -> list[Result]:
    async with simulator_account("kalshi", args.tick) as (base_url, account, redis):
        creds = Credentials(account["api_key_id"], account["private_key_pem"])
        results = [await order_round_trips(base_url, creds, args.orders, False, None)]
        if redis is not None:
            limited = min(args.orders, 60)  # basic tier: 100 write tokens/s, 12 per place+cancel
            results.append(await order_round_trips(base_url, creds, limited, True, redis))
        results.append(await stream_throughput(base_url, creds, args.seconds))
    return results


def main(argv: list[str]) -> int:
    return bench_main("python -m bench exchanges_kalshi", __doc__, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
