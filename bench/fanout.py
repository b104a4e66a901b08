"""WebSocket price fan-out: K2 /ws/prices vs a bare `websockets` broadcast server, same run.

    .venv/bin/python -m k2.devstack run --durable -- .venv/bin/python -m bench.fanout \\
        --clients 100,1000,5000 --instruments 10 --rate 2 --duration 10

For each client count N, each server in turn (K2: uvicorn serving k2.asgi with the real consumer,
hub and sessions; baseline: a bare `websockets` server that subscribes to the same Redis channel
and `broadcast()`s every price to every socket) gets N real WebSocket clients (a separate
process) subscribed to M instruments, while this process publishes M x rate prices per second
through the feed's own fenced Redis script for `duration` seconds. Every price carries its
publish time, so clients measure tick-to-client latency. Reported: delivered messages/s, the
share of expected deliveries, latency p50/p99, and server memory per connection (RSS growth
after connecting and subscribing the clients, divided by N). Every phase is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENUE = "bench"
LEASE_TOKEN = "bench-publisher"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect(("127.0.0.1", port))
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def symbols(count: int) -> list[str]:
    return [f"BENCH{i}-USD" for i in range(count)]


# ---- setup (Django) -------------------------------------------------------------------------


def setup(instruments: int) -> str:
    """Migrate, create the bench instruments and a user; return an access token."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "k2.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from decimal import Decimal

    from apps.accounts.models import User
    from apps.accounts.services import ClientInfo, auth_login
    from apps.marketdata import cache
    from apps.marketdata.models import Instrument

    for symbol in symbols(instruments):
        Instrument.objects.update_or_create(
            symbol=symbol,
            defaults={
                "venue": VENUE,
                "venue_symbol": symbol,
                "instrument_type": "crypto",
                "tick_size": Decimal("0.01"),
                "quantity_step": Decimal("0.0001"),
                "min_quantity": Decimal("0.0001"),
            },
        )
    email, password = "bench@example.com", "bench-Passw0rd-fanout!"
    if not User.objects.filter(email=email).exists():
        User.objects.create_user(email=email, password=password)
    result = auth_login(email=email, password=password, client=ClientInfo(ip="127.0.0.1"))
    assert result.tokens is not None
    client = cache.sync_client()
    client.set(cache.lease_key(VENUE), LEASE_TOKEN)
    client.set(cache.venue_key(VENUE), json.dumps({"venue": VENUE, "state": "live", "since": ""}))
    return result.tokens.access_token


# ---- servers --------------------------------------------------------------------------------


def start_k2(port: int, instruments: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "K2_WS_ALLOWED_ORIGINS": "*",
        "K2_WS_MAX_SUBSCRIPTIONS": str(max(100, instruments)),
        "K2_WS_MAX_UPDATES_PER_SECOND": "1000",  # measure fan-out, not conflation
        "K2_WS_HEARTBEAT_SECONDS": "3600",
        "K2_WS_SEND_TIMEOUT_SECONDS": "60",
        "LOG_LEVEL": "WARNING",
        "DATABASE_CONN_MAX_AGE": "60",  # reuse the DB connection for the socket auth lookups
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "k2.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--lifespan", "off", "--log-level", "warning", "--ws-ping-interval", "0",
    ]  # fmt: skip
    if os.environ.get("BENCH_PROFILE"):  # write a cProfile of the K2 server to that path
        cmd[1:2] = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"], "-m"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    wait_port(port)
    return proc


def start_baseline(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.fanout", "--baseline-server", str(port)], cwd=ROOT)
    wait_port(port)
    return proc


async def baseline_server(port: int) -> None:
    """The bare reference: one Redis subscription, `websockets.broadcast` to every socket."""
    import redis.asyncio as aioredis
    from websockets.asyncio.server import broadcast, serve

    url = os.environ.get("K2_MARKETDATA_REDIS_URL") or os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/3"
    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    redis = aioredis.Redis.from_url(url)
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("k2:md:events")
    import logging

    quiet = logging.getLogger("bench.baseline")
    quiet.setLevel(logging.CRITICAL)  # the port probe is not a WebSocket handshake
    async with serve(handler, "127.0.0.1", port, ping_interval=None, max_queue=None, logger=quiet):
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            event = json.loads(message["data"])
            if event.get("t") == "price":
                body = dict(event["p"])
                body["feed_seq"] = body.pop("seq")
                broadcast(clients, json.dumps({"type": "price", **body}, separators=(",", ":")))


# ---- clients (separate process) -------------------------------------------------------------


class RawClient(asyncio.Protocol):
    """A minimal WebSocket client (handshake + unmasked server frames) so the load generator
    costs a few microseconds per message and measures the servers, not itself."""

    def __init__(self, stats: dict[str, Any], host: str, path: str, headers: dict[str, str]) -> None:
        self.stats = stats
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode()
        self.buffer = bytearray()
        self.open = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        payload = text.encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if len(payload) < 126:
            header = struct.pack("!BB", 0x81, 0x80 | len(payload))
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
        self.transport.write(header + mask + masked)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in bytes(self.buffer[: self.buffer.find(b"\r\n")]):
                self.ready.set_exception(RuntimeError(bytes(self.buffer[:200]).decode(errors="replace")))
                return
            del self.buffer[: end + 4]
            self.open = True
            self.ready.set_result(None)
        now = time.time()
        buf = self.buffer
        while len(buf) >= 2:
            length, offset = buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    break
                length, offset = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    break
                length, offset = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < offset + length:
                break
            opcode = buf[0] & 0x0F
            payload = bytes(buf[offset : offset + length])
            del buf[: offset + length]
            if opcode == 1:
                self.on_text(payload, now)

    def on_text(self, payload: bytes, now: float) -> None:
        if b'"type":"price"' not in payload:
            if b'"type":"subscribed"' in payload and not self.subscribed.done():
                self.subscribed.set_result(None)
            return
        if b'"snapshot":true' in payload:
            return
        i = payload.find(b'"timestamp":"')
        if i < 0:
            return
        sent = float(payload[i + 13 : payload.index(b'"', i + 13)])
        self.stats["received"] += 1
        self.stats["latencies"].append(now - sent)


async def run_clients(
    url: str, count: int, token: str, instruments: int, k2: bool, listen: float
) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats: dict[str, Any] = {"received": 0, "latencies": []}
    subscribe = json.dumps({"type": "subscribe", "channel": "prices", "instruments": symbols(instruments)})
    headers = {"Authorization": f"Bearer {token}"} if k2 else {}
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(50)
    clients: list[RawClient] = []

    async def open_one() -> None:
        async with limit:
            _, client = await loop.create_connection(
                lambda: RawClient(stats, f"{host}:{port}", parts.path or "/", headers), host, port
            )
            await asyncio.wait_for(client.ready, 30)
            if k2:
                client.send_text(subscribe)
                await asyncio.wait_for(client.subscribed, 30)
            clients.append(client)

    started = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(count)))
    connect_seconds = time.monotonic() - started
    stats["received"] = 0
    stats["latencies"].clear()
    print(json.dumps({"ready": True, "connect_seconds": round(connect_seconds, 2)}), flush=True)
    await asyncio.sleep(listen)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    latencies = sorted(stats["latencies"])

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
        )

    return {
        "received": stats["received"],
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "connect_seconds": connect_seconds,
    }


# ---- the run --------------------------------------------------------------------------------


def publish(instruments: int, rate: float, duration: float) -> int:
    """Publish every instrument `rate` times per second through the feed's fenced script."""
    from apps.marketdata import cache
    from apps.marketdata.cache import PriceSnapshot

    client = cache.sync_client()
    script = client.register_script(cache.PUBLISH_PRICE)
    names = symbols(instruments)
    interval = 1.0 / rate
    sent = 0
    start = time.monotonic()
    tick = 0
    # instruments tick at evenly spread phases (as a venue's do), not all in one burst
    slot = interval / max(1, len(names))
    while time.monotonic() - start < duration:
        for n, symbol in enumerate(names):
            time.sleep(max(0.0, start + tick * interval + n * slot - time.monotonic()))
            price = f"{100 + (tick + n) % 50}.{tick % 100:02d}"
            snap = PriceSnapshot(
                instrument=symbol, venue=VENUE, price=price, bid=price, ask=price, bid_size="1.2500",
                ask_size="0.7500", change_24h="1.25", volume_24h="12345.6789", high_24h="150.00",
                low_24h="100.00", timestamp=f"{time.time():.6f}",
            )  # fmt: skip
            script(
                keys=[cache.lease_key(VENUE), cache.seq_key(symbol), cache.price_key(symbol)],
                args=[LEASE_TOKEN, snap.body_json(), cache.EVENTS_CHANNEL],
            )
            sent += 1
        tick += 1
        next_at = start + tick * interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return sent


def rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


def measure(
    name: str, url: str, server: subprocess.Popen[bytes], n: int, args: argparse.Namespace, token: str
) -> dict[str, Any]:
    # warm up (lazy imports, the hub's Redis subscription, DB connection) before the baseline RSS
    warm = [sys.executable, "-m", "bench.fanout", "--client-process", url, "--clients", "1", "--token", token]
    warm += ["--instruments", str(args.instruments), "--listen", "0.5"] + (["--k2"] if name == "k2" else [])
    subprocess.run(warm, cwd=ROOT, check=True, capture_output=True, timeout=60)
    time.sleep(0.5)
    base_rss = rss(server.pid)
    cmd = [
        sys.executable, "-m", "bench.fanout", "--client-process", url, "--clients", str(n), "--token", token,
        "--instruments", str(args.instruments), "--listen", str(args.duration + 3),
    ]  # fmt: skip
    if name == "k2":
        cmd.append("--k2")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready_line = proc.stdout.readline()
    if not ready_line:
        raise RuntimeError(f"{name}: client process failed to connect {n} clients")
    time.sleep(1.0)
    per_conn = (rss(server.pid) - base_rss) / n
    sent = publish(args.instruments, args.rate, args.duration)
    out, _ = proc.communicate(timeout=args.duration + 120)
    result = json.loads(out.strip().splitlines()[-1])
    expected = sent * n
    return {
        "server": name,
        "clients": n,
        "ticks": sent,
        "delivered": result["received"],
        "delivered_share": result["received"] / expected if expected else 0.0,
        "msgs_per_s": result["received"] / args.duration,
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "kib_per_conn": per_conn / 1024,
        "connect_s": result["connect_seconds"],
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        f"instruments={args.instruments} rate={args.rate}/s each duration={args.duration}s "
        f"(offered {args.instruments * args.rate:g} ticks/s per client)\n"
        "| server | clients | delivered msgs/s | delivered | p50 ms | p99 ms | memory/conn KiB |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['clients']} | {r['msgs_per_s']:,.0f} | {r['delivered_share']:.1%} "
            f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['kib_per_conn']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,1000", help="comma-separated client counts")
    parser.add_argument("--instruments", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2.0, help="ticks per second per instrument")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing per run")
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--client-process", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--k2", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.baseline_server:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(baseline_server(args.baseline_server))
        return 0
    if args.client_process:
        result = asyncio.run(
            run_clients(
                args.client_process, int(args.clients), args.token, args.instruments, args.k2, args.listen
            )
        )
        print(json.dumps(result), flush=True)
        return 0

    counts = [int(c) for c in args.clients.split(",") if c]
    token = setup(args.instruments)
    rows: list[dict[str, Any]] = []
    for n in counts:
        for name in ("baseline", "k2"):
            port = free_port()
            server = start_baseline(port) if name == "baseline" else start_k2(port, args.instruments)
            url = f"ws://127.0.0.1:{port}" + ("/ws/prices" if name == "k2" else "/")
            try:
                row = measure(name, url, server, n, args, token)
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                server.terminate()
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()
    print()
    print(table(rows, args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
