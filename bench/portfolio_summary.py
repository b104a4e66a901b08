"""GET /v1/portfolio/summary latency with both venues answering after injected delays: it must
track the slower venue, not the sum of both, and stay within the per-venue bound.

    python -m k2.devstack run --durable -- python -m bench portfolio_summary [--requests 30] [--bound 1.0]

Everything is real and local: the Crypto.com and Kalshi simulators each in their own process, K2's
web process (uvicorn) in another, PostgreSQL and Redis from the devstack. One user holds both
venues (a BTC-USD buy and a Kalshi YES buy placed through K2), the portfolio cache is off
(`K2_PORTFOLIO_CACHE_SECONDS=0`) so every request reads both venues, and each simulator's latency
fault delays every one of its answers by the scenario's milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from apps.exchanges.simulators.harness import SimulatorProcess
from bench.trading import percentile, start_web

PASSWORD = "bench-Passw0rd!-portfolio"
SCENARIOS: list[tuple[str, int, int]] = [
    ("no delay", 0, 0),
    ("crypto.com 300 ms", 300, 0),
    ("kalshi 300 ms", 0, 300),
    ("crypto.com 200, kalshi 300", 200, 300),
    ("both 300 ms", 300, 300),
    ("crypto.com 300, kalshi 3000 (> bound)", 300, 3000),
]


@dataclass
class Row:
    name: str
    cryptocom_ms: int
    kalshi_ms: int
    samples: list[float]
    statuses: dict[str, str]

    def pct(self, q: float) -> float:
        return percentile(self.samples, q)


def prepare(cc: str, ks: str) -> dict[str, Any]:
    """A user with both venues linked and generous risk limits; returns its token and accounts."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from django.utils import timezone

    from apps.accounts.models import User
    from apps.accounts.services import ClientInfo, auth_login
    from apps.exchanges.models import ExchangeLink
    from apps.marketdata.services import instruments_sync
    from apps.trading.models import RiskLimit

    instruments_sync(venue="cryptocom")
    instruments_sync(venue="kalshi")
    cc_account = httpx.post(f"{cc}/_sim/accounts", json={}, timeout=5).json()
    ks_account = httpx.post(f"{ks}/_sim/accounts", json={}, timeout=5).json()
    user = User.objects.create_user(f"bench-portfolio-{uuid.uuid4().hex[:6]}@example.com", PASSWORD)
    user.email_verified = True
    user.save(update_fields=["email_verified"])
    now = timezone.now()
    ExchangeLink.objects.create(
        user=user,
        exchange="cryptocom",
        access_token=cc_account["api_key"],
        access_secret=cc_account["api_secret"],
        key_hint=cc_account["api_key"][-4:],
        linked_at=now,
    )
    ExchangeLink.objects.create(
        user=user,
        exchange="kalshi",
        access_token=ks_account["api_key_id"],
        access_secret=ks_account["private_key_pem"],
        key_hint=ks_account["api_key_id"][-4:],
        linked_at=now,
    )
    RiskLimit.objects.create(
        user=user, max_orders_per_second=1000, max_orders_per_minute=10_000, note="bench"
    )
    login = auth_login(email=user.email, password=PASSWORD, client=ClientInfo(ip="127.0.0.1"))
    assert login.tokens is not None
    return {"token": login.tokens.access_token, "user_id": user.pk}


def trade(web: str, token: str, ks: str) -> None:
    """A BTC-USD market buy and a Kalshi YES buy at the ask, through K2; fills recorded."""
    from apps.exchanges.calls import run_venue_call
    from apps.trading.models import Order
    from apps.trading.services import order_reconcile

    tickers = httpx.get(f"{ks}/trade-api/v2/markets", params={"limit": 50}, timeout=5).json()["markets"]
    ticker = next(m["ticker"] for m in tickers if m["ticker"].startswith("KXBTC-"))
    ask = run_venue_call("kalshi", lambda a: a.get_ticker(ticker)).ask or Decimal("0.5")
    headers = {"Authorization": f"Bearer {token}"}
    bodies = [
        {"instrument": "BTC-USD", "side": "buy", "order_type": "market", "quantity": "0.01"},
        {
            "instrument": ticker,
            "side": "buy",
            "outcome": "yes",
            "order_type": "limit",
            "quantity": "10",
            "price": str(ask),
        },
    ]
    for body in bodies:
        response = httpx.post(f"{web}/v1/orders", json=body, headers=headers, timeout=30)
        if response.status_code != 201:
            raise RuntimeError(f"order refused: {response.status_code} {response.text[:300]}")
        order_reconcile(order_id=response.json()["data"]["id"])
    assert Order.objects.filter(filled_quantity__gt=0).count() == 2, "both orders should have filled"


async def scenario(
    http: httpx.AsyncClient, sims: dict[str, str], name: str, cc_ms: int, ks_ms: int, n: int
) -> Row:
    for venue, delay in (("cryptocom", cc_ms), ("kalshi", ks_ms)):
        await http.delete(f"{sims[venue]}/_sim/faults")
        if delay:
            body = {"kind": "latency", "count": 100_000, "latency_ms": delay}
            (await http.post(f"{sims[venue]}/_sim/faults", json=body)).raise_for_status()
    samples: list[float] = []
    statuses: dict[str, str] = {}
    for i in range(n + 2):
        t0 = time.perf_counter()
        response = await http.get("/v1/portfolio/summary")
        elapsed = (time.perf_counter() - t0) * 1000
        response.raise_for_status()
        if i >= 2:  # two warm-up reads
            samples.append(elapsed)
        statuses = {v["venue"]: v["status"] for v in response.json()["data"]["venues"]}
    return Row(name, cc_ms, ks_ms, samples, statuses)


async def run(args: argparse.Namespace) -> list[Row]:
    venues = ("cryptocom", "kalshi")
    simulators = [SimulatorProcess(venue, "--tick-interval", "1.0", "--no-rate-limits") for venue in venues]
    web_proc = None
    try:
        cc, ks = (simulator.start().base_url for simulator in simulators)
        ws_cc, ws_ks = cc.replace("http", "ws"), ks.replace("http", "ws")
        os.environ.update(
            {
                "K2_CRYPTOCOM_REST_URL": f"{cc}/exchange/v1",
                "K2_CRYPTOCOM_MARKET_WS_URL": f"{ws_cc}/exchange/v1/market",
                "K2_CRYPTOCOM_USER_WS_URL": f"{ws_cc}/exchange/v1/user",
                "K2_KALSHI_REST_URL": f"{ks}/trade-api/v2",
                "K2_KALSHI_WS_URL": f"{ws_ks}/trade-api/ws/v2",
                "K2_PORTFOLIO_CACHE_SECONDS": "0",
                "K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS": str(args.bound),
                "API_THROTTLE_USER": "1000000/min",
            }
        )
        user = await asyncio.to_thread(prepare, cc, ks)
        web_proc, web = start_web(dict(os.environ), 2)
        await asyncio.to_thread(trade, web, user["token"], ks)
        headers = {"Authorization": f"Bearer {user['token']}"}
        sims = {"cryptocom": cc, "kalshi": ks}
        rows = []
        async with httpx.AsyncClient(base_url=web, headers=headers, timeout=30) as http:
            for name, cc_ms, ks_ms in SCENARIOS:
                rows.append(await scenario(http, sims, name, cc_ms, ks_ms, args.requests))
        return rows
    finally:
        if web_proc is not None:
            web_proc.terminate()
            web_proc.wait(10)
        for simulator in simulators:
            simulator.stop()


def print_table(rows: list[Row], bound: float) -> None:
    header = (
        f"{'scenario':40} {'slower':>7} {'sum':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  venue status"
    )
    print(header)
    print("-" * len(header))
    base = rows[0].pct(0.5) if rows else 0.0
    for r in rows:
        slower = min(max(r.cryptocom_ms, r.kalshi_ms), bound * 1000)
        total = r.cryptocom_ms + r.kalshi_ms
        status = ", ".join(f"{v}={s}" for v, s in sorted(r.statuses.items()))
        print(
            f"{r.name:40} {slower:7.0f} {total:6d} {r.pct(0.5):8.1f} {r.pct(0.99):8.1f} "
            f"{max(r.samples):8.1f}  {status}"
        )
    print(
        f"\nbound per venue: {bound * 1000:.0f} ms; 'slower' = the slower venue's delay "
        f"(capped at the bound), 'sum' = both delays added.\n"
        f"Expect p50 ~ no-delay p50 ({base:.0f} ms) + 'slower', never + 'sum'."
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench portfolio_summary", description=__doc__)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per scenario (default 30)")
    parser.add_argument(
        "--bound", type=float, default=1.0, help="K2_PORTFOLIO_VENUE_TIMEOUT_SECONDS (default 1)"
    )
    args = parser.parse_args(argv)
    args.requests = max(5, min(args.requests, 500))
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        print(
            "run under the devstack: python -m k2.devstack run --durable -- python -m bench portfolio_summary"
        )
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")
    rows = asyncio.run(asyncio.wait_for(run(args), timeout=600))
    print_table(rows, args.bound)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
