"""The web process: uvicorn serving `k2.asgi:application` in one or several worker processes.

    python -m k2.serve [--host 127.0.0.1] [--port $PORT] [--workers $WEB_CONCURRENCY]

One worker (the default) is plain uvicorn in this process. With several, each worker listens on
a socket of its own, bound to the same address with SO_REUSEPORT, and the kernel spreads new
connections across them (by a hash of each connection's addresses: even on average, not for a
handful; the trading bench's 20 connections have split about 14/6). uvicorn's own `--workers`
gives every worker one shared socket: all of them wake for a new connection and the first to run
accepts every connection waiting, so a burst of keep-alive connections (a load balancer's pool,
the trading bench's 20 clients) lands on one worker while the others idle; in the bench one
worker got 1176 of 1182 orders, with two workers.

This process only supervises: it starts the workers, starts a new one in place of one that dies
(unless it failed starting up, which would only fail again: then everything stops), and on SIGTERM
or SIGINT stops them all (each one's uvicorn shuts down gracefully) and waits for them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from typing import Any

APP = "k2.asgi:application"
STOP_GRACE_SECONDS = 30.0  # a worker still running this long after SIGTERM is killed
STARTUP_SECONDS = 30.0  # a worker exiting with an error sooner than this failed to start
USAGE = "Serve K2's web application (HTTP API, admin, WebSockets) with uvicorn."


def _config(host: str, port: int, log_level: str) -> Any:
    import uvicorn

    # As the Procfile ran uvicorn: no access log (the audit log records every request), no
    # lifespan (Django has none).
    return uvicorn.Config(APP, host=host, port=port, lifespan="off", access_log=False, log_level=log_level)


def _bound(host: str, port: int, *, reuseport: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    """One worker process: its own listening socket in the port's SO_REUSEPORT group."""
    import uvicorn

    config = _config(host, port, log_level)
    sock = _bound(host, port, reuseport=True)
    sock.listen(config.backlog)
    uvicorn.Server(config).run(sockets=[sock])


def _port_is_free(host: str, port: int) -> bool:
    """Nothing listens on the port: not another server, nor another K2 web process, whose
    SO_REUSEPORT group these workers would otherwise silently join, splitting its traffic."""
    try:
        _bound(host, port, reuseport=False).close()
    except OSError:
        return False
    return True


def _say(message: str) -> None:
    print(f"k2.serve: {message}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, host: str, port: int, workers: int, log_level: str) -> None:
        self.args = (host, port, log_level)
        self.count = workers
        self.context = multiprocessing.get_context("spawn")  # fresh interpreters: nothing shared
        self.workers: list[Any] = []
        self.started: dict[int, float] = {}
        self.stopping = False

    def _start(self) -> Any:
        process = self.context.Process(target=_worker, args=self.args, name="k2-web-worker")
        process.start()
        assert process.pid is not None
        self.started[process.pid] = time.monotonic()
        return process

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        host, port, _ = self.args
        if not _port_is_free(host, port):
            _say(f"{host}:{port} is already in use")
            return 1
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.workers = [self._start() for _ in range(self.count)]
        status = 0
        while not self.stopping:
            wait([w.sentinel for w in self.workers], timeout=0.5)
            for index, process in enumerate(self.workers):
                if self.stopping or process.is_alive():
                    continue
                lived = time.monotonic() - self.started.pop(process.pid, 0.0)
                if process.exitcode and process.exitcode > 0 and lived < STARTUP_SECONDS:
                    # an import error, a port it cannot bind: every new worker would fail alike
                    _say(f"worker {process.pid} failed to start (exit {process.exitcode}); stopping")
                    self.stopping, status = True, 1
                    break
                _say(f"worker {process.pid} ended (exit {process.exitcode}); starting another")
                self.workers[index] = self._start()
        self._stop_all()
        return status

    def _stop_all(self) -> None:
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
    if args.workers == 1:
        import uvicorn

        uvicorn.Server(_config(args.host, args.port, args.log_level)).run()
        return 0
    return Supervisor(args.host, args.port, args.workers, args.log_level).run()


if __name__ == "__main__":
    sys.exit(main())
