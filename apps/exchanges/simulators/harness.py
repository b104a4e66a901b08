"""Run a simulator in a background thread with its own event loop (tests, benchmarks, tools).

    with SimulatorThread(CryptocomSimulator(SimConfig(tick_interval=0.1))) as sim:
        print(sim.base_url)            # http://127.0.0.1:<free port>
        sim.call(sim.server.reset_state)

Clients talk to it over real sockets from any thread or loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from apps.exchanges.simulators.server import SimulatorServer

R = TypeVar("R")


class SimulatorThread:
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

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
