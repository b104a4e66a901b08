"""Order placement through K2 (HTTP -> auth -> risk -> venue simulator -> response) vs the adapter
calling the same simulator directly, in the same run: p50/p99, sequential and concurrent.

    python -m k2.devstack run --durable -- python -m bench trading [--orders 200] [--clients 20] [--rate 20]

Everything is real and local: the Crypto.com simulator in its own process, K2's web process
(`python -m k2.serve`, as the Procfile runs it, one worker per core) in another, the market-data
feed in a third (as in production, the risk engine's reference price comes from it), PostgreSQL
and Redis from the devstack. The user-stream process does not run (orders are not tracked after
placement). Each concurrent client is its own user with its own linked simulator account (venue
rate limits are per API key). Orders are resting limit buys 5 % under the market, cancelled between phases
(untimed). Each path is warmed just before each of its timed phases, on the connections the
phase then uses: two untimed orders per client (then cancelled). K2's overhead = K2's latency -
the direct adapter's latency at the same percentile.

Three load shapes, each run on both paths:
- sequential: one client, the next order as soon as the previous answer is in (the direct
  client takes the clients' API keys in turn: with one key it would be held to the venue's order
  rate by the adapter's limiter, and measure that pacing rather than its latency);
- paced: `--clients` clients placing `--rate` orders/s between them (Poisson arrivals, seeded).
  Latency is measured from when an order was due, so a slow answer that delays the client's
  next order counts against it (no coordinated omission);
- saturated: the same clients with no pause between orders. This measures capacity (orders/s);
  its latency is mostly time spent queueing behind the other clients' orders.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx

from apps.exchanges.simulators.harness import SimulatorProcess
from k2.devstack import procfile_env

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
PASSWORD = "bench-Passw0rd!-bench"
QUANTITY = Decimal("0.001")
WARM_UP_ORDERS = 2
BURST_WINDOW = 0.05  # seconds: how close together paced orders count as one burst


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Result:
    name: str
    samples: list[float]
    seconds: float
    app_ms: list[float] = field(default_factory=list)  # K2: Django's own time (Server-Timing)
    window: tuple[datetime, datetime] | None = None  # K2: when the timed orders ran
    web_cpu_ms: float | None = None  # K2: the web processes' CPU time per timed order
    sim_cpu_ms: float | None = None  # K2: the simulator's, likewise (the host's speed meanwhile)
    split: list[int] = field(default_factory=list)  # K2: the clients' connections per web worker

    def pct(self, q: float) -> float:
        return percentile(self.samples, q)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Wait for `proc` to answer at `url`; a server that does not come up is stopped, not left
    running."""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited")
            try:
                httpx.get(url, timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"{what} did not start")
    except BaseException:
        proc.terminate()
        proc.wait(10)
        raise


def start_web(env: dict[str, str], workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "k2.serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", proc, "web")
    return proc, base


def start_feed(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The Procfile's feed for the simulator's venue; returns once BTC-USD has a live price."""
    from apps.marketdata import cache as price_cache

    cmd = [sys.executable, "manage.py", "run_feed", "--venue", "cryptocom", "--stats-interval", "3600"]
    env = {**procfile_env("feed"), **env}  # as the Procfile runs it
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        snap = price_cache.prices_read(["BTC-USD"], {"BTC-USD": "cryptocom"})["BTC-USD"]
        if snap is not None and not snap.stale:
            return proc
        time.sleep(0.2)
    proc.terminate()
    proc.wait(10)
    raise RuntimeError("the feed did not publish a live BTC-USD price within 30 s")


def prepare(sim: str, clients: int) -> list[dict[str, Any]]:
    """Users with linked simulator accounts, generous risk limits and access tokens."""
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
    traders = []
    run = uuid.uuid4().hex[:6]
    for i in range(clients):
        account = httpx.post(f"{sim}/_sim/accounts", json={}, timeout=5).json()
        user = User.objects.create_user(f"bench-{run}-{i}@example.com", PASSWORD)
        user.email_verified = True
        user.save(update_fields=["email_verified"])
        ExchangeLink.objects.create(
            user=user,
            exchange="cryptocom",
            access_token=account["api_key"],
            access_secret=account["api_secret"],
            key_hint=account["api_key"][-4:],
            linked_at=timezone.now(),
        )
        RiskLimit.objects.create(
            user=user,
            max_orders_per_second=100_000,
            max_orders_per_minute=1_000_000,
            max_daily_notional=Decimal("1000000000"),
            note="bench",
        )
        login = auth_login(email=user.email, password=PASSWORD, client=ClientInfo(ip="127.0.0.1"))
        assert login.tokens is not None
        traders.append({"account": account, "token": login.tokens.access_token})
    return traders


async def price_below_market(sim: str) -> Decimal:
    async with httpx.AsyncClient() as http:
        state = (await http.get(f"{sim}/_sim/state")).json()
    fair = Decimal(state["instruments"]["BTC_USD"]["fair_price"])
    return (fair * Decimal("0.95")).quantize(Decimal("0.01"))


async def cancel_everything(sim: str, traders: list[dict[str, Any]]) -> None:
    from apps.exchanges.adapters.base import Credentials
    from apps.exchanges.adapters.cryptocom import CryptocomAdapter

    for trader in traders:
        creds = Credentials(trader["account"]["api_key"], trader["account"]["api_secret"])
        async with CryptocomAdapter(credentials=creds, base_url=f"{sim}/exchange/v1") as adapter:
            await adapter.cancel_all_orders()


def schedule(clients: int, per_client: int, rate: float | None, seed: int) -> list[list[float]]:
    """When each client's orders are due (seconds from the start); all zeros: no pacing."""
    if not rate:
        return [[0.0] * per_client for _ in range(clients)]
    rng = random.Random(seed)
    mean_gap = clients / rate  # each client's own rate is rate / clients
    plans = []
    for _ in range(clients):
        due, plan = rng.uniform(0, mean_gap), []
        for _ in range(per_client):
            plan.append(due)
            due += rng.expovariate(1 / mean_gap)
        plans.append(plan)
    return plans


def bursts(plans: list[list[float]], window: float = BURST_WINDOW) -> tuple[int, int]:
    """The paced schedule's crowding: (orders due when 3 or more others fell due in the `window`
    seconds before them, the most orders due within any one `window`). Poisson arrivals bunch;
    an order due just after several others queues behind their work on the web process's CPU
    (~10 ms each), and those orders are what the paced p99 measures."""
    due = sorted(d for plan in plans for d in plan)
    crowded = sum(1 for i, d in enumerate(due) if i - bisect.bisect_left(due, d - window) >= 3)
    most = max((bisect.bisect_right(due, d + window) - i for i, d in enumerate(due)), default=0)
    return crowded, most


def warm_up(clients: int) -> list[list[float]]:
    """Untimed orders each client places just before a timed phase, on the sessions it then
    uses: both paths start it warm (connections open, K2's balance snapshots fresh) rather than
    after the other path's phase left them idle."""
    return schedule(clients, WARM_UP_ORDERS, None, 0)


async def drive(sessions: list[Any], plans: list[list[float]], send: Any) -> Result:
    """Run every client's plan; `send(session)` places one order with that client's session. A
    paced order's latency counts from when it was due, an unpaced one's from when it was sent."""
    samples: list[float] = []
    started = time.perf_counter()

    async def client(session: Any, plan: list[float]) -> None:
        for due in plan:
            wait = started + due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            t0 = time.perf_counter() if due == 0 else started + due
            await send(session)
            samples.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(client(s, p) for s, p in zip(sessions, plans, strict=True)))
    return Result("", samples, time.perf_counter() - started)


async def direct(
    sim: str, traders: list[dict[str, Any]], plans: list[list[float]], price: Decimal, *, keys: int = 1
) -> Result:
    """The adapter alone: one long-lived client per account, production settings (rate limits on).
    `keys` > 1 (one client only): that client sends each order with the next of `keys` accounts'
    adapters in turn. A lone client sending back to back outruns one API key's order rate (120/s
    at the venue's limit, which the adapter enforces: ~8 ms an order), so its latency would be
    the limiter's pacing; K2, several times slower per order, never reaches it. Spread over
    several keys, every order still takes the limiter's Redis round trip but none waits."""
    import redis.asyncio as aioredis

    from apps.exchanges.adapters.base import Credentials, OrderRequest, OrderType, Side
    from apps.exchanges.adapters.cryptocom import CryptocomAdapter

    redis = aioredis.Redis.from_url(os.environ["REDIS_URL"])
    adapters = [
        CryptocomAdapter(
            credentials=Credentials(t["account"]["api_key"], t["account"]["api_secret"]),
            base_url=f"{sim}/exchange/v1",
            redis=redis,
        )
        for t in traders
    ]
    sessions: list[Any] = [[a] for a in adapters]
    if keys > 1:
        assert len(plans) == 1, "one client takes the keys in turn"
        assert len(adapters) >= keys
        sessions = [adapters[:keys]]

    async def send(session: list[Any]) -> None:
        session.append(adapter := session.pop(0))  # the session's next key, in turn
        request = OrderRequest("BTC-USD", Side.BUY, OrderType.LIMIT, QUANTITY, uuid.uuid4().hex, price=price)
        await adapter.place_order(request)

    try:
        await drive(sessions, [[0.0] * WARM_UP_ORDERS * len(s) for s in sessions], send)
        await cancel_everything(sim, traders)
        return await drive(sessions, plans, send)
    finally:
        for adapter in adapters:
            await adapter.close()
        await redis.aclose()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by process `pid` and its children (the web
    supervisor's workers)."""
    import psutil

    parent = psutil.Process(pid)
    total = 0.0
    for proc in (parent, *parent.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def connections_per_worker(pid: int, port: int) -> list[int]:
    """How many established connections to `port` each of the web supervisor's workers holds,
    most first (k2.serve hands each new one to the worker holding the fewest: a busier worker
    would queue a burst's orders longer)."""
    import psutil

    counts = []
    for proc in psutil.Process(pid).children(recursive=True):
        try:
            if "spawn_main" not in " ".join(proc.cmdline()):  # not a worker (the resource tracker)
                continue
            conns = proc.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        counts.append(sum(1 for c in conns if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port))
    return sorted(counts, reverse=True)


def host_speed_ms(rounds: int = 5) -> float:
    """The fastest of `rounds` runs of a fixed pure-Python workload in this process, in ms: the
    host's speed at that moment. A shared VM's varies by tens of percent over minutes, and with
    it every latency here; lower is faster."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        total = 0
        for i in range(200_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def run_measured(name: str, work: Coroutine[Any, Any, T]) -> tuple[T, str] | None:
    """Run a bench's `work` (at most 300 s) between two readings of the host's speed: (its
    result, the line reporting the speed). None, with `work` not run, outside the devstack."""
    if not os.environ.get("DATABASE_URL") or not os.environ.get("REDIS_URL"):
        work.close()
        print(f"run under the devstack: python -m k2.devstack run --durable -- python -m bench {name}")
        return None
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")
    before = host_speed_ms()
    result = asyncio.run(asyncio.wait_for(work, timeout=300))
    after = host_speed_ms()
    return result, (
        f"host speed: a fixed Python workload took {before:.1f} ms before the run and "
        f"{after:.1f} ms after (lower is faster; compare runs by it)"
    )


async def through_k2(
    web: str,
    sim: str,
    traders: list[dict[str, Any]],
    plans: list[list[float]],
    price: Decimal,
    web_pid: int,
    sim_pid: int,
) -> Result:
    sessions = [
        httpx.AsyncClient(base_url=web, headers={"Authorization": f"Bearer {t['token']}"}, timeout=30)
        for t in traders
    ]

    async def send(http: httpx.AsyncClient) -> None:
        body = {
            "instrument": "BTC-USD",
            "side": "buy",
            "order_type": "limit",
            "quantity": str(QUANTITY),
            "price": str(price),
            "client_order_id": uuid.uuid4().hex,
        }
        response = await http.post("/v1/orders", json=body)
        if response.status_code != 201:
            raise RuntimeError(f"K2 answered {response.status_code}: {response.text[:300]}")
        app_ms.append(float(response.headers["Server-Timing"].split("dur=")[1]))

    app_ms: list[float] = []
    try:
        await drive(sessions, warm_up(len(sessions)), send)
        await cancel_everything(sim, traders)
        app_ms.clear()
        split = connections_per_worker(web_pid, int(web.rsplit(":", 1)[1]))
        started = datetime.now(UTC)
        cpu_before, sim_before = cpu_seconds(web_pid), cpu_seconds(sim_pid)
        result = await drive(sessions, plans, send)
        result.window = (started, datetime.now(UTC))
        result.split = split
        result.web_cpu_ms = (cpu_seconds(web_pid) - cpu_before) / len(result.samples) * 1000
        result.sim_cpu_ms = (cpu_seconds(sim_pid) - sim_before) / len(result.samples) * 1000
    finally:
        for http in sessions:
            await http.aclose()
    result.app_ms = app_ms
    return result


async def run(args: argparse.Namespace) -> list[tuple[str, Result, Result]]:
    simulator = SimulatorProcess("cryptocom", "--tick-interval", "0.2").start()
    sim = simulator.base_url
    web_proc = feed_proc = None
    try:
        os.environ["K2_CRYPTOCOM_REST_URL"] = f"{sim}/exchange/v1"
        os.environ["K2_CRYPTOCOM_MARKET_WS_URL"] = f"{sim.replace('http', 'ws')}/exchange/v1/market"
        os.environ["K2_CRYPTOCOM_USER_WS_URL"] = f"{sim.replace('http', 'ws')}/exchange/v1/user"
        os.environ["API_THROTTLE_USER"] = "1000000/min"
        traders = await asyncio.to_thread(prepare, sim, args.clients)
        web_env = {**procfile_env("web"), **os.environ}  # as the Procfile runs it
        web_proc, web = start_web(web_env, args.web_workers)
        feed_proc = await asyncio.to_thread(start_feed, dict(os.environ))
        price = await price_below_market(sim)
        one = traders[:1]
        # The bench client's own heap (Django, the users it made) out of its collector's sight:
        # a full collection of it is a 20-50 ms pause that lands on whichever order is in flight.
        gc.collect()
        gc.freeze()
        shapes = [
            ("sequential, 1 client", one, schedule(1, args.orders, None, 0)),
            (
                f"paced, {len(traders)} clients, {args.rate:g}/s",
                traders,
                schedule(len(traders), args.per_client, args.rate, args.seed),
            ),
            (f"saturated, {len(traders)} clients", traders, schedule(len(traders), args.per_client, None, 0)),
        ]
        rows = []
        for mode, who, plans in shapes:
            keys = len(traders) if who is one else 1
            accounts = traders if keys > 1 else who
            d = await direct(sim, accounts, plans, price, keys=keys)
            await cancel_everything(sim, accounts)
            assert simulator.proc is not None
            k = await through_k2(web, sim, who, plans, price, web_proc.pid, simulator.proc.pid)
            await cancel_everything(sim, who)
            rows.append((mode, d, k))
        return rows
    finally:
        for proc in (web_proc, feed_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(10)
        simulator.stop()


def print_table(rows: list[tuple[str, Result, Result]]) -> None:
    header = f"{'mode':30} {'path':8} {'n':>5} {'orders/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    print(header)
    print("-" * len(header))
    for mode, d, k in rows:
        for path, r in (("direct", d), ("K2", k)):
            rate = len(r.samples) / r.seconds
            print(
                f"{mode:30} {path:8} {len(r.samples):5d} {rate:9.1f} {r.pct(0.5):8.2f} {r.pct(0.99):8.2f} "
                f"{max(r.samples):8.2f}"
            )
        if k.app_ms:
            print(
                f"{mode:30} {'K2 app':8} {'':5} {'':9} {percentile(k.app_ms, 0.5):8.2f} "
                f"{percentile(k.app_ms, 0.99):8.2f} {max(k.app_ms):8.2f}"
            )
        print(
            f"{mode:30} {'overhead':8} {'':5} {'':9} {k.pct(0.5) - d.pct(0.5):8.2f} "
            f"{k.pct(0.99) - d.pct(0.99):8.2f}"
        )
    print("\ngoal: K2 overhead < 15 ms at p50 and < 30 ms at p99 (sequential and paced);")
    print("saturated: capacity in orders/s, its latency is queueing (clients / throughput)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench trading", description=__doc__)
    parser.add_argument(
        "--orders", type=int, default=200, help="sequential orders per path (default and most: 200)"
    )
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument(
        "--per-client", type=int, default=25, help="orders per concurrent client (default 25)"
    )
    parser.add_argument(
        "--rate", type=float, default=20.0, help="paced phase: orders/s across all clients (default 20)"
    )
    parser.add_argument("--seed", type=int, default=7, help="paced phase: arrival schedule seed")
    parser.add_argument(
        "--web-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="web worker processes (default: cores)",
    )
    args = parser.parse_args(argv)
    args.orders = max(10, min(args.orders, 200))  # the simulator rests 200 orders per account and instrument
    args.clients = max(1, min(args.clients, 50))
    args.per_client = max(5, min(args.per_client, 100))
    args.rate = max(1.0, min(args.rate, 500.0))
    measured = run_measured("trading", run(args))
    if measured is None:
        return 2
    rows, host_speed = measured
    print_table(rows)
    crowded, most = bursts(schedule(args.clients, args.per_client, args.rate, args.seed))
    print(
        f"paced arrivals: {crowded} orders due within {BURST_WINDOW * 1000:g} ms after 3 or more others; "
        f"at most {most} orders due in one {BURST_WINDOW * 1000:g} ms window"
    )
    print(durability())
    from apps.trading.models import Order

    sources = Counter(Order.objects.values_list("metadata__price_source", flat=True))
    print("reference price of K2's orders, by source: " + ", ".join(f"{k} {n}" for k, n in sources.items()))
    reads = ", ".join(f"{mode.split(',')[0]} {balance_reads(k)} of {len(k.samples)}" for mode, _, k in rows)
    print(f"venue balance reads by K2 (risk snapshots re-read in the background), per timed orders: {reads}")
    cpu = ", ".join(f"{mode.split(',')[0]} {k.web_cpu_ms:.2f}" for mode, _, k in rows)
    split = ", ".join(f"{mode.split(',')[0]} {'/'.join(map(str, k.split))}" for mode, _, k in rows)
    print(f"K2 clients' connections per web worker: {split}")
    print(f"web CPU per K2 order, ms (every web worker, user + system, the phase's timed orders): {cpu}")
    sim_cpu = ", ".join(f"{mode.split(',')[0]} {k.sim_cpu_ms:.2f}" for mode, _, k in rows)
    print(
        f"simulator CPU per K2 order, ms (the same work in every run of a phase: higher along with the "
        f"web's, the host was slower in that phase): {sim_cpu}"
    )
    print(host_speed)
    return 0


def durability() -> str:
    """How the database commits: production flushes each commit (`make bench` runs the devstack
    with `--durable`); the test suite's throwaway database does not, and is faster for it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
        fsync, synchronous_commit = cursor.fetchone()
    production = "as in production" if (fsync, synchronous_commit) == ("on", "on") else "NOT as in production"
    return f"PostgreSQL commits: fsync {fsync}, synchronous_commit {synchronous_commit} ({production})"


def balance_reads(result: Result) -> int:
    """K2's venue balance reads while `result`'s orders ran (its audited venue calls): a user's
    balance snapshot is re-read once an order finds it older than K2_TRADING_BALANCE_CACHE_SECONDS
    (2 s): about every third order of a client ordering once a second (paced), seldom for one
    ordering back to back (sequential). Each read is web CPU that the phase's orders share."""
    from k2.audit.models import AuditEntry

    assert result.window is not None
    started, ended = result.window
    return AuditEntry.objects.filter(
        action="exchange.call", details__method="private/user-balance", created_at__range=(started, ended)
    ).count()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
