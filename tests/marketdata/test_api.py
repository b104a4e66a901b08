"""REST: instruments, prices, candles, watchlists (sharing, copying, limits, isolation)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import User
from apps.marketdata import cache
from apps.marketdata.models import Candle, Instrument, Watchlist

pytestmark = pytest.mark.django_db


def instrument(symbol: str, *, venue: str = "cryptocom", kind: str = "crypto", **extra) -> Instrument:
    return Instrument.objects.create(
        symbol=symbol,
        venue=venue,
        venue_symbol=symbol.replace("-", "_") if kind == "crypto" else symbol,
        instrument_type=kind,
        base=symbol.split("-")[0] if kind == "crypto" else "",
        tick_size=Decimal("0.01"),
        quantity_step=Decimal("0.0001"),
        min_quantity=Decimal("0.0001"),
        **extra,
    )


@pytest.fixture
def market():
    btc = instrument("BTC-USD")
    eth = instrument("ETH-USD")
    event = instrument(
        "KXBTC-25DEC31-B100000",
        venue="kalshi",
        kind="event",
        event_ticker="KXBTC-25DEC31",
        series_ticker="KXBTC",
        title="Bitcoin above 100k on Dec 31",
    )
    instrument("OLD-USD", status="delisted")
    return {"btc": btc, "eth": eth, "event": event}


def set_price(symbol: str, venue: str = "cryptocom", *, live: bool = True, **fields) -> None:
    doc = {
        "seq": 7, "instrument": symbol, "venue": venue, "price": "64950.00", "bid": "64949.50",
        "ask": "64950.50", "bid_size": "1.5", "ask_size": "2", "change_24h": "2.50",
        "volume_24h": "1234.5", "high_24h": "66000.00", "low_24h": "63000.00",
        "timestamp": "2026-01-01T00:00:00Z", "stale": False, **fields,
    }  # fmt: skip
    client = cache.sync_client()
    client.set(cache.price_key(symbol), json.dumps(doc))
    if live:
        client.set(cache.venue_key(venue), json.dumps({"venue": venue, "state": "live", "since": ""}))


def user(email: str = "u@example.com") -> User:
    return User.objects.create_user(email=email, password="irrelevant-Passw0rd!")


@pytest.fixture
def client() -> APIClient:
    c = APIClient()
    c.force_authenticate(user())
    return c


def data(response):
    body = response.json()
    assert set(body) == {"data", "meta"}, body
    return body["data"]


def error(response, status: int, code: str):
    assert response.status_code == status, response.content
    body = response.json()["error"]
    assert body["code"] == code, body
    return body


# ---- instruments ----------------------------------------------------------------------------


def test_instruments_filter_search_and_paginate(client, market):
    rows = data(client.get("/v1/instruments"))
    assert [r["symbol"] for r in rows] == ["BTC-USD", "ETH-USD", "KXBTC-25DEC31-B100000", "OLD-USD"]
    assert rows[0]["tick_size"] == "0.01"
    assert rows[0]["instrument_type"] == "crypto"
    assert [r["symbol"] for r in data(client.get("/v1/instruments?type=event"))] == ["KXBTC-25DEC31-B100000"]
    assert [r["symbol"] for r in data(client.get("/v1/instruments?venue=kalshi"))] == [
        "KXBTC-25DEC31-B100000"
    ]
    assert [r["symbol"] for r in data(client.get("/v1/instruments?status=delisted"))] == ["OLD-USD"]
    assert [r["symbol"] for r in data(client.get("/v1/instruments?q=bitcoin"))] == ["KXBTC-25DEC31-B100000"]
    assert [r["symbol"] for r in data(client.get("/v1/instruments?q=eth"))] == ["ETH-USD"]
    page = client.get("/v1/instruments?limit=2").json()
    assert [r["symbol"] for r in page["data"]] == ["BTC-USD", "ETH-USD"]
    cursor = page["meta"]["pagination"]["next_cursor"]
    rest = data(client.get(f"/v1/instruments?limit=2&cursor={cursor}"))
    assert [r["symbol"] for r in rest] == ["KXBTC-25DEC31-B100000", "OLD-USD"]
    error(client.get("/v1/instruments?type=stock"), 400, "VALIDATION_ERROR")
    error(client.get("/v1/instruments?sort=tick_size"), 400, "VALIDATION_ERROR")
    assert data(client.get("/v1/instruments/kxbtc-25dec31-b100000"))["series_ticker"] == "KXBTC"


def test_market_data_needs_authentication(market):
    error(APIClient().get("/v1/prices/BTC-USD"), 401, "UNAUTHENTICATED")
    error(APIClient().get("/v1/instruments"), 401, "UNAUTHENTICATED")


# ---- prices ---------------------------------------------------------------------------------


def test_price_single_and_batch_with_stale_flag(client, market):
    set_price("BTC-USD")
    body = data(client.get("/v1/prices/BTC-USD"))
    assert body == {
        "instrument": "BTC-USD", "venue": "cryptocom", "price": "64950.00", "bid": "64949.50",
        "ask": "64950.50", "bid_size": "1.5", "ask_size": "2", "change_24h": "2.50", "volume_24h": "1234.5",
        "high_24h": "66000.00", "low_24h": "63000.00", "timestamp": "2026-01-01T00:00:00Z", "seq": 7,
        "stale": False,
    }  # fmt: skip
    batch = data(client.get("/v1/prices?instruments=ETH-USD,BTC-USD"))
    assert [p["instrument"] for p in batch] == ["ETH-USD", "BTC-USD"]
    assert batch[0]["price"] is None
    assert batch[0]["stale"] is True
    # the venue's feed went away: every price of the venue is stale
    cache.sync_client().delete(cache.venue_key("cryptocom"))
    assert data(client.get("/v1/prices/BTC-USD"))["stale"] is True


def test_price_errors(client, market):
    body = error(client.get("/v1/prices/NOPE-USD"), 404, "INSTRUMENT_NOT_FOUND")
    assert body["details"] == {"instrument": "NOPE-USD"}
    body = error(client.get("/v1/prices?instruments=BTC-USD,NOPE-USD,ZZZ"), 404, "INSTRUMENT_NOT_FOUND")
    assert body["details"] == {"instruments": ["NOPE-USD", "ZZZ"]}
    error(client.get("/v1/prices"), 400, "VALIDATION_ERROR")
    many = ",".join(f"X{i}" for i in range(101))
    error(client.get(f"/v1/prices?instruments={many}"), 400, "VALIDATION_ERROR")


# ---- candles --------------------------------------------------------------------------------


def test_candles_window_and_validation(client, market):
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    for i in range(5):
        Candle.objects.create(
            instrument=market["btc"], interval="1m", start=start + timedelta(minutes=i),
            open=Decimal("100.1"), high=Decimal("101"), low=Decimal("99.5"), close=Decimal("100.25"),
            volume=Decimal("1.23456"), trade_count=3, open_time=start, close_time=start,
        )  # fmt: skip
    body = data(
        client.get("/v1/candles/BTC-USD?interval=1m&start=2026-01-01T12:01:00Z&end=2026-01-01T12:04:00Z")
    )
    assert body["instrument"] == "BTC-USD"
    assert body["interval"] == "1m"
    assert [c["start"] for c in body["candles"]] == [
        "2026-01-01T12:01:00Z",
        "2026-01-01T12:02:00Z",
        "2026-01-01T12:03:00Z",
    ]
    assert body["candles"][0] == {
        "start": "2026-01-01T12:01:00Z", "open": "100.10", "high": "101.00", "low": "99.50",
        "close": "100.25", "volume": "1.2346", "trades": 3,
    }  # fmt: skip
    epoch = int(start.timestamp())
    assert len(data(client.get(f"/v1/candles/BTC-USD?start={epoch}&end={epoch + 600}"))["candles"]) == 5
    error(client.get("/v1/candles/BTC-USD?interval=3m"), 400, "VALIDATION_ERROR")
    error(client.get("/v1/candles/BTC-USD?start=yesterday"), 400, "VALIDATION_ERROR")
    error(client.get(f"/v1/candles/BTC-USD?start={epoch + 60}&end={epoch}"), 400, "VALIDATION_ERROR")
    error(
        client.get(f"/v1/candles/BTC-USD?interval=1m&start={epoch}&end={epoch + 86400}"),
        400,
        "VALIDATION_ERROR",
    )
    error(client.get("/v1/candles/NOPE-USD"), 404, "INSTRUMENT_NOT_FOUND")
    # A window that would run off the calendar: 400, not a 500.
    error(client.get("/v1/candles/BTC-USD?interval=1d&end=0001-01-01T00:00:00Z"), 400, "VALIDATION_ERROR")
    error(client.get("/v1/candles/BTC-USD?interval=1m&start=9999-12-31T23:59:00Z"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "path", ["/v1/prices/%00", "/v1/instruments/%00", "/v1/candles/BTC%00-USD", "/v1/watchlists/shared/%00"]
)
def test_a_nul_character_in_the_url_is_a_400(client, market, path):
    """PostgreSQL text cannot hold NUL: refused before any view (it failed in a query, a 500)."""
    body = error(client.get(path), 400, "MALFORMED_REQUEST")
    assert "NUL" in body["message"]


def test_a_nul_character_in_a_query_parameter_is_a_400_on_that_field(client, market):
    body = error(client.get("/v1/prices?instruments=BTC-USD,%00"), 400, "VALIDATION_ERROR")
    assert body["details"]["fields"] == {"instruments": ["NUL characters are not allowed."]}


# ---- watchlists -----------------------------------------------------------------------------


def test_watchlist_crud_with_ordered_items_and_prices(client, market, django_assert_max_num_queries):
    set_price("BTC-USD")
    created = client.post(
        "/v1/watchlists",
        {"name": "Mixed", "instruments": ["ETH-USD", "kxbtc-25dec31-b100000"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    wl = data(created)
    assert [i["instrument"] for i in wl["items"]] == ["ETH-USD", "KXBTC-25DEC31-B100000"]
    assert wl["items"][1]["venue"] == "kalshi"
    assert wl["shared"] is False
    wid = wl["id"]
    added = data(
        client.post(f"/v1/watchlists/{wid}/items", {"instrument": "BTC-USD", "position": 0}, format="json")
    )
    assert [(i["instrument"], i["position"]) for i in added["items"]] == [
        ("BTC-USD", 0),
        ("ETH-USD", 1),
        ("KXBTC-25DEC31-B100000", 2),
    ]
    assert added["items"][0]["price"]["price"] == "64950.00"
    assert added["items"][1]["price"]["stale"] is True
    error(
        client.post(f"/v1/watchlists/{wid}/items", {"instrument": "BTC-USD"}, format="json"),
        409,
        "WATCHLIST_ITEM_EXISTS",
    )
    error(
        client.post(f"/v1/watchlists/{wid}/items", {"instrument": "NOPE"}, format="json"),
        404,
        "INSTRUMENT_NOT_FOUND",
    )
    removed = data(client.delete(f"/v1/watchlists/{wid}/items/ETH-USD"))
    assert [i["instrument"] for i in removed["items"]] == ["BTC-USD", "KXBTC-25DEC31-B100000"]
    error(client.delete(f"/v1/watchlists/{wid}/items/ETH-USD"), 404, "WATCHLIST_ITEM_NOT_FOUND")
    patched = data(
        client.patch(
            f"/v1/watchlists/{wid}", {"name": "Renamed", "instruments": ["ETH-USD", "BTC-USD"]}, format="json"
        )
    )
    assert patched["name"] == "Renamed"
    assert [i["instrument"] for i in patched["items"]] == ["ETH-USD", "BTC-USD"]
    error(client.patch(f"/v1/watchlists/{wid}", {"name": ""}, format="json"), 400, "VALIDATION_ERROR")
    error(
        client.patch(f"/v1/watchlists/{wid}", {"instruments": ["BTC-USD", "NOPE"]}, format="json"),
        404,
        "INSTRUMENT_NOT_FOUND",
    )
    assert [i["instrument"] for i in data(client.get(f"/v1/watchlists/{wid}"))["items"]] == [
        "ETH-USD",
        "BTC-USD",
    ]
    for n in range(3):
        client.post("/v1/watchlists", {"name": f"L{n}", "instruments": ["BTC-USD", "ETH-USD"]}, format="json")
    with django_assert_max_num_queries(6):  # no N+1 over lists and items
        listing = client.get("/v1/watchlists")
    assert [w["name"] for w in data(listing)] == ["Renamed", "L0", "L1", "L2"]
    assert client.delete(f"/v1/watchlists/{wid}").status_code == 204
    error(client.get(f"/v1/watchlists/{wid}"), 404, "WATCHLIST_NOT_FOUND")


def test_other_users_cannot_see_or_touch_a_watchlist(client, market):
    wid = data(client.post("/v1/watchlists", {"name": "Mine", "instruments": ["BTC-USD"]}, format="json"))[
        "id"
    ]
    other = APIClient()
    other.force_authenticate(user("other@example.com"))
    assert data(other.get("/v1/watchlists")) == []
    error(other.get(f"/v1/watchlists/{wid}"), 404, "WATCHLIST_NOT_FOUND")
    error(other.patch(f"/v1/watchlists/{wid}", {"name": "x"}, format="json"), 404, "WATCHLIST_NOT_FOUND")
    error(
        other.post(f"/v1/watchlists/{wid}/items", {"instrument": "ETH-USD"}, format="json"),
        404,
        "WATCHLIST_NOT_FOUND",
    )
    error(other.delete(f"/v1/watchlists/{wid}"), 404, "WATCHLIST_NOT_FOUND")
    error(other.post(f"/v1/watchlists/{wid}/share"), 404, "WATCHLIST_NOT_FOUND")
    assert Watchlist.objects.get(pk=wid).name == "Mine"


def test_share_link_is_read_only_revocable_and_copyable(client, market):
    wid = data(
        client.post("/v1/watchlists", {"name": "Ideas", "instruments": ["ETH-USD", "BTC-USD"]}, format="json")
    )["id"]
    share = data(client.post(f"/v1/watchlists/{wid}/share"))
    token = share["share_token"]
    assert share["share_url"].endswith(f"/v1/watchlists/shared/{token}")
    assert data(client.post(f"/v1/watchlists/{wid}/share"))["share_token"] == token  # idempotent
    anonymous = APIClient()
    shared = data(anonymous.get(f"/v1/watchlists/shared/{token}"))
    assert shared["name"] == "Ideas"
    assert [i["instrument"] for i in shared["items"]] == ["ETH-USD", "BTC-USD"]
    assert "share_token" not in shared
    assert "user" not in shared
    assert anonymous.post(f"/v1/watchlists/shared/{token}/copy").status_code == 401
    reader = APIClient()
    reader.force_authenticate(user("reader@example.com"))
    copy = reader.post(f"/v1/watchlists/shared/{token}/copy", {"name": "My copy"}, format="json")
    assert copy.status_code == 201, copy.content
    copied = data(copy)
    assert copied["name"] == "My copy"
    assert copied["copied_from"] == wid
    assert copied["shared"] is False
    assert [i["instrument"] for i in copied["items"]] == ["ETH-USD", "BTC-USD"]
    # the copy is the reader's own: changing it leaves the original alone
    reader.delete(f"/v1/watchlists/{copied['id']}/items/ETH-USD")
    assert len(data(client.get(f"/v1/watchlists/{wid}"))["items"]) == 2
    # revoke: the link stops working at once, for reading and copying
    assert client.delete(f"/v1/watchlists/{wid}/share").status_code == 204
    error(anonymous.get(f"/v1/watchlists/shared/{token}"), 404, "WATCHLIST_NOT_FOUND")
    error(reader.post(f"/v1/watchlists/shared/{token}/copy"), 404, "WATCHLIST_NOT_FOUND")
    assert data(client.post(f"/v1/watchlists/{wid}/share"))["share_token"] != token  # a new link


def test_watchlist_limits(client, market, settings):
    settings.K2_WATCHLIST_MAX_LISTS = 2
    settings.K2_WATCHLIST_MAX_ITEMS = 2
    first = data(
        client.post("/v1/watchlists", {"name": "A", "instruments": ["BTC-USD", "ETH-USD"]}, format="json")
    )
    body = error(
        client.post(f"/v1/watchlists/{first['id']}/items", {"instrument": "OLD-USD"}, format="json"),
        409,
        "WATCHLIST_LIMIT_EXCEEDED",
    )
    assert body["details"] == {"limit": 2, "attempted": 3}
    error(
        client.post(
            "/v1/watchlists", {"name": "B", "instruments": ["BTC-USD", "ETH-USD", "OLD-USD"]}, format="json"
        ),
        409,
        "WATCHLIST_LIMIT_EXCEEDED",
    )
    client.post("/v1/watchlists", {"name": "B"}, format="json")
    body = error(client.post("/v1/watchlists", {"name": "C"}, format="json"), 409, "WATCHLIST_LIMIT_EXCEEDED")
    assert body["details"] == {"limit": 2, "current": 2}
    token = data(client.post(f"/v1/watchlists/{first['id']}/share"))["share_token"]
    error(client.post(f"/v1/watchlists/shared/{token}/copy"), 409, "WATCHLIST_LIMIT_EXCEEDED")
    assert Watchlist.objects.count() == 2
    error(client.post("/v1/watchlists", {"instruments": ["BTC-USD"]}, format="json"), 400, "VALIDATION_ERROR")
    error(client.post("/v1/watchlists", {"name": "x" * 101}, format="json"), 400, "VALIDATION_ERROR")
