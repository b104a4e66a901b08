"""The short per-user cache of venue snapshots, in Redis (the cache database, `CACHE_REDIS_URL`,
through the default cache's shared client: its pool and its 2 s socket timeouts).

Keys (prefix `k2:portfolio:`):

- `fresh:{user}:{venue}`  the venue's snapshot, JSON, for `K2_PORTFOLIO_CACHE_SECONDS`: repeated
  reads within that window do not call the venue;
- `last:{user}:{venue}`   the last good snapshot, for `K2_PORTFOLIO_STALE_SECONDS`: served,
  marked `stale`, when the venue is slow or down;
- `gen:{user}`            a generation counter. Invalidation (a fill, an order update) bumps it
  and deletes the fresh snapshots; a read that started before the bump cannot write its
  now-outdated answer back (the write script compares generations).

Balances never reach the database: this cache is the only place they are kept, and briefly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from apps.portfolio.venues import VenueSnapshot
from k2.core.cache import redis_client, redis_run_script

PREFIX = "k2:portfolio:"

# KEYS: gen, fresh, last   ARGV: expected generation, JSON, fresh ttl ms, last ttl ms
_WRITE = """
local gen = redis.call('GET', KEYS[1]) or '0'
if gen ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3])) end
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[3], ARGV[2], 'PX', tonumber(ARGV[4])) end
return 1
"""


def gen_key(user_id: Any) -> str:
    return f"{PREFIX}gen:{user_id}"


def fresh_key(user_id: Any, venue: str) -> str:
    return f"{PREFIX}fresh:{user_id}:{venue}"


def last_key(user_id: Any, venue: str) -> str:
    return f"{PREFIX}last:{user_id}:{venue}"


def snapshots_read(user_id: Any, venues: list[str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(generation, fresh snapshots by venue, last good snapshots by venue) in one round trip."""
    if not venues:
        return "0", {}, {}
    with redis_client().pipeline(transaction=False) as pipe:
        pipe.get(gen_key(user_id))
        pipe.mget([fresh_key(user_id, v) for v in venues])
        pipe.mget([last_key(user_id, v) for v in venues])
        gen, fresh, last = pipe.execute()
    generation = gen.decode() if gen else "0"

    def parse(rows: list[bytes | None]) -> dict[str, VenueSnapshot]:
        return {v: VenueSnapshot.from_json(json.loads(r)) for v, r in zip(venues, rows, strict=True) if r}

    return generation, parse(fresh), parse(last)


def snapshot_write(user_id: Any, snapshot: VenueSnapshot, *, generation: str) -> bool:
    """Cache a venue's fresh answer unless the user's data changed since the read began."""
    fresh_ms = int(float(settings.K2_PORTFOLIO_CACHE_SECONDS) * 1000)
    last_ms = int(float(settings.K2_PORTFOLIO_STALE_SECONDS) * 1000)
    body = json.dumps(snapshot.as_json(), separators=(",", ":"))
    keys = [gen_key(user_id), fresh_key(user_id, snapshot.venue), last_key(user_id, snapshot.venue)]
    written = redis_run_script(_WRITE, keys=keys, args=[generation, body, fresh_ms, last_ms])
    return bool(written)


def snapshots_invalidate(user_id: Any, venues: Iterable[str], *, forget: bool = False) -> None:
    """Bump the generation and drop the fresh snapshots of `venues`; with `forget`, the last
    good ones too (they are another account's once the link changes: never to be served)."""
    names = list(venues)
    with redis_client(write=True).pipeline(transaction=True) as pipe:
        pipe.incr(gen_key(user_id))
        pipe.expire(gen_key(user_id), max(int(float(settings.K2_PORTFOLIO_STALE_SECONDS)), 60) * 2)
        if names:
            pipe.delete(*[fresh_key(user_id, v) for v in names])
            if forget:
                pipe.delete(*[last_key(user_id, v) for v in names])
        pipe.execute()
