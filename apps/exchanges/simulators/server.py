"""The simulator framework: one aiohttp server per venue with REST, WebSockets, `/_sim/` control
endpoints, fault injection and a synthetic market on a shared `MatchingEngine`.

A venue simulator subclasses `SimulatorServer` and provides: its instruments (`build_engine`),
its routes (`add_venue_routes`), the method name a request counts as for faults and rate limits
(`fault_method`), how it renders 500/429 errors (`http_error`) and a data message malformed
(`malformed`, for the `malformed_ws` fault; data messages go out through `send_data`).
Everything else is here.
State lives in memory; `POST /_sim/reset` (or a restart) starts fresh.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

from aiohttp import web

from apps.exchanges.simulators.engine import Account, MatchingEngine, SimSide
from apps.exchanges.simulators.faults import FaultInjector, FaultKind
from apps.exchanges.simulators.liquidity import SyntheticMarket
from k2.aio import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A data row with none of the venue's fields, which is how a schema change looks to a client.
MALFORMED_ROW: dict[str, Any] = {"malformed": True}


def gateway_answer(status: int) -> web.Response:
    """What a proxy or gateway in front of a venue answers (408 when its wait for the client or the
    venue ran out, 502/504 for the venue): an HTML page of that status, not the venue's JSON."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    page = f"<html><head><title>{status} {reason}</title></head><body><h1>{reason}</h1></body></html>"
    return web.Response(status=status, text=page, content_type="text/html")


@dataclass
class SimConfig:
    """Tunable behaviour; every interval is configurable so tests never sleep for real-world times."""

    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 7
    market_auto: bool = True
    tick_interval: float = 1.0
    history_minutes: int = 180
    heartbeat_interval: float = 30.0
    heartbeat_max_missed: int = 3
    book_update_interval: float = 0.1
    book_heartbeat_interval: float = 5.0
    auth_window_s: float = 60.0
    rate_limits: bool = True
    default_balances: dict[str, str] = field(
        default_factory=lambda: {
            "USD": "1000000",
            "USDT": "1000000",
            "BTC": "10",
            "ETH": "100",
            "SOL": "1000",
        }
    )

    def update(self, values: dict[str, Any]) -> None:
        """Apply a `POST /_sim/config` body; unknown keys raise KeyError, bad values ValueError."""
        types = {f.name: f.type for f in dataclasses.fields(self)}
        for key, value in values.items():
            if key not in types or key in ("host", "port", "default_balances"):
                raise KeyError(key)
            current = getattr(self, key)
            setattr(self, key, type(current)(value) if not isinstance(current, bool) else bool(value))


class SimRateLimiter:
    """In-memory token buckets keyed by (scope, method) for the simulator's venue limits."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def allow(self, scope: str, method: str, capacity: float, per_second: float) -> bool:
        now = time.monotonic()
        tokens, ts = self.buckets.get((scope, method), (capacity, now))
        tokens = min(capacity, tokens + (now - ts) * per_second)
        if tokens < 1:
            self.buckets[(scope, method)] = (tokens, now)
            return False
        self.buckets[(scope, method)] = (tokens - 1, now)
        return True


@dataclass(eq=False)
class SimSocket:
    """An open simulator WebSocket: its outbox (drained by a writer task), channels and account."""

    kind: str
    ws: web.WebSocketResponse
    request: web.Request
    account: Account | None = None
    channels: set[str] = field(default_factory=set)
    missed_heartbeats: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=20_000))

    def send(self, payload: dict[str, Any]) -> None:
        """Queue a JSON message; a consumer too slow to keep up is disconnected."""
        try:
            self.outbox.put_nowait(json.dumps(payload, separators=(",", ":")))
        except asyncio.QueueFull:
            log.warning("simulator socket outbox full; dropping the connection")
            self.abort()

    def abort(self) -> None:
        transport = self.request.transport
        if transport is not None:
            transport.abort()
        for task in self.tasks:
            task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class SimulatorServer(abc.ABC):
    """Base of every venue simulator (see module docstring)."""

    venue: str = ""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.sockets: set[SimSocket] = set()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port: int = self.config.port
        self.reset_state()

    # ---- venue hooks ----------------------------------------------------------------------
    @abc.abstractmethod
    def build_engine(self) -> MatchingEngine: ...

    @abc.abstractmethod
    def add_venue_routes(self, app: web.Application) -> None: ...

    @abc.abstractmethod
    def fault_method(self, request: web.Request) -> str | None:
        """The venue method a REST request is (for faults); None for non-venue paths."""

    @abc.abstractmethod
    def http_error(self, kind: FaultKind, method: str) -> web.Response:
        """The venue's own answer for an injected 500, 429, maintenance or timeout
        (`TIMEOUT_AFTER_EXECUTE`)."""

    @abc.abstractmethod
    def malformed(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` (a data message) as a client cannot translate it: its rows replaced by
        `MALFORMED_ROW`, the envelope (channel, subscription, sequence) kept, so it reads as that
        channel's next message."""

    def on_reset(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Venue state to rebuild after a reset (subscriptions, sequence numbers, ...)."""

    def venue_loops(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Extra background loops the venue runs while serving (book publisher, heartbeats...)."""
        return []

    # ---- state ----------------------------------------------------------------------------
    def reset_state(self) -> None:
        for sock in list(self.sockets):
            sock.abort()
        self.sockets.clear()
        self.engine = self.build_engine()
        self.market = SyntheticMarket(self.engine, seed=self.config.seed)
        self.market.seed_history(self.config.history_minutes)
        self.faults = FaultInjector()
        self.limiter = SimRateLimiter()
        self.started_at = time.time()
        self.on_reset()

    def create_account(self, balances: dict[str, str] | None = None) -> Account:
        account = Account(
            account_id=secrets.token_hex(8),
            api_key=secrets.token_urlsafe(18),
            api_secret=secrets.token_urlsafe(24),
        )
        for currency, amount in (balances if balances is not None else self.config.default_balances).items():
            account.totals[currency.upper()] = Decimal(str(amount))
        return self.engine.add_account(account)

    def drop_sockets(self, kind_pattern: str | None, count: int) -> int:
        """Abort up to `count` open sockets whose kind matches; returns how many were dropped."""
        dropped = 0
        for sock in list(self.sockets):
            if dropped >= count:
                break
            if kind_pattern is None or sock.kind == kind_pattern:
                sock.abort()
                self.sockets.discard(sock)
                dropped += 1
        return dropped

    async def open_socket(self, request: web.Request, kind: str) -> SimSocket:
        """Accept a WebSocket, register it and start its writer; honours pending `drop_ws` faults."""
        ws = web.WebSocketResponse(autoping=True, max_msg_size=1024**2)
        await ws.prepare(request)
        sock = SimSocket(kind=kind, ws=ws, request=request)
        self.sockets.add(sock)
        sock.spawn(self._writer(sock))
        if fault := self.faults.take(FaultKind.DROP_WS, kind):
            sock.spawn(self._drop_later(sock, fault.latency_ms / 1000))
        return sock

    def send_data(self, sock: SimSocket, name: str, payload: dict[str, Any]) -> None:
        """Send a data message (a channel's update, not an answer to a command). A pending
        `malformed_ws` fault matching `name` sends it malformed (`malformed`) instead, as a venue
        whose message format changed would; the channel's later messages go out as usual."""
        if self.faults.take(FaultKind.MALFORMED_WS, name):
            payload = self.malformed(payload)
        sock.send(payload)

    def close_socket(self, sock: SimSocket) -> None:
        self.sockets.discard(sock)
        for task in sock.tasks:
            task.cancel()

    async def _drop_later(self, sock: SimSocket, delay: float) -> None:
        await asyncio.sleep(delay)
        self.sockets.discard(sock)
        sock.abort()

    @staticmethod
    async def _writer(sock: SimSocket) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                message = await sock.outbox.get()
                await sock.ws.send_str(message)

    # ---- app ------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._fault_middleware], client_max_size=1024**2)
        app.router.add_post("/_sim/accounts", self._sim_accounts)
        app.router.add_get("/_sim/accounts/{api_key}", self._sim_account)
        app.router.add_post("/_sim/faults", self._sim_add_fault)
        app.router.add_get("/_sim/faults", self._sim_list_faults)
        app.router.add_delete("/_sim/faults", self._sim_clear_faults)
        app.router.add_get("/_sim/state", self._sim_state)
        app.router.add_post("/_sim/reset", self._sim_reset)
        app.router.add_post("/_sim/config", self._sim_config)
        app.router.add_post("/_sim/tick", self._sim_tick)
        self.add_venue_routes(app)
        return app

    @web.middleware
    async def _fault_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        method = self.fault_method(request)
        if method is None:
            return await handler(request)
        if fault := self.faults.take(FaultKind.LATENCY, method):
            await asyncio.sleep(fault.latency_ms / 1000)
        for kind in (FaultKind.HTTP_500, FaultKind.HTTP_429, FaultKind.MAINTENANCE):
            if self.faults.take(kind, method):
                return self.http_error(kind, method)
        lost = self.faults.take(FaultKind.NO_RESPONSE, method)
        timed_out = self.faults.take(FaultKind.TIMEOUT_AFTER_EXECUTE, method)
        response = await handler(request)
        if timed_out is not None:  # executed all the same
            if timed_out.status is not None:
                return gateway_answer(timed_out.status)
            return self.http_error(FaultKind.TIMEOUT_AFTER_EXECUTE, method)
        if lost is None:
            return response
        await asyncio.sleep(lost.latency_ms / 1000)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # executed; the answer is never written

    async def start(self) -> None:
        app = self.build_app()
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        loops = [self._market_loop, *self.venue_loops()]
        self._tasks = [asyncio.create_task(loop()) for loop in loops]
        log.info("%s simulator listening on %s", self.venue, self.base_url)

    async def stop(self) -> None:
        await cancel_and_wait(*self._tasks)
        for sock in list(self.sockets):
            sock.abort()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def _market_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.config.tick_interval)
            if not self.config.market_auto:
                continue
            try:
                self.market.tick()
                ticks += 1
                if ticks % 20 == 0:
                    self.market.prune()
            except Exception:  # a bug in the synthetic market must not kill the server
                log.exception("synthetic market tick failed")

    # ---- /_sim handlers -------------------------------------------------------------------
    @staticmethod
    async def _json_body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            body = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(
                text='{"error":"invalid JSON"}', content_type="application/json"
            ) from exc
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text='{"error":"expected an object"}', content_type="application/json")
        return body

    @staticmethod
    def _balances_json(account: Account) -> dict[str, dict[str, str]]:
        return {
            c: {
                "total": str(t),
                "available": str(account.available(c)),
                "on_hold": str(account.holds.get(c, 0)),
            }
            for c, t in sorted(account.totals.items())
        }

    async def _sim_accounts(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        balances = body.get("balances")
        try:
            if balances is not None and not isinstance(balances, dict):
                raise ValueError("balances must be an object")
            for amount in (balances or {}).values():
                if Decimal(str(amount)) < 0:
                    raise ValueError("balances must not be negative")
        except (ValueError, InvalidOperation) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        account = self.create_account({str(k): str(v) for k, v in balances.items()} if balances else None)
        return web.json_response(
            {
                "api_key": account.api_key,
                "api_secret": account.api_secret,
                "account_id": account.account_id,
                "balances": self._balances_json(account),
            },
            status=201,
        )

    async def _sim_account(self, request: web.Request) -> web.Response:
        account = self.engine.accounts_by_key.get(request.match_info["api_key"])
        if account is None:
            return web.json_response({"error": "no such account"}, status=404)
        orders = self.engine.account_orders[account.account_id]
        return web.json_response(
            {
                "account_id": account.account_id,
                "balances": self._balances_json(account),
                "orders": len(orders),
                "open_orders": sum(1 for o in orders if o.is_open),
                "client_order_ids": [o.client_oid for o in orders],
                "fills": len(self.engine.fills[account.account_id]),
            }
        )

    async def _sim_add_fault(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        try:
            kind, count, method, latency_ms, status = FaultInjector.parse(body)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if kind is FaultKind.DROP_WS:
            dropped = self.drop_sockets(method, count)
            if dropped < count:
                self.faults.add(kind, count - dropped, method, latency_ms)
            return web.json_response({"dropped": dropped, "faults": self.faults.as_json()}, status=201)
        fault = self.faults.add(kind, count, method, latency_ms, status)
        return web.json_response({"fault": fault.as_json(), "faults": self.faults.as_json()}, status=201)

    async def _sim_list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": self.faults.as_json()})

    async def _sim_clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"faults": []})

    async def _sim_state(self, request: web.Request) -> web.Response:
        instruments = {}
        for symbol in self.engine.instruments:
            book = self.engine.books[symbol]
            bid, ask = book.best(SimSide.BUY), book.best(SimSide.SELL)
            instruments[symbol] = {
                "fair_price": str(self.market.mid[symbol]),
                "best_bid": str(bid) if bid is not None else None,
                "best_ask": str(ask) if ask is not None else None,
                "trades": len(self.engine.trades[symbol]),
            }
        return web.json_response(
            {
                "venue": self.venue,
                "uptime_s": round(time.time() - self.started_at, 3),
                "config": {
                    k: v for k, v in dataclasses.asdict(self.config).items() if k != "default_balances"
                },
                "instruments": instruments,
                "accounts": sum(1 for a in self.engine.accounts.values() if not a.is_system),
                "sockets": sorted(s.kind for s in self.sockets),
                "faults": self.faults.as_json(),
            }
        )

    async def _sim_reset(self, request: web.Request) -> web.Response:
        self.reset_state()
        return web.json_response({"reset": True})

    async def _sim_config(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        try:
            self.config.update(body)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": f"bad config: {exc}"}, status=400)
        return web.json_response({"config": dataclasses.asdict(self.config)})

    async def _sim_tick(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        count = int(body.get("count", 1))
        for _ in range(max(0, min(count, 1000))):
            self.market.tick()
        return web.json_response({"ticks": count, "fair": {s: str(p) for s, p in self.market.mid.items()}})
