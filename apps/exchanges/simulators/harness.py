"""Run a simulator for tests, benchmarks and tools: in a background thread with its own event
loop, or in a process of its own.

    with SimulatorThread(CryptocomSimulator(SimConfig(tick_interval=0.1))) as sim:
        print(sim.base_url)            # http://127.0.0.1:<free port>
        sim.call(sim.server.reset_state)

    with SimulatorProcess("cryptocom", "--tick-interval", "0.2") as sim:
        print(sim.base_url)            # http://127.0.0.1:<port the simulator bound>

A thread is cheap and its state is at hand (`call`), but it shares the caller's GIL: while the
caller's threads run, requests wait, and arrive at the simulator later and closer together than
they were sent. Where that timing is what is measured (latency benchmarks, a rate limiter's
pacing checked against the venue's limit), the simulator runs as `make run` runs it: in its own
process (`manage.py run_exchange_simulator`). Clients talk to either over real sockets from any
thread or loop.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self, TypeVar

from apps.exchanges.simulators.server import SimulatorServer

R = TypeVar("R")


class _Runner:
    """`with runner:` starts it and stops it, whatever happens inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SimulatorThread(_Runner):
    """Owns a thread running `server` until `stop()`; start/stop are bounded in time."""

    def __init__(self, server: SimulatorServer, *, start_timeout: float = 15.0) -> None:
        self.server = server
        self.start_timeout = start_timeout
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"sim-{server.venue}", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # surfaced to the starting thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.server.stop())
        self.loop.close()

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            raise TimeoutError("simulator did not start in time")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def call(self, fn: Callable[[], R], timeout: float = 10.0) -> R:
        """Run `fn` on the simulator's loop (its state is single-threaded) and return its result."""

        async def run() -> R:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def ws_url(self) -> str:
        return self.server.base_url.replace("http://", "ws://", 1)


ROOT = Path(__file__).resolve().parents[3]
_LISTENING = re.compile(r"simulator listening on (http://[\w.-]+:\d+)")


class SimulatorProcess(_Runner):
    """`manage.py run_exchange_simulator <venue> <args>` in a process of its own, on a port it
    binds itself (no race for a free one); start/stop are bounded in time. Its output goes to a
    file (a pipe nobody reads could fill and stall it) and is quoted if it fails to start."""

    def __init__(self, venue: str, *args: str, start_timeout: float = 30.0) -> None:
        self.venue = venue
        self.args = args
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._output: IO[bytes] | None = None

    def start(self) -> Self:
        # Appended to (reading it moves no writes); open until `stop`, which closes it.
        self._output = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115
        cmd = [sys.executable, "manage.py", "run_exchange_simulator", self.venue, "--port", "0", *self.args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if match := _LISTENING.search(self.output()):
                self.base_url = match.group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        output = self.output()
        self.stop()
        raise RuntimeError(f"{self.venue} simulator did not start:\n{output[-2000:]}")

    def output(self) -> str:
        """What the process has printed so far."""
        if self._output is None:
            return ""
        self._output.seek(0)
        return self._output.read().decode(errors="replace")

    def stop(self) -> None:
        """SIGTERM (the command stops cleanly), then SIGKILL if it has not exited in 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._output is not None:
            self._output.close()
            self._output = None
