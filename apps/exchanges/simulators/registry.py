"""Simulators by venue name: the management command and tools look them up here."""

from __future__ import annotations

from collections.abc import Callable

from apps.exchanges.simulators.server import SimConfig, SimulatorServer


def _cryptocom(config: SimConfig) -> SimulatorServer:
    from apps.exchanges.simulators.cryptocom import CryptocomSimulator

    return CryptocomSimulator(config)


def _kalshi(config: SimConfig) -> SimulatorServer:
    from apps.exchanges.simulators.kalshi import KalshiSimulator

    return KalshiSimulator(config)


SIMULATORS: dict[str, Callable[[SimConfig], SimulatorServer]] = {"cryptocom": _cryptocom, "kalshi": _kalshi}
DEFAULT_PORTS: dict[str, int] = {"cryptocom": 8601, "kalshi": 8602}
