"""`python -m k2.serve`, the web process: with several workers, the supervisor accepts each
connection and hands it to the worker with the fewest; a worker that dies is replaced; SIGTERM
stops them all, and workers whose supervisor is gone stop too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest

from k2.devstack import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def _serve(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "k2.serve", "--port", str(port), "--log-level", "warning", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("k2.serve did not answer")


def _workers(proc: subprocess.Popen[str]) -> set[int]:
    """The pids of the supervisor's worker processes (not multiprocessing's resource tracker)."""
    pids = set()
    for child in psutil.Process(proc.pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                pids.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return pids


def _serving_pid(connection: socket.socket, workers: set[int]) -> int:
    """The worker holding the server end of a connection made from `connection`."""
    local = connection.getsockname()
    for pid in workers:
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.raddr and (c.raddr.ip, c.raddr.port) == local:
                return pid
    raise AssertionError(f"no worker holds the connection from {local}")


def _wait_workers(
    proc: subprocess.Popen[str], count: int, gone: int | None = None, timeout: float = 60
) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pids := _workers(proc)) == count and gone not in pids:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"expected {count} workers, have {_workers(proc)}")


def _burst(port: int, count: int) -> list[socket.socket]:
    """`count` keep-alive connections opened at once, as a load balancer's pool opens them, each
    then used once (all are open before any is used)."""
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    for client in clients:
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    for client in clients:
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
    return clients


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_connections_are_spread_evenly_and_a_dead_worker_is_replaced():
    port = free_port()
    proc = _serve(port, "--workers", "2")
    clients: list[socket.socket] = []
    try:
        _wait_healthy(port, proc)
        workers = _wait_workers(proc, 2)
        # The kernel's hash (one SO_REUSEPORT socket per worker) split such bursts 11/9 to 14/6;
        # each new connection goes to the worker holding the fewest.
        clients = _burst(port, 16)
        spread = Counter(_serving_pid(client, workers) for client in clients)
        assert sorted(spread.values()) == [8, 8], spread
        one = min(workers)
        leaving = [client for client in clients if _serving_pid(client, workers) == one][:6]
        for client in leaving:  # six of one worker's connections end...
            client.close()
        clients = [client for client in clients if client not in leaving]
        time.sleep(0.5)  # (each worker reports its count every tenth of a second)
        more = _burst(port, 6)  # ...so the next six all go to it
        clients += more
        assert {_serving_pid(client, workers) for client in more} == {one}

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_workers(proc, 2, gone=victim)
        assert len(replaced & workers) == 1
        for _ in range(10):  # whichever worker it goes to answers
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        newcomer = (replaced - workers).pop()
        fresh = _burst(port, 4)  # the new worker holds none of the open connections: it gets these
        clients += fresh
        assert {_serving_pid(client, replaced) for client in fresh} == {newcomer}
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(40) == 0
        finally:
            _stop(proc)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in replaced)


def test_workers_stop_when_their_supervisor_is_killed():
    port = free_port()
    proc = _serve(port, "--workers", "2")
    try:
        _wait_healthy(port, proc)
        workers = [psutil.Process(pid) for pid in _wait_workers(proc, 2)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=30)
        assert not alive, [p.pid for p in alive]
    finally:
        _stop(proc)


def test_a_port_already_served_is_refused_rather_than_shared():
    port = free_port()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another k2.serve's workers
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = _serve(port, "--workers", "2")
        try:
            assert proc.wait(30) == 1
            assert proc.stdout is not None
            assert f"127.0.0.1:{port} is already in use" in proc.stdout.read()
        finally:
            _stop(proc)


def _health_on(connection: socket.socket) -> bool:
    """GET /healthz on an open keep-alive connection: whether its whole answer came back (False:
    the server had closed the connection)."""
    try:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                return False
            answer += chunk
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.1 200")


def test_an_idle_keep_alive_connection_stays_open_for_web_keepalive_seconds():
    """Past uvicorn's own 5 s (a load balancer in front keeps its connections 60 s, and sends
    requests on them until then), and closed once WEB_KEEPALIVE_SECONDS is up."""
    port = free_port()
    proc = _serve(port, "--workers", "2", env={"WEB_KEEPALIVE_SECONDS": "8"})
    try:
        _wait_healthy(port, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            assert _health_on(connection)
            time.sleep(6)
            assert _health_on(connection)  # idle for 6 s: still open
            idle_from = time.monotonic()
            connection.settimeout(15)
            assert connection.recv(1) == b""  # the server closes it...
            assert 7 <= time.monotonic() - idle_from <= 11  # ...once idle for 8 s
    finally:
        _stop(proc)


def test_a_keep_alive_that_is_not_a_number_of_seconds_is_refused_at_start():
    proc = _serve(free_port(), env={"WEB_KEEPALIVE_SECONDS": "0"})
    try:
        assert proc.wait(30) == 2
        assert proc.stdout is not None
        assert "WEB_KEEPALIVE_SECONDS must be a whole number of seconds" in proc.stdout.read()
    finally:
        _stop(proc)
