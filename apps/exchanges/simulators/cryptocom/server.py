"""Crypto.com Exchange v1 simulator: REST `/exchange/v1/{method}` and WebSockets
`/exchange/v1/user` and `/exchange/v1/market`, as the spec (`shared/specs/cryptocom-exchange-v1.md`)
describes them: envelopes, HMAC signatures and the +-60 s nonce window, the venue's error codes and
HTTP statuses, its per-key rate limits (42901 / HTTP 429), heartbeats, book snapshots plus
`book.update` deltas chained by `u`/`pu` with empty-delta heartbeats, and the user channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import WSMsgType, web

from apps.exchanges.simulators.cryptocom import codes, render
from apps.exchanges.simulators.cryptocom.auth import signature_ok, wire_text
from apps.exchanges.simulators.engine import (
    Account,
    BalanceEvent,
    BookEvent,
    EngineEvent,
    EngineReject,
    FillEvent,
    MatchingEngine,
    OrderEvent,
    PublicTrade,
    Reject,
    SimInstrument,
    SimOrder,
    SimSide,
    SimStatus,
    TradeEvent,
)
from apps.exchanges.simulators.faults import FaultKind
from apps.exchanges.simulators.server import MALFORMED_ROW, SimConfig, SimSocket, SimulatorServer

log = logging.getLogger(__name__)
PREFIX = "/exchange/v1/"
DAY_MS = 86_400_000


def seed_instruments() -> list[SimInstrument]:
    d = Decimal
    return [
        SimInstrument("BTC_USD", "BTC", "USD", d("0.01"), d("0.00001"), d("0.00001"), d("65000.00")),
        SimInstrument("ETH_USD", "ETH", "USD", d("0.01"), d("0.0001"), d("0.0001"), d("3200.00")),
        SimInstrument("SOL_USD", "SOL", "USD", d("0.001"), d("0.001"), d("0.001"), d("150.000")),
        SimInstrument("BTC_USDT", "BTC", "USDT", d("0.01"), d("0.00001"), d("0.00001"), d("65010.00")),
        SimInstrument("ETH_USDT", "ETH", "USDT", d("0.01"), d("0.0001"), d("0.0001"), d("3201.00")),
    ]


class VenueError(Exception):
    """A Crypto.com error answer: code, message and optionally a result (e.g. a rejected order id)."""

    def __init__(self, code: int, message: str | None = None, result: dict[str, Any] | None = None) -> None:
        self.code = code
        self.message = message or codes.NAMES.get(code, "ERROR")
        self.result = result
        super().__init__(self.message)


@dataclass(eq=False)
class BookSub:
    sock: SimSocket
    symbol: str
    depth: int
    snapshot_only: bool
    last: dict[str, dict[Decimal, tuple[Decimal, int]]] = field(default_factory=dict)
    last_u: int = 0
    last_sent: float = 0.0


Params = dict[str, Any]
PrivateHandler = Callable[[Account, Params], Awaitable[tuple[int, dict[str, Any] | None]]]


# (capacity, per second) per method, spec section 6
def _private_limit(method: str) -> tuple[float, float]:
    if method in ("private/create-order", "private/cancel-order", "private/cancel-all-orders"):
        return 15, 150
    if method == "private/get-order-detail":
        return 30, 300
    if method in ("private/get-trades", "private/get-order-history"):
        return 1, 1
    return 3, 30


def _to_ms(value: Any, default: int) -> int:
    """Times arrive in s, ms, us or ns (ccxt sends us for candles): normalise by magnitude."""
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError as exc:
        raise VenueError(codes.INVALID_DATE) from exc
    if number >= 10**17:
        return number // 1_000_000
    if number >= 10**14:
        return number // 1_000
    if number >= 10**11:
        return number
    return number * 1000


def _decimal(params: Params, key: str, numeric_code: int, bad_code: int) -> Decimal | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise VenueError(numeric_code, f"{key} must be a string")
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise VenueError(bad_code, f"invalid {key}") from exc
    if not number.is_finite():
        raise VenueError(bad_code, f"invalid {key}")
    return number


def _int_param(params: Params, key: str, default: int, maximum: int, *, strict_int: bool = False) -> int:
    value = params.get(key)
    if value is None:
        return default
    if strict_int and not isinstance(value, int):
        raise VenueError(codes.INVALID_REQUEST, f"{key} must be an integer")
    try:
        return max(1, min(int(value), maximum))
    except (TypeError, ValueError) as exc:
        raise VenueError(codes.INVALID_REQUEST, f"invalid {key}") from exc


class CryptocomSimulator(SimulatorServer):
    """The Crypto.com venue on the simulator framework."""

    venue = "cryptocom"

    def __init__(self, config: SimConfig | None = None) -> None:
        self.book_subs: list[BookSub] = []
        self.dirty_books: set[str] = set()
        self.dirty_balances: set[str] = set()
        self.book_seq = itertools.count(int(time.time() * 1000))
        super().__init__(config)
        self.private: dict[str, PrivateHandler] = {
            "private/create-order": self._create_order,
            "private/cancel-order": self._cancel_order,
            "private/cancel-all-orders": self._cancel_all,
            "private/get-open-orders": self._open_orders,
            "private/get-order-detail": self._order_detail,
            "private/get-order-history": self._order_history,
            "private/get-trades": self._user_trades,
            "private/user-balance": self._user_balance,
            "private/get-positions": self._positions,
            "private/get-currency-networks": self._currency_networks,
        }
        self.public: dict[str, Callable[[Params], dict[str, Any]]] = {
            "public/get-instruments": self._instruments,
            "public/get-book": self._book,
            "public/get-tickers": self._tickers,
            "public/get-candlestick": self._candlestick,
            "public/get-trades": self._public_trades,
        }

    # ---- framework hooks ------------------------------------------------------------------
    def build_engine(self) -> MatchingEngine:
        return MatchingEngine(seed_instruments())

    def on_reset(self) -> None:
        self.book_subs = []
        self.dirty_books = set()
        self.dirty_balances = set()
        self.engine.listeners.append(self._on_engine_event)

    def add_venue_routes(self, app: web.Application) -> None:
        app.router.add_get(PREFIX + "user", self._ws_user)
        app.router.add_get(PREFIX + "market", self._ws_market)
        app.router.add_route("*", PREFIX + "{method:.+}", self._rest)

    def fault_method(self, request: web.Request) -> str | None:
        if not request.path.startswith(PREFIX):
            return None
        method = request.path[len(PREFIX) :]
        return None if method in ("user", "market") else method

    def http_error(self, kind: FaultKind, method: str) -> web.Response:
        if kind is FaultKind.TIMEOUT_AFTER_EXECUTE:  # the venue's own timeout answer (spec: HTTP 408)
            code, status = codes.REQUEST_TIMEOUT, codes.http_status(codes.REQUEST_TIMEOUT)
        elif kind is FaultKind.MAINTENANCE:  # the spec gives no status: 503, as for maintenance
            code, status = codes.SYSTEM_MAINTENANCE, 503
        else:
            code = codes.TOO_MANY_REQUESTS if kind is FaultKind.HTTP_429 else codes.ERR_INTERNAL
            status = 429 if kind is FaultKind.HTTP_429 else 500
        return web.json_response(
            {"id": -1, "method": method, "code": code, "message": codes.NAMES[code]}, status=status
        )

    def venue_loops(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self._publisher_loop]

    # ---- REST -----------------------------------------------------------------------------
    @staticmethod
    def _answer(
        req_id: Any, method: str, code: int, result: dict[str, Any] | None, message: str | None = None
    ) -> web.Response:
        body: dict[str, Any] = {"id": req_id, "method": method, "code": code}
        if code or message:
            body["message"] = message or codes.NAMES.get(code, "ERROR")
        if result is not None:
            body["result"] = result
        return web.json_response(body, status=codes.http_status(code))

    async def _rest(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            if method in self.public:
                return self._rest_public(request, method)
            if method in self.private:
                return await self._rest_private(request, method)
            raise VenueError(codes.METHOD_NOT_FOUND)
        except VenueError as err:
            return self._answer(-1, method, err.code, err.result, err.message)

    def _rest_public(self, request: web.Request, method: str) -> web.Response:
        if request.method != "GET":
            raise VenueError(codes.ERR_INTERNAL, "public methods are GET only")
        self._rate_check(f"ip:{request.remote}", method, 100, 100)
        return self._answer(-1, method, codes.OK, self.public[method](dict(request.query)))

    async def _rest_private(self, request: web.Request, method: str) -> web.Response:
        if request.method != "POST":
            raise VenueError(codes.INVALID_REQUEST, "private methods are POST only")
        try:
            body = json.loads(await request.text())
        except ValueError as exc:
            raise VenueError(codes.BAD_REQUEST, "invalid JSON") from exc
        if not isinstance(body, dict):
            raise VenueError(codes.BAD_REQUEST)
        req_id = body.get("id", -1)
        try:
            account, params = self._authenticate(body, method)
        except VenueError as err:
            return self._answer(req_id, method, err.code, None, err.message)
        params = {**params, "_nonce": str(body.get("nonce"))}  # the venue's default client_oid
        self._rate_check(f"key:{account.api_key}", method, *_private_limit(method))
        try:
            code, result = await self.private[method](account, params)
        except VenueError as err:
            return self._answer(req_id, method, err.code, err.result, err.message)
        message = "NO_ERROR" if method == "private/cancel-order" and code == 0 else None
        return self._answer(req_id, method, code, result, message)

    def _authenticate(self, body: dict[str, Any], method: str) -> tuple[Account, Params]:
        id_text, nonce_text = wire_text(body.get("id")), wire_text(body.get("nonce"))
        if id_text is None:
            raise VenueError(codes.BAD_REQUEST, "id must be an integer")
        params = body.get("params", {})
        if params == []:
            raise VenueError(codes.BAD_REQUEST, "params must be an object")
        if not isinstance(params, dict) or body.get("method") != method:
            raise VenueError(codes.INVALID_REQUEST)
        account = self.engine.accounts_by_key.get(str(body.get("api_key", "")))
        if account is None or account.is_system or nonce_text is None:
            raise VenueError(codes.UNAUTHORIZED)
        if abs(time.time() * 1000 - int(nonce_text)) > self.config.auth_window_s * 1000:
            raise VenueError(codes.INVALID_NONCE)
        if not signature_ok(
            account.api_secret, method, id_text, account.api_key, params, nonce_text, str(body.get("sig", ""))
        ):
            raise VenueError(codes.UNAUTHORIZED)
        return account, params

    def _rate_check(self, scope: str, method: str, capacity: float, per_second: float) -> None:
        if self.config.rate_limits and not self.limiter.allow(scope, method, capacity, per_second):
            raise VenueError(codes.TOO_MANY_REQUESTS)

    # ---- public methods -------------------------------------------------------------------
    def _inst(self, params: Params) -> SimInstrument:
        name = params.get("instrument_name")
        if not name:
            raise VenueError(codes.MISSING_OR_INVALID_ARGUMENT, "instrument_name is required")
        inst = self.engine.instruments.get(str(name))
        if inst is None:
            raise VenueError(codes.INVALID_INSTRUMENT)
        return inst

    def _instruments(self, params: Params) -> dict[str, Any]:
        return {"data": [render.instrument(i) for i in self.engine.instruments.values()]}

    def _book(self, params: Params) -> dict[str, Any]:
        inst = self._inst(params)
        depth = _int_param(params, "depth", 50, 150)
        return {
            "instrument_name": inst.symbol,
            "depth": depth,
            "data": [render.book(self.engine, inst, depth)],
        }

    def _tickers(self, params: Params) -> dict[str, Any]:
        insts = (
            [self._inst(params)] if params.get("instrument_name") else list(self.engine.instruments.values())
        )
        return {"data": [render.ticker(self.engine, i) for i in insts]}

    def _candlestick(self, params: Params) -> dict[str, Any]:
        inst = self._inst(params)
        interval = str(params.get("timeframe", "1m"))
        frame = render.TIMEFRAMES_MS.get(render.LEGACY_TIMEFRAMES.get(interval, interval))
        if frame is None:
            raise VenueError(codes.INVALID_REQUEST, "invalid timeframe")
        count = _int_param(params, "count", 25, 300)
        now = int(time.time() * 1000)
        end = _to_ms(params.get("end_ts"), now)
        start = _to_ms(params.get("start_ts"), end - DAY_MS)
        trades = [t for t in self.engine.trades[inst.symbol] if start * 10**6 <= t.time_ns < end * 10**6]
        data = render.candles(trades, inst, frame)[-count:]
        return {"instrument_name": inst.symbol, "interval": interval, "data": data}

    def _public_trades(self, params: Params) -> dict[str, Any]:
        inst = self._inst(params)
        count = _int_param(params, "count", 25, 150)
        end = _to_ms(params.get("end_ts"), int(time.time() * 1000) + 1)
        start = _to_ms(params.get("start_ts"), 0)
        rows: list[dict[str, Any]] = []
        for trade in reversed(self.engine.trades[inst.symbol]):
            if len(rows) >= count:
                break
            if start * 10**6 <= trade.time_ns < end * 10**6:
                rows.append(render.public_trade(trade, inst))
        return {"data": rows}

    # ---- private methods ------------------------------------------------------------------
    def _parse_order(self, account: Account, params: Params) -> SimOrder:
        inst = self._inst(params)
        side = str(params.get("side", "")).upper()
        kind = str(params.get("type", "")).upper()
        if side not in ("BUY", "SELL"):
            raise VenueError(codes.INVALID_SIDE)
        if kind not in ("LIMIT", "MARKET"):
            raise VenueError(codes.INVALID_ORDTYPE)
        tif = render.TIF_IN.get(str(params.get("time_in_force", "GOOD_TILL_CANCEL")))
        if tif is None:
            raise VenueError(codes.INVALID_TIF)
        exec_inst = params.get("exec_inst") or []
        if not isinstance(exec_inst, list) or any(
            e not in ("POST_ONLY", "SMART_POST_ONLY", "REDUCE_ONLY", "ISOLATED_MARGIN", "MARGIN_ORDER")
            for e in exec_inst
        ):
            raise VenueError(codes.INVALID_EXECINST)
        post_only = "POST_ONLY" in exec_inst or "SMART_POST_ONLY" in exec_inst
        price = (
            _decimal(params, "price", codes.INVALID_PRICE, codes.INVALID_PRICE) if kind == "LIMIT" else None
        )
        quantity = _decimal(params, "quantity", codes.UNAUTHORIZED, codes.INVALID_ORDERQTY)
        notional = _decimal(params, "notional", codes.ERR_INTERNAL, codes.MISSING_OR_INVALID_ARGUMENT)
        if kind == "LIMIT" and price is None:
            raise VenueError(codes.INVALID_PRICE, "price is required")
        if quantity is None and not (kind == "MARKET" and side == "BUY" and notional is not None):
            raise VenueError(codes.MISSING_OR_INVALID_ARGUMENT, "quantity is required")
        client_oid = str(params.get("client_oid") or params.get("_nonce", ""))
        if len(client_oid) > 36:
            raise VenueError(codes.MISSING_OR_INVALID_ARGUMENT, "client_oid is longer than 36")
        return SimOrder(
            order_id=self.engine.next_id(),
            client_oid=client_oid,
            account_id=account.account_id,
            instrument=inst.symbol,
            side=SimSide(side.lower()),
            order_type=kind.lower(),
            time_in_force=tif,
            quantity=quantity if quantity is not None else Decimal(0),
            price=price,
            post_only=post_only,
            notional=notional if quantity is None else None,
        )

    async def _create_order(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        order = self._parse_order(account, params)
        try:
            self.engine.submit(order)
        except EngineReject as rej:
            raise VenueError(codes.REJECT_CODES[rej.reason], str(rej)) from rej
        ack = {"order_id": order.order_id, "client_oid": order.client_oid}
        if order.status is SimStatus.REJECTED or (order.status is SimStatus.CANCELED and order.filled == 0):
            return codes.REJECT_CODES.get(Reject(order.reason), codes.IMMEDIATE_OR_CANCEL), ack
        return codes.OK, ack

    def _find(self, account: Account, params: Params, not_found: int) -> SimOrder:
        order_id, client_oid = params.get("order_id"), params.get("client_oid")
        if not order_id and not client_oid:
            raise VenueError(codes.MISSING_OR_INVALID_ARGUMENT, "order_id or client_oid is required")
        try:
            return self.engine.find(
                account.account_id,
                order_id=str(order_id) if order_id else None,
                client_oid=str(client_oid) if client_oid else None,
            )
        except EngineReject as rej:
            raise VenueError(not_found) from rej

    async def _cancel_order(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        order = self._find(account, params, codes.INVALID_ORDERID)
        if not order.is_open:
            raise VenueError(codes.NO_ACTIVE_ORDER)
        self.engine.cancel(account.account_id, order_id=order.order_id)
        return codes.OK, {"order_id": order.order_id, "client_oid": order.client_oid}

    async def _cancel_all(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        symbol = self._inst(params).symbol if params.get("instrument_name") else None
        self.engine.cancel_all(account.account_id, symbol)
        return codes.OK, None

    def _render_orders(self, orders: list[SimOrder]) -> list[dict[str, Any]]:
        return [render.order(o, self.engine.instruments[o.instrument]) for o in orders]

    async def _open_orders(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        symbol = self._inst(params).symbol if params.get("instrument_name") else None
        orders = sorted(self.engine.open_orders(account.account_id, symbol), key=lambda o: -o.created_ns)
        return codes.OK, {"data": self._render_orders(orders)}

    async def _order_detail(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        order = self._find(account, params, codes.NOT_FOUND)
        return codes.OK, render.order(order, self.engine.instruments[order.instrument])

    def _window(self, params: Params) -> tuple[str | None, int, int, int]:
        symbol = self._inst(params).symbol if params.get("instrument_name") else None
        now = int(time.time() * 1000)
        end = _to_ms(params.get("end_time"), now + 1)
        start = _to_ms(params.get("start_time"), end - DAY_MS)
        return symbol, start * 10**6, end * 10**6, _int_param(params, "limit", 100, 100, strict_int=True)

    async def _order_history(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        symbol, start, end, limit = self._window(params)
        orders = [
            o
            for o in reversed(self.engine.account_orders[account.account_id])
            if not o.is_open and (symbol is None or o.instrument == symbol) and start <= o.updated_ns < end
        ]
        return codes.OK, {"data": self._render_orders(orders[:limit])}

    async def _user_trades(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        symbol, start, end, limit = self._window(params)
        rows = [
            render.fill(f, self.engine.instruments[f.instrument])
            for f in reversed(self.engine.fills[account.account_id])
            if (symbol is None or f.instrument == symbol) and start <= f.time_ns < end
        ]
        return codes.OK, {"data": rows[:limit]}

    async def _user_balance(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        return codes.OK, {"data": [render.balance(self.engine, account)]}

    async def _positions(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        return codes.OK, {"data": []}  # spot only: no derivative positions

    async def _currency_networks(self, account: Account, params: Params) -> tuple[int, dict[str, Any] | None]:
        currencies = sorted({c for i in self.engine.instruments.values() for c in (i.base, i.quote)})
        currency_map = {
            c: {
                "full_name": c,
                "default_network": c,
                "network_list": [
                    {
                        "network_id": c,
                        "withdrawal_fee": "0",
                        "withdraw_enabled": False,
                        "min_withdrawal_amount": "0",
                        "deposit_enabled": False,
                        "confirmation_required": "1",
                    }
                ],
            }
            for c in currencies
        }
        return codes.OK, {"update_time": int(time.time() * 1000), "currency_map": currency_map}

    # ---- WebSocket ------------------------------------------------------------------------
    async def _ws_user(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, "user")

    async def _ws_market(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve_ws(request, "market")

    async def _serve_ws(self, request: web.Request, kind: str) -> web.WebSocketResponse:
        sock = await self.open_socket(request, kind)
        sock.spawn(self._heartbeats(sock))
        try:
            async for msg in sock.ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                if not self._ws_rate_ok(sock):
                    sock.send({"id": -1, "method": "ERROR", "code": codes.TOO_MANY_REQUESTS})
                    continue
                await self._ws_message(sock, msg.data)
        finally:
            self.close_socket(sock)
            self.book_subs = [b for b in self.book_subs if b.sock is not sock]
        return sock.ws

    def _ws_rate_ok(self, sock: SimSocket) -> bool:
        per_second = 150 if sock.kind == "user" else 100
        return not self.config.rate_limits or self.limiter.allow(
            f"ws:{id(sock)}", "ws", per_second, per_second
        )

    async def _heartbeats(self, sock: SimSocket) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            if sock.missed_heartbeats >= self.config.heartbeat_max_missed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await sock.ws.close(code=1000, message=b"heartbeat missed")
                return
            sock.missed_heartbeats += 1
            sock.send({"id": int(time.time() * 1000), "method": "public/heartbeat", "code": 0})

    async def _ws_message(self, sock: SimSocket, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or not msg.get("method"):
            sock.send({"id": -1, "method": "ERROR", "code": codes.INVALID_REQUEST})
            return
        method, req_id = str(msg["method"]), msg.get("id", -1)
        if method == "public/respond-heartbeat":
            sock.missed_heartbeats = 0
        elif method == "public/auth":
            self._ws_auth(sock, msg, req_id)
        elif method in ("subscribe", "unsubscribe"):
            self._ws_subscribe(sock, method, req_id, msg.get("params") or {})
        elif method in self.private and sock.kind == "user":
            await self._ws_private(sock, method, req_id, msg.get("params") or {})
        else:
            sock.send({"id": req_id, "method": method, "code": codes.METHOD_NOT_FOUND})

    def _ws_auth(self, sock: SimSocket, msg: dict[str, Any], req_id: Any) -> None:
        account = self.engine.accounts_by_key.get(str(msg.get("api_key", "")))
        id_text, nonce_text = wire_text(msg.get("id")), wire_text(msg.get("nonce"))
        code = codes.OK
        if sock.kind != "user":
            code = codes.METHOD_NOT_FOUND
        elif account is None or account.is_system or id_text is None or nonce_text is None:
            code = codes.UNAUTHORIZED
        elif abs(time.time() * 1000 - int(nonce_text)) > self.config.auth_window_s * 1000:
            code = codes.INVALID_NONCE
        elif not signature_ok(
            account.api_secret,
            "public/auth",
            id_text,
            account.api_key,
            {},
            nonce_text,
            str(msg.get("sig", "")),
        ):
            code = codes.UNAUTHORIZED
        if code == codes.OK:
            sock.account = account
        reply: dict[str, Any] = {"id": req_id, "method": "public/auth", "code": code}
        if code:
            reply["message"] = codes.NAMES[code]
        sock.send(reply)

    async def _ws_private(self, sock: SimSocket, method: str, req_id: Any, params: Any) -> None:
        if sock.account is None:
            sock.send({"id": req_id, "method": method, "code": codes.UNAUTHORIZED})
            return
        try:
            code, result = await self.private[method](
                sock.account, params if isinstance(params, dict) else {}
            )
        except VenueError as err:
            code, result = err.code, err.result
        reply: dict[str, Any] = {"id": req_id, "method": method, "code": code}
        if result is not None:
            reply["result"] = result
        sock.send(reply)

    def _ws_subscribe(self, sock: SimSocket, method: str, req_id: Any, params: Any) -> None:
        channels = params.get("channels") if isinstance(params, dict) else None
        if not isinstance(channels, list) or not channels:
            sock.send({"id": req_id, "method": method, "code": codes.MISSING_OR_INVALID_ARGUMENT})
            return
        bad = [c for c in channels if not self._channel_ok(sock, str(c))]
        if bad:
            sock.send(
                {
                    "id": req_id,
                    "code": codes.LEGACY_BAD_REQUEST,
                    "method": method,
                    "message": f"invalid channel {{{', '.join(map(str, bad))}}}",
                }
            )
            return
        if len(sock.channels) + len(channels) > 400 and method == "subscribe":
            sock.send({"id": req_id, "method": method, "code": 40107, "message": "EXCEED_MAX_SUBSCRIPTIONS"})
            return
        sock.send({"id": req_id, "method": method, "code": 0})
        for channel in map(str, channels):
            if method == "unsubscribe":
                sock.channels.discard(channel)
                self.book_subs = [
                    b
                    for b in self.book_subs
                    if not (b.sock is sock and f"book.{b.symbol}.{b.depth}" == channel)
                ]
                continue
            sock.channels.add(channel)
            self._initial_push(sock, channel, req_id, params)

    def _channel_ok(self, sock: SimSocket, channel: str) -> bool:
        parts = channel.split(".")
        insts = self.engine.instruments
        if sock.kind == "user":
            if sock.account is None or parts[0] != "user":
                return False
            return channel in ("user.order", "user.trade", "user.balance") or (
                len(parts) == 3 and parts[1] in ("order", "trade") and parts[2] in insts
            )
        if parts[0] in ("ticker", "trade") and len(parts) == 2:
            return parts[1] in insts
        if parts[0] == "book" and len(parts) == 3:
            return parts[1] in insts and parts[2] in ("10", "50")
        if parts[0] == "candlestick" and len(parts) == 3:
            return parts[1] in render.TIMEFRAMES_MS and parts[2] in insts
        return False

    def _push(
        self,
        sock: SimSocket,
        subscription: str,
        channel: str,
        data: list[Any],
        req_id: Any = -1,
        **extra: Any,
    ) -> None:
        """A channel's data; a `malformed_ws` fault matches the subscription (`user.order.BTC_USD`)."""
        result: dict[str, Any] = {"subscription": subscription, "channel": channel, **extra, "data": data}
        self.send_data(sock, subscription, {"id": req_id, "method": "subscribe", "code": 0, "result": result})

    def malformed(self, payload: dict[str, Any]) -> dict[str, Any]:
        result = payload["result"]
        return {
            **payload,
            "result": {**result, "data": [MALFORMED_ROW for _ in result["data"]] or [MALFORMED_ROW]},
        }

    def _initial_push(self, sock: SimSocket, channel: str, req_id: Any, params: Params) -> None:
        parts = channel.split(".")
        if parts[0] == "ticker":
            inst = self.engine.instruments[parts[1]]
            self._push(
                sock, channel, "ticker", [render.ticker(self.engine, inst)], instrument_name=inst.symbol
            )
        elif parts[0] == "trade":
            inst = self.engine.instruments[parts[1]]
            trades = list(self.engine.trades[inst.symbol])[-50:][::-1]
            data = [render.public_trade(t, inst) for t in trades]
            self._push(sock, channel, "trade", data, instrument_name=inst.symbol)
        elif parts[0] == "book":
            snapshot_only = str(params.get("book_subscription_type", "SNAPSHOT_AND_UPDATE")) == "SNAPSHOT"
            sub = BookSub(sock, parts[1], int(parts[2]), snapshot_only)
            self.book_subs.append(sub)
            self._send_snapshot(sub)
        elif parts[0] == "candlestick":
            inst = self.engine.instruments[parts[2]]
            data = render.candles(self.engine.trades[inst.symbol], inst, render.TIMEFRAMES_MS[parts[1]])[-1:]
            self._push(sock, channel, "candlestick", data, instrument_name=inst.symbol, interval=parts[1])
        elif channel.startswith("user.order") and sock.account is not None:
            symbol = parts[2] if len(parts) == 3 else None
            orders = self.engine.open_orders(sock.account.account_id, symbol)
            self._push(sock, channel, "user.order", self._render_orders(orders), req_id)
        elif channel == "user.balance" and sock.account is not None:
            self._push(sock, channel, "user.balance", [render.balance(self.engine, sock.account)])

    # ---- book publishing --------------------------------------------------------------------
    def _levels(self, sub: BookSub) -> dict[str, dict[Decimal, tuple[Decimal, int]]]:
        book = self.engine.books[sub.symbol]
        return {
            side: {p: (q, n) for p, q, n in book.depth(sim_side, sub.depth)}
            for side, sim_side in (("bids", SimSide.BUY), ("asks", SimSide.SELL))
        }

    def _send_snapshot(self, sub: BookSub) -> None:
        inst = self.engine.instruments[sub.symbol]
        levels = self._levels(sub)
        u = next(self.book_seq)
        now_ms = int(time.time() * 1000)
        data: dict[str, Any] = {
            side: render.book_levels(((p, q, n) for p, (q, n) in lv.items()), inst)
            for side, lv in levels.items()
        }
        data.update({"t": now_ms, "tt": now_ms, "u": u})
        self._push(
            sub.sock,
            f"book.{sub.symbol}.{sub.depth}",
            "book",
            [data],
            instrument_name=sub.symbol,
            depth=sub.depth,
        )
        sub.last, sub.last_u, sub.last_sent = levels, u, time.monotonic()

    def _send_delta(self, sub: BookSub, now: float) -> None:
        inst = self.engine.instruments[sub.symbol]
        levels = self._levels(sub)
        update: dict[str, list[list[str]]] = {}
        for side in ("bids", "asks"):
            old, new = sub.last.get(side, {}), levels[side]
            changed = [(p, q, n) for p, (q, n) in new.items() if old.get(p) != (q, n)]
            changed += [(p, Decimal(0), 0) for p in old if p not in new]
            update[side] = render.book_levels(changed, inst)
        if (
            not (update["bids"] or update["asks"])
            and now - sub.last_sent < self.config.book_heartbeat_interval
        ):
            return
        u = next(self.book_seq)
        pu = sub.last_u
        if self.faults.take(FaultKind.SEQUENCE_GAP, f"book.{sub.symbol}"):
            pu = next(self.book_seq)  # as if a delta in between had been lost
        now_ms = int(time.time() * 1000)
        data = {"update": update, "t": now_ms, "tt": now_ms, "u": u, "pu": pu}
        self._push(
            sub.sock,
            f"book.{sub.symbol}.{sub.depth}",
            "book.update",
            [data],
            instrument_name=sub.symbol,
            depth=sub.depth,
        )
        sub.last, sub.last_u, sub.last_sent = levels, u, now

    async def _publisher_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.book_update_interval)
            try:
                self._publish_once()
            except Exception:  # never let one bad frame stop the feed
                log.exception("publisher failed")

    def _publish_once(self) -> None:
        now = time.monotonic()
        for sub in list(self.book_subs):
            if sub.sock not in self.sockets:
                continue
            if sub.snapshot_only:
                if now - sub.last_sent >= 0.5:
                    self._send_snapshot(sub)
            else:
                self._send_delta(sub, now)
        dirty, self.dirty_books = self.dirty_books, set()
        for symbol in dirty:
            inst = self.engine.instruments[symbol]
            channel = f"ticker.{symbol}"
            socks = [s for s in self.sockets if channel in s.channels]
            if socks:
                data = [render.ticker(self.engine, inst)]
                for sock in socks:
                    self._push(sock, channel, "ticker", data, instrument_name=symbol)
        accounts, self.dirty_balances = self.dirty_balances, set()
        for sock in self.sockets:
            if sock.account and sock.account.account_id in accounts and "user.balance" in sock.channels:
                self._push(sock, "user.balance", "user.balance", [render.balance(self.engine, sock.account)])

    # ---- engine events → user and trade channels ------------------------------------------
    def _on_engine_event(self, event: EngineEvent) -> None:
        if isinstance(event, BookEvent):
            self.dirty_books.add(event.instrument)
        elif isinstance(event, TradeEvent):
            self._on_trade(event)
        elif isinstance(event, BalanceEvent):
            self.dirty_balances.add(event.account_id)
        elif isinstance(event, OrderEvent):
            o = event.order
            inst = self.engine.instruments[o.instrument]
            self._to_user(
                o.account_id,
                "user.order",
                o.instrument,
                lambda: render.order(o, inst, with_transaction_time=True),
            )
        elif isinstance(event, FillEvent):
            f = event.fill
            inst = self.engine.instruments[f.instrument]
            self._to_user(f.account_id, "user.trade", f.instrument, lambda: render.fill(f, inst, ws=True))

    def _on_trade(self, event: TradeEvent) -> None:
        trade = event.trade
        inst = self.engine.instruments[trade.instrument]
        self.dirty_books.add(trade.instrument)
        for sock in self.sockets:
            if f"trade.{trade.instrument}" in sock.channels:
                self._push(
                    sock,
                    f"trade.{trade.instrument}",
                    "trade",
                    [render.public_trade(trade, inst)],
                    instrument_name=trade.instrument,
                )
            for channel in sock.channels:
                if channel.startswith("candlestick.") and channel.endswith("." + trade.instrument):
                    frame = channel.split(".")[1]
                    frame_ms = render.TIMEFRAMES_MS[frame]
                    data = render.candles(self._current_bucket(inst.symbol, frame_ms), inst, frame_ms)
                    self._push(
                        sock, channel, "candlestick", data, instrument_name=inst.symbol, interval=frame
                    )

    def _current_bucket(self, symbol: str, frame_ms: int) -> list[PublicTrade]:
        """The trades of the newest candle only (scanning from the end, not the whole history)."""
        trades = self.engine.trades[symbol]
        if not trades:
            return []
        start_ns = trades[-1].time_ns // 1_000_000 // frame_ms * frame_ms * 1_000_000
        bucket = list(itertools.takewhile(lambda t: t.time_ns >= start_ns, reversed(trades)))
        return bucket[::-1]

    def _to_user(self, account_id: str, base: str, symbol: str, row: Callable[[], dict[str, Any]]) -> None:
        for sock in self.sockets:
            if sock.account is None or sock.account.account_id != account_id:
                continue
            for channel in (base, f"{base}.{symbol}"):
                if channel in sock.channels:
                    self._push(sock, channel, base, [row()], instrument_name=symbol)
