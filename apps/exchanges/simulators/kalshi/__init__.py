"""The Kalshi Trade API v2 simulator (REST + WebSocket) on the shared simulator framework."""

from apps.exchanges.simulators.kalshi.server import KalshiSimConfig, KalshiSimulator

__all__ = ["KalshiSimConfig", "KalshiSimulator"]
