"""Venue HTTP clients share one TLS context per process: building one loads the CA bundle
(20-40 ms of CPU with the GIL held), and the trading path builds a client per pooled adapter."""

from __future__ import annotations

import ssl

from apps.exchanges.adapters.cryptocom.client import CryptocomRestClient
from apps.exchanges.adapters.cryptocom.client import RestSettings as CryptocomSettings
from apps.exchanges.adapters.kalshi.client import KalshiRestClient
from apps.exchanges.adapters.kalshi.client import RestSettings as KalshiSettings
from apps.exchanges.adapters.transport import tls_context


async def test_every_venue_client_uses_the_process_tls_context() -> None:
    clients: list[CryptocomRestClient | KalshiRestClient] = [
        CryptocomRestClient(base_url="https://api.crypto.com/exchange/v1", credentials=None,
                            settings=CryptocomSettings(read_timeout=3.0, max_connections=7)),
        CryptocomRestClient(base_url="https://api.crypto.com/exchange/v1", credentials=None,
                            settings=CryptocomSettings()),
        KalshiRestClient(base_url="https://api.elections.kalshi.com/trade-api/v2", credentials=None,
                         settings=KalshiSettings()),
    ]  # fmt: skip
    try:
        context = tls_context()
        assert isinstance(context, ssl.SSLContext)
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname
        for client in clients:
            assert client.http._transport._pool._ssl_context is context  # type: ignore[attr-defined]
        assert clients[0].http.timeout.read == 3.0
        assert clients[0].http._transport._pool._max_connections == 7  # type: ignore[attr-defined]
        assert clients[0].http.headers["User-Agent"] == "k2/1"
    finally:
        for client in clients:
            await client.http.aclose()
