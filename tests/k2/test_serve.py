"""`python -m k2.serve`, the web process: several workers, each with its own SO_REUSEPORT socket,
share the connections; a worker that dies is replaced; SIGTERM stops them all."""

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


def _serve(port: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "k2.serve", "--port", str(port), "--log-level", "warning", *args],
        cwd=ROOT,
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


def _listeners(proc: subprocess.Popen[str], port: int) -> set[int]:
    """The pids of the supervisor's children that listen on `port`."""
    pids = set()
    for child in psutil.Process(proc.pid).children():
        try:
            connections = child.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in connections):
            pids.add(child.pid)
    return pids


def _serving_pid(connection: socket.socket, workers: set[int]) -> int:
    """The worker holding the server end of a connection made from `connection`."""
    local = connection.getsockname()
    for pid in workers:
        for c in psutil.Process(pid).net_connections(kind="tcp"):
            if c.raddr and (c.raddr.ip, c.raddr.port) == local:
                return pid
    raise AssertionError(f"no worker holds the connection from {local}")


def _wait_listeners(
    proc: subprocess.Popen[str], port: int, count: int, gone: int | None = None, timeout: float = 60
) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(pids := _listeners(proc, port)) == count and gone not in pids:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"expected {count} listening workers, have {_listeners(proc, port)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_connections_are_spread_over_the_workers_and_a_dead_worker_is_replaced():
    port = free_port()
    proc = _serve(port, "--workers", "2")
    try:
        _wait_healthy(port, proc)
        workers = _wait_listeners(proc, port, 2)
        # A burst of keep-alive connections, as a load balancer's pool opens them: each worker
        # gets some (all 16 on one worker: a chance of 2 in 65536 with an even spread).
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
        try:
            for client in clients:  # all are open before any is used
                client.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            for client in clients:
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
            spread = Counter(_serving_pid(client, workers) for client in clients)
        finally:
            for client in clients:
                client.close()
        assert set(spread) == workers, spread

        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        replaced = _wait_listeners(proc, port, 2, gone=victim)
        assert len(replaced & workers) == 1
        for _ in range(10):  # whichever worker the kernel picks answers
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(40) == 0
        finally:
            _stop(proc)
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in replaced)


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
