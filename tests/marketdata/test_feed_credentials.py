"""The feed's own key at a signed venue: configured, or (development) taken from the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from apps.exchanges.adapters.kalshi import KalshiAdapter
from apps.marketdata.feed import runner
from tests.marketdata.conftest import KALSHI_FAST, KalshiSimHandle


@pytest.fixture
def kalshi_urls(kalshi_sim: KalshiSimHandle, md_settings: Any) -> KalshiSimHandle:
    md_settings.K2_KALSHI_REST_URL = kalshi_sim.rest_url
    md_settings.K2_KALSHI_WS_URL = kalshi_sim.ws_url
    md_settings.K2_MARKETDATA_FEED_CREDENTIALS = {}
    runner._simulator_keys.clear()
    return kalshi_sim


def test_no_key_without_configuration(kalshi_urls: KalshiSimHandle, md_settings: Any) -> None:
    md_settings.K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS = []
    assert runner.feed_credentials("kalshi") is None


async def test_simulator_hands_the_feed_a_working_key(kalshi_urls: KalshiSimHandle, md_settings: Any) -> None:
    md_settings.K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS = ["kalshi"]
    credentials = runner.feed_credentials("kalshi")
    assert credentials is not None
    assert credentials.api_secret.startswith("-----BEGIN")
    assert runner.feed_credentials("kalshi") is credentials  # one key per process
    adapter = KalshiAdapter(credentials=credentials, base_url=kalshi_urls.rest_url, settings=KALSHI_FAST)
    try:
        assert await adapter.get_balances() is not None  # the simulator accepts the signed call
    finally:
        await adapter.close()


def test_configured_credentials_win(kalshi_urls: KalshiSimHandle, md_settings: Any) -> None:
    md_settings.K2_MARKETDATA_FEED_SIMULATOR_ACCOUNTS = ["kalshi"]
    md_settings.K2_MARKETDATA_FEED_CREDENTIALS = {"kalshi": {"api_key": "configured", "api_secret": "pem"}}
    credentials = runner.feed_credentials("kalshi")
    assert credentials is not None
    assert credentials.api_key == "configured"
