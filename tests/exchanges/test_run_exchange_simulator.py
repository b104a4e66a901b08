"""The `run_exchange_simulator` command: serves the venue on the given port, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from apps.exchanges.simulators.harness import SimulatorProcess

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_command_serves_and_stops_on_sigterm():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run_exchange_simulator", "cryptocom", "--port", str(port)],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        response = None
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/exchange/v1/public/get-instruments", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert response is not None
        assert response.status_code == 200
        assert {r["symbol"] for r in response.json()["result"]["data"]} >= {"BTC_USD", "ETH_USD", "SOL_USD"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        out = proc.stdout.read() if proc.stdout else ""
        assert f"listening on http://127.0.0.1:{port}" in out
        assert "cryptocom simulator stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_procfile_runs_the_cryptocom_simulator():
    lines = (ROOT / "Procfile").read_text().splitlines()
    assert "sim-cryptocom: python manage.py run_exchange_simulator cryptocom --port 8601" in lines


def test_simulator_process_serves_on_the_port_it_bound_and_stops():
    with SimulatorProcess("kalshi") as sim:
        assert sim.proc is not None
        assert httpx.get(f"{sim.base_url}/_sim/state", timeout=5).status_code == 200
        proc = sim.proc
    assert proc.returncode == 0  # stopped by SIGTERM, cleanly
    assert sim.output() == ""  # its output file is closed with it


def test_simulator_process_that_cannot_start_says_why():
    with pytest.raises(RuntimeError, match="invalid choice: 'nasdaq'"):
        SimulatorProcess("nasdaq").start()
