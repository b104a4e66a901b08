"""The latest-price cache, venue liveness, feed leases and the fan-out channels, all in Redis.

Keys (prefix `k2:md:`):

- `price:{symbol}`  the latest `PriceSnapshot` of an instrument, JSON, written only by the feed
  that holds the venue's lease (the write script checks the lease token: a fenced write);
- `seq:{symbol}`    the instrument's feed sequence, incremented by every published price;
- `lease:{venue}`   which feed replica owns the venue (token, with a TTL renewed by the owner);
- `venue:{venue}`   the venue's feed state (`live` / `stale`), refreshed by the owner with a TTL,
  so a feed that dies leaves its venue `stale` within seconds without anyone writing.

Pub/sub channels (server-wide): `k2:md:events` carries every published price and venue status
change (the web processes' hubs fan them out to sockets); `k2:ws:user` carries messages for one
user's sockets (`apps.marketdata.push`).

A price is stale when its own flag says so or its venue is not `live`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

PREFIX = "k2:md:"
EVENTS_CHANNEL = "k2:md:events"
USER_CHANNEL = "k2:ws:user"
VENUE_LIVE = "live"
VENUE_STALE = "stale"


def price_key(symbol: str) -> str:
    return f"{PREFIX}price:{symbol}"


def seq_key(symbol: str) -> str:
    return f"{PREFIX}seq:{symbol}"


def lease_key(venue: str) -> str:
    return f"{PREFIX}lease:{venue}"


def venue_key(venue: str) -> str:
    return f"{PREFIX}venue:{venue}"


@dataclass(frozen=True, slots=True)
class PriceSnapshot:
    """The latest price of one instrument. Every number is a decimal string (or None).

    `price` is the last trade price; `change_24h` is the 24 h change in percent; `timestamp` is
    the venue's time of the newest input (ISO 8601 UTC); `seq` is the instrument's feed
    sequence (gaps mean updates were conflated or replaced, never reordered).
    """

    instrument: str
    venue: str
    price: str | None
    bid: str | None
    ask: str | None
    bid_size: str | None
    ask_size: str | None
    change_24h: str | None
    volume_24h: str | None
    high_24h: str | None
    low_24h: str | None
    timestamp: str
    seq: int = 0
    stale: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_quote(self, other: PriceSnapshot | None) -> bool:
        """True when nothing a client sees changed (ignores time and sequence)."""
        if other is None:
            return False
        return replace(self, timestamp="", seq=0) == replace(other, timestamp="", seq=0)

    @classmethod
    def from_json(cls, raw: str | bytes) -> PriceSnapshot:
        data = json.loads(raw)
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})

    def body_json(self) -> str:
        """The JSON object without `seq` (the publish script puts the fenced sequence in)."""
        data = self.as_dict()
        data.pop("seq")
        return json.dumps(data, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class VenueState:
    venue: str
    state: str
    since: str
    detail: str = ""

    @property
    def live(self) -> bool:
        return self.state == VENUE_LIVE


# ---- scripts --------------------------------------------------------------------------------

# KEYS: lease, seq, price   ARGV: token, price JSON without seq, events channel
PUBLISH_PRICE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local seq = redis.call('INCR', KEYS[2])
local out = '{"seq":' .. seq .. ',' .. string.sub(ARGV[2], 2)
redis.call('SET', KEYS[3], out)
redis.call('PUBLISH', ARGV[3], '{"t":"price","p":' .. out .. '}')
return seq
"""

# KEYS: lease, venue   ARGV: token, state JSON, ttl ms, events channel, event JSON ('' = none)
SET_VENUE_STATE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
"""

# KEYS: lease   ARGV: token, ttl ms
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

# KEYS: lease   ARGV: token
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


# ---- clients --------------------------------------------------------------------------------

_sync_lock = threading.Lock()
_sync_client: redis.Redis | None = None
_sync_url: str | None = None


def sync_client() -> redis.Redis:
    """A process-wide client (thread-safe connection pool) for Django code."""
    global _sync_client, _sync_url
    url = settings.K2_MARKETDATA_REDIS_URL
    with _sync_lock:
        if _sync_client is None or _sync_url != url:
            _sync_client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
            _sync_url = url
        return _sync_client


def async_client() -> aioredis.Redis:
    """A new asyncio client; its owner closes it (`aclose`)."""
    return aioredis.Redis.from_url(settings.K2_MARKETDATA_REDIS_URL, socket_connect_timeout=2)


def _parse_venue(venue: str, raw: bytes | str | None) -> VenueState:
    if raw is None:
        return VenueState(venue=venue, state=VENUE_STALE, since="", detail="no feed")
    data = json.loads(raw)
    return VenueState(
        venue=venue,
        state=str(data.get("state")),
        since=str(data.get("since", "")),
        detail=data.get("detail", ""),
    )


def _merge(
    symbols: Sequence[str],
    raw_prices: Sequence[Any],
    venues_of: dict[str, str],
    states: dict[str, VenueState],
) -> dict[str, PriceSnapshot | None]:
    out: dict[str, PriceSnapshot | None] = {}
    for symbol, raw in zip(symbols, raw_prices, strict=True):
        if raw is None:
            out[symbol] = None
            continue
        snap = PriceSnapshot.from_json(raw)
        state = states.get(venues_of.get(symbol, snap.venue))
        if not snap.stale and (state is None or not state.live):
            snap = replace(snap, stale=True)
        out[symbol] = snap
    return out


def prices_read(symbols: Sequence[str], venues_of: dict[str, str]) -> dict[str, PriceSnapshot | None]:
    """The latest price of each symbol (None before the first one), stale flag applied."""
    if not symbols:
        return {}
    client = sync_client()
    venues = sorted(set(venues_of.values()))
    with client.pipeline(transaction=False) as pipe:
        pipe.mget([price_key(s) for s in symbols])
        pipe.mget([venue_key(v) for v in venues] or ["-"])
        raw_prices, raw_venues = pipe.execute()
    states = {v: _parse_venue(v, raw) for v, raw in zip(venues, raw_venues, strict=False)}
    return _merge(symbols, raw_prices, venues_of, states)


async def prices_read_async(
    client: aioredis.Redis, symbols: Sequence[str], venues_of: dict[str, str]
) -> dict[str, PriceSnapshot | None]:
    if not symbols:
        return {}
    venues = sorted(set(venues_of.values()))
    async with client.pipeline(transaction=False) as pipe:
        pipe.mget([price_key(s) for s in symbols])
        pipe.mget([venue_key(v) for v in venues] or ["-"])
        raw_prices, raw_venues = await pipe.execute()
    states = {v: _parse_venue(v, raw) for v, raw in zip(venues, raw_venues, strict=False)}
    return _merge(symbols, raw_prices, venues_of, states)


def venue_states_read(venues: Iterable[str]) -> dict[str, VenueState]:
    names = list(venues)
    if not names:
        return {}
    raw = sync_client().mget([venue_key(v) for v in names])
    return {v: _parse_venue(v, r) for v, r in zip(names, raw, strict=True)}


async def venue_states_read_async(client: aioredis.Redis, venues: Iterable[str]) -> dict[str, VenueState]:
    names = list(venues)
    if not names:
        return {}
    raw = await client.mget([venue_key(v) for v in names])
    return {v: _parse_venue(v, r) for v, r in zip(names, raw, strict=True)}
