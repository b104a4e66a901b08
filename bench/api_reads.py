"""Read endpoints through K2's web process: latency (p50/p99) and web CPU per request.

    python -m k2.devstack run --durable -- python -m bench api_reads [--requests 300] [--orders 40]

A user with a linked Crypto.com simulator account places `--orders` resting limit orders and two
market orders through K2 (untimed; the market orders' fills are recorded by reconciliation, as
the worker would). Then one client reads each endpoint `--requests` times, one request after
another: the health check (the web stack's floor), one order, a page of the order list, one
order's executions and a page of the trades. The web process runs as the Procfile runs it, with
one worker, so its CPU time is the requests' alone; each endpoint is warmed first (untimed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass

import httpx

from apps.exchanges.simulators.harness import SimulatorProcess
from bench.trading import cpu_seconds, percentile, prepare, price_below_market, run_measured, start_web
from k2.devstack import procfile_env

WARM_UP = 20


@dataclass
class Row:
    name: str
    samples: list[float]
    cpu_ms: float  # the web process's CPU time per request

    def pct(self, q: float) -> float:
        return percentile(self.samples, q)


async def place_orders(http: httpx.AsyncClient, sim: str, orders: int) -> list[str]:
    """`orders` resting limit buys and two market buys through K2; returns the market orders' ids."""
    price = str(await price_below_market(sim))

    async def place(**body: str) -> str:
        body = {"instrument": "BTC-USD", "side": "buy", "quantity": "0.001", **body}
        response = await http.post("/v1/orders", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"K2 answered {response.status_code}: {response.text[:300]}")
        return str(response.json()["data"]["id"])

    for _ in range(orders):
        await place(order_type="limit", price=price)
    return [await place(order_type="market") for _ in range(2)]


def record_fills(order_ids: list[str]) -> None:
    from apps.trading.services import order_reconcile

    for order_id in order_ids:
        order_reconcile(order_id=order_id)


async def measure(http: httpx.AsyncClient, name: str, path: str, requests: int, web_pid: int) -> Row:
    for _ in range(WARM_UP):
        (await http.get(path)).raise_for_status()
    samples = []
    cpu_before = cpu_seconds(web_pid)
    for _ in range(requests):
        started = time.perf_counter()
        response = await http.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return Row(name, samples, (cpu_seconds(web_pid) - cpu_before) / requests * 1000)


async def run(args: argparse.Namespace) -> list[Row]:
    with SimulatorProcess("cryptocom", "--tick-interval", "1.0", "--no-rate-limits") as simulator:
        sim = simulator.base_url
        os.environ["K2_CRYPTOCOM_REST_URL"] = f"{sim}/exchange/v1"
        os.environ["API_THROTTLE_USER"] = "1000000/min"
        (trader,) = await asyncio.to_thread(prepare, sim, 1)
        web_proc, web = start_web({**procfile_env("web"), **os.environ}, 1)
        try:
            headers = {"Authorization": f"Bearer {trader['token']}"}
            async with httpx.AsyncClient(base_url=web, headers=headers, timeout=30) as http:
                filled = await place_orders(http, sim, args.orders)
                await asyncio.to_thread(record_fills, filled)
                trades = (await http.get("/v1/trades")).json()["data"]
                if len(trades) < len(filled):
                    raise RuntimeError(f"{len(trades)} trades recorded for {len(filled)} market orders")
                order = filled[0]
                endpoints = [
                    ("GET /healthz", "/healthz"),
                    ("GET /v1/orders/{id}", f"/v1/orders/{order}"),
                    ("GET /v1/orders?limit=20", "/v1/orders?limit=20"),
                    ("GET /v1/orders/{id}/executions", f"/v1/orders/{order}/executions"),
                    ("GET /v1/trades?limit=20", "/v1/trades?limit=20"),
                ]
                return [
                    await measure(http, name, path, args.requests, web_proc.pid) for name, path in endpoints
                ]
        finally:
            web_proc.terminate()
            web_proc.wait(10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench api_reads", description=__doc__)
    parser.add_argument("--requests", type=int, default=300, help="timed requests per endpoint (default 300)")
    parser.add_argument("--orders", type=int, default=40, help="resting orders placed first (default 40)")
    args = parser.parse_args(argv)
    args.requests = max(10, min(args.requests, 5000))
    args.orders = max(1, min(args.orders, 190))  # the simulator rests 200 orders per account and instrument
    measured = run_measured("api_reads", run(args))
    if measured is None:
        return 2
    rows, host_speed = measured
    header = f"{'endpoint':32} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'web CPU ms':>11}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:32} {len(row.samples):5d} {row.pct(0.5):8.2f} {row.pct(0.99):8.2f} "
            f"{max(row.samples):8.2f} {row.cpu_ms:11.2f}"
        )
    print("\nweb CPU: the web process's CPU time (user + system) per request, one worker")
    print(host_speed)
    return 0
