"""The web process: uvicorn serving `k2.asgi:application` in one or several worker processes.

    python -m k2.serve [--host 127.0.0.1] [--port $PORT] [--workers $WEB_CONCURRENCY]

One worker (the default) is uvicorn in this process. With several, this process listens
on the port, accepts each new connection and hands it (its file descriptor, over a Unix socket
pair) to the worker holding the fewest open connections, HTTP keep-alive and WebSocket alike;
the worker serves it as if it had accepted it. Connections are long-lived (a load balancer's
keep-alive pool, the trading bench's 20 clients), so where they land decides how the load is
spread, and two other ways spread it badly:
- uvicorn's own `--workers` gives every worker one shared socket: all of them wake for a new
  connection and the first to run accepts every connection waiting, so a burst lands on one
  worker while the others idle (in the trading bench one of two workers got 1176 of 1182 orders);
- one SO_REUSEPORT socket per worker lets the kernel pick by a hash of each connection's
  addresses: even on average, not for a handful (the bench's 20 connections split 11/9 to 14/6
  from run to run, and the busier worker queued the bursts' orders: paced p99 up to ~40 ms).

Each worker reports, every tenth of a second, how many connections it holds and how many it has
been handed in all (shared memory, one slot per worker, written by that worker only); the
supervisor counts those handed over since, so a burst of new connections is spread evenly before
any report comes in.

This process also supervises: it starts the workers, starts a new one in place of one that dies
(unless it failed starting up, which would only fail again: then everything stops), and on
SIGTERM or SIGINT stops accepting, stops the workers (each one's uvicorn shuts down gracefully)
and waits for them.

An idle keep-alive connection stays open `WEB_KEEPALIVE_SECONDS` (75), longer than the idle
timeout of a load balancer in front (`KEEPALIVE_SECONDS`).

A process that serves (the one worker, or each of several) has CPython's automatic garbage
collector off, `k2.handlers` collecting between requests and on the server's tick instead, and
a 1 ms GIL switch interval (`SWITCH_INTERVAL_SECONDS`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from typing import Any

import uvicorn

APP = "k2.asgi:application"
STOP_GRACE_SECONDS = 30.0  # a worker still running this long after SIGTERM is killed
STARTUP_SECONDS = 30.0  # a worker exiting with an error sooner than this failed to start
BACKLOG = 2048  # uvicorn's default
USAGE = "Serve K2's web application (HTTP API, admin, WebSockets) with uvicorn."
# How long a thread may hold the GIL while another waits for it (CPython's default: 5 ms). A
# request's thread that comes back from a round trip (PostgreSQL, Redis, the venue: some twenty
# for an order) waits for the GIL while another request's thread computes, up to this long each
# time; the event loops' threads wait likewise to read a socket. The trading bench's paced phase
# (bursts of orders on each worker), interleaved runs: p99 overhead 17.6-27.3 ms (7 runs) at
# 1 ms, 22.7-25.2 ms (4 runs) at 5 ms.
SWITCH_INTERVAL_SECONDS = 0.001
# How long an idle keep-alive connection stays open (`WEB_KEEPALIVE_SECONDS`; uvicorn's default
# is 5 s). Longer than the idle timeout of the load balancer in front (AWS's ALB: 60 s): a server
# that closes first can close a connection just as the balancer sends a request on it, which
# the client gets as a 502, for an order as for anything else.
KEEPALIVE_SECONDS = 75


class Server(uvicorn.Server):
    """uvicorn in a process set up to serve: the automatic garbage collector off, so that it
    never runs inside a request (`k2.handlers` collects between requests, and on this server's
    ticks: `collect_on_tick`), and a 1 ms GIL switch interval."""

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        gc.disable()
        super().run(sockets)

    async def on_tick(self, counter: int) -> bool:
        from k2.asgi import django_asgi_app
        from k2.handlers import collect_on_tick

        collect_on_tick(django_asgi_app.in_flight)
        return await super().on_tick(counter)


def _keepalive_seconds() -> int:
    """`WEB_KEEPALIVE_SECONDS`, else `KEEPALIVE_SECONDS`; ValueError unless a whole number > 0."""
    value = int(os.environ.get("WEB_KEEPALIVE_SECONDS") or KEEPALIVE_SECONDS)
    if value < 1:
        raise ValueError(value)
    return value


def _config(host: str, port: int, log_level: str) -> Any:
    # As the Procfile ran uvicorn: no access log (the audit log records every request), no
    # lifespan (Django has none).
    return uvicorn.Config(
        APP, host=host, port=port, lifespan="off", access_log=False, log_level=log_level,
        timeout_keep_alive=_keepalive_seconds(),
    )  # fmt: skip


def _worker(channel: socket.socket, load: Any, slot: int, log_level: str) -> None:
    """One worker process: uvicorn serving the connections the supervisor hands it over
    `channel`. The channel's end (the supervisor stopping, or killed) stops the worker."""

    class HandedServer(Server):
        """uvicorn with no listening socket of its own."""

        received = 0  # connections handed over, in all
        attaching: set[asyncio.Task[None]] = set()  # (the loop keeps only weak references)

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=[])
            config = self.config

            def protocol() -> asyncio.Protocol:  # as uvicorn's own startup builds it
                return config.http_protocol_class(  # type: ignore[call-arg]
                    config=config, server_state=self.server_state, app_state=self.lifespan.state
                )

            loop = asyncio.get_running_loop()
            channel.setblocking(False)
            loop.add_reader(channel.fileno(), self._receive, loop, protocol)

        def _receive(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
            while True:
                try:
                    _, fds, _, _ = socket.recv_fds(channel, 1, 16)
                except BlockingIOError:
                    return
                except OSError:
                    fds = []
                if not fds:  # the supervisor's end is closed: it is stopping, or gone
                    loop.remove_reader(channel.fileno())
                    self.should_exit = True
                    return
                for fd in fds:
                    self.received += 1
                    task = loop.create_task(self._serve_handed(loop, protocol, socket.socket(fileno=fd)))
                    self.attaching.add(task)
                    task.add_done_callback(self.attaching.discard)

        async def _serve_handed(
            self, loop: asyncio.AbstractEventLoop, protocol: Any, sock: socket.socket
        ) -> None:
            if self.should_exit:
                sock.close()
                return
            try:
                await loop.connect_accepted_socket(protocol, sock)
            except OSError:  # the client is gone already
                sock.close()

        async def on_tick(self, counter: int) -> bool:
            load[2 * slot] = len(self.server_state.connections)
            load[2 * slot + 1] = self.received
            return await super().on_tick(counter)

    HandedServer(_config("127.0.0.1", 0, log_level)).run()


def _listening(host: str, port: int) -> socket.socket:
    """The port's listening socket. Without SO_REUSEPORT: a port another server (or another K2
    web process) listens on is refused, never silently shared."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _say(message: str) -> None:
    print(f"k2.serve: {message}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, host: str, port: int, workers: int, log_level: str) -> None:
        self.host, self.port, self.log_level = host, port, log_level
        self.count = workers
        self.context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing shared
        # Per worker slot: [open connections, connections received in all], as it last reported.
        self.load: Any = self.context.RawArray("q", 2 * workers)
        self.handed = [0] * workers  # connections handed to the slot's worker, in all
        self.channels: list[socket.socket | None] = [None] * workers
        self.workers: list[Any] = []
        self.started: dict[int, float] = {}
        self.stopping = False

    def _start(self, slot: int) -> Any:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = self.channels[slot]
        if old is not None:
            old.close()
        ours.setblocking(False)
        self.channels[slot] = ours
        self.load[2 * slot] = self.load[2 * slot + 1] = self.handed[slot] = 0
        process = self.context.Process(
            target=_worker, args=(theirs, self.load, slot, self.log_level), name="k2-web-worker"
        )
        process.start()
        theirs.close()
        assert process.pid is not None
        self.started[process.pid] = time.monotonic()
        return process

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def _open(self, slot: int) -> int:
        """The slot's open connections: as its worker last reported, plus those handed to it since."""
        return int(self.load[2 * slot]) + self.handed[slot] - int(self.load[2 * slot + 1])

    def _hand_over(self, connection: socket.socket) -> None:
        """To the worker with the fewest open connections (the next one if its channel is full
        or gone); closed if no worker takes it."""
        for slot in sorted(range(self.count), key=self._open):
            channel = self.channels[slot]
            if channel is None:
                continue
            try:
                socket.send_fds(channel, [b"c"], [connection.fileno()])
            except OSError:
                continue
            self.handed[slot] += 1
            return
        _say("no worker took a new connection; closed it")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                return
            except OSError as error:  # out of file descriptors, say: the next round tries again
                _say(f"accept failed: {error}")
                return
            with connection:  # the worker holds its own copy once handed over
                self._hand_over(connection)

    def run(self) -> int:
        try:
            listener = _listening(self.host, self.port)
        except OSError:
            _say(f"{self.host}:{self.port} is already in use")
            return 1
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        status = 0
        with listener:
            self.workers = [self._start(slot) for slot in range(self.count)]
            while not self.stopping:
                ready = wait([listener, *(w.sentinel for w in self.workers)], timeout=0.5)
                if listener in ready:
                    self._accept(listener)
                for slot, process in enumerate(self.workers):
                    if self.stopping or process.is_alive():
                        continue
                    lived = time.monotonic() - self.started.pop(process.pid, 0.0)
                    if process.exitcode and process.exitcode > 0 and lived < STARTUP_SECONDS:
                        # an import error, say: every new worker would fail alike
                        _say(f"worker {process.pid} failed to start (exit {process.exitcode}); stopping")
                        self.stopping, status = True, 1
                        break
                    _say(f"worker {process.pid} ended (exit {process.exitcode}); starting another")
                    self.workers[slot] = self._start(slot)
        self._stop_all()
        return status

    def _stop_all(self) -> None:
        for channel in self.channels:
            if channel is not None:
                channel.close()
        for process in self.workers:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for process in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m k2.serve", description=USAGE)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
    parser.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY") or 1),
        help="worker processes (default: $WEB_CONCURRENCY, else 1)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        _keepalive_seconds()
    except ValueError:
        parser.error("WEB_KEEPALIVE_SECONDS must be a whole number of seconds, at least 1")
    if args.workers == 1:
        Server(_config(args.host, args.port, args.log_level)).run()
        return 0
    return Supervisor(args.host, args.port, args.workers, args.log_level).run()


if __name__ == "__main__":
    sys.exit(main())
