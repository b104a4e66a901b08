"""The Crypto.com Exchange v1 simulator (REST + WebSocket) on the shared simulator framework."""

from apps.exchanges.simulators.cryptocom.server import CryptocomSimulator

__all__ = ["CryptocomSimulator"]
