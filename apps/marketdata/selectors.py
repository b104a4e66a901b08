"""Market data reads: instruments, candles, latest prices, watchlists, and the lock helpers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Prefetch, Q, QuerySet

from apps.marketdata import cache
from apps.marketdata.cache import PriceSnapshot
from apps.marketdata.exceptions import InstrumentNotFound, WatchlistNotFound
from apps.marketdata.models import Candle, Instrument, Watchlist, WatchlistItem


def normalise_symbol(symbol: str) -> str:
    """Symbols are upper case at both venues (`BTC-USD`, `KXBTC-24DEC31-B100000`)."""
    return symbol.strip().upper()


# ---- instruments ----------------------------------------------------------------------------


def instrument_list(
    *,
    instrument_type: str | None = None,
    venue: str | None = None,
    status: str | None = None,
    q: str | None = None,
) -> QuerySet[Instrument]:
    qs = Instrument.objects.all()
    if instrument_type:
        qs = qs.filter(instrument_type=instrument_type)
    if venue:
        qs = qs.filter(venue=venue)
    if status:
        qs = qs.filter(status=status)
    if q:
        term = q.strip()
        qs = qs.filter(
            Q(symbol__icontains=term)
            | Q(base__iexact=term)
            | Q(title__icontains=term)
            | Q(event_ticker__icontains=term)
            | Q(series_ticker__iexact=term)
        )
    return qs


def instrument_get(*, symbol: str) -> Instrument:
    instrument = Instrument.objects.filter(symbol=normalise_symbol(symbol)).first()
    if instrument is None:
        raise InstrumentNotFound(f"Unknown instrument {symbol!r}.", details={"instrument": symbol})
    return instrument


def instruments_resolve(*, symbols: Sequence[str]) -> list[Instrument]:
    """The instruments for `symbols`, in order and deduplicated; one error names every unknown."""
    wanted = list(dict.fromkeys(normalise_symbol(s) for s in symbols))
    found = {i.symbol: i for i in Instrument.objects.filter(symbol__in=wanted)}
    unknown = [s for s in wanted if s not in found]
    if unknown:
        raise InstrumentNotFound(
            f"Unknown instrument(s): {', '.join(unknown)}.", details={"instruments": unknown}
        )
    return [found[s] for s in wanted]


def instrument_venues(*, symbols: Iterable[str]) -> dict[str, str]:
    """symbol -> venue for the known ones among `symbols`."""
    return dict(Instrument.objects.filter(symbol__in=list(symbols)).values_list("symbol", "venue"))


def instruments_for_feed(*, venue: str, limit: int) -> list[Instrument]:
    """The instruments the feed streams for a venue: listed and not finished."""
    return list(
        Instrument.objects.filter(venue=venue, status__in=("open", "paused")).order_by("symbol")[:limit]
    )


# ---- candles --------------------------------------------------------------------------------


def candle_list(*, instrument: Instrument, interval: str, start: datetime, end: datetime) -> QuerySet[Candle]:
    """Buckets starting in [start, end), oldest first."""
    return Candle.objects.filter(
        instrument=instrument, interval=interval, start__gte=start, start__lt=end
    ).order_by("start")


def reference_prices(*, instrument_ids: dict[str, Any], at: datetime) -> dict[str, Decimal]:
    """symbol -> the price at about `at` (close of the newest hourly candle starting by then),
    the base of the 24 h change K2 publishes for every venue alike."""
    by_id = {v: k for k, v in instrument_ids.items()}
    rows = (
        Candle.objects.filter(instrument_id__in=list(by_id), interval="1h", start__lte=at)
        .order_by("instrument_id", "-start")
        .distinct("instrument_id")
        .values_list("instrument_id", "close")
    )
    return {by_id[iid]: close for iid, close in rows if close > 0}


# ---- prices ---------------------------------------------------------------------------------


def prices_get(*, instruments: Sequence[Instrument]) -> dict[str, PriceSnapshot | None]:
    """The latest cached price per instrument symbol (None before the feed wrote one)."""
    return cache.prices_read([i.symbol for i in instruments], {i.symbol: i.venue for i in instruments})


def price_or_placeholder(instrument: Instrument, snap: PriceSnapshot | None) -> dict[str, Any]:
    """The API shape of a price: the snapshot, or all-null and stale before the first one."""
    if snap is not None:
        return snap.as_dict()
    return {
        "instrument": instrument.symbol,
        "venue": instrument.venue,
        "price": None,
        "bid": None,
        "ask": None,
        "bid_size": None,
        "ask_size": None,
        "change_24h": None,
        "volume_24h": None,
        "high_24h": None,
        "low_24h": None,
        "timestamp": None,
        "seq": 0,
        "stale": True,
    }


# ---- watchlists -----------------------------------------------------------------------------


def _with_items(qs: QuerySet[Watchlist]) -> QuerySet[Watchlist]:
    return qs.prefetch_related(
        Prefetch(
            "items", queryset=WatchlistItem.objects.select_related("instrument").order_by("position", "id")
        )
    )


def watchlist_list(*, user: Any) -> QuerySet[Watchlist]:
    return _with_items(Watchlist.objects.filter(user=user))


def watchlist_get(*, user: Any, watchlist_id: Any) -> Watchlist:
    """The caller's watchlist; another user's list is indistinguishable from a missing one."""
    watchlist = _with_items(Watchlist.objects.filter(user=user, pk=watchlist_id)).first()
    if watchlist is None:
        raise WatchlistNotFound()
    return watchlist


def watchlist_get_shared(*, token: str) -> Watchlist:
    if not token:
        raise WatchlistNotFound()
    watchlist = _with_items(Watchlist.objects.filter(share_token=token)).first()
    if watchlist is None:
        raise WatchlistNotFound("This share link does not exist or was revoked.")
    return watchlist


def watchlist_count(*, user: Any) -> int:
    return Watchlist.objects.filter(user=user).count()


def watchlist_prices(*, watchlists: Sequence[Watchlist]) -> dict[str, PriceSnapshot | None]:
    """One cache read for every instrument of `watchlists` (items prefetched)."""
    instruments = {item.instrument.symbol: item.instrument for w in watchlists for item in w.items.all()}
    return prices_get(instruments=list(instruments.values()))


# ---- lock helpers ---------------------------------------------------------------------------


def user_lock(*, user: Any) -> None:
    """Serialise a user's watchlist writes (limits are checked under this lock)."""
    get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def watchlist_lock(*, user: Any, watchlist_id: Any) -> Watchlist:
    watchlist = Watchlist.objects.select_for_update().filter(user=user, pk=watchlist_id).first()
    if watchlist is None:
        raise WatchlistNotFound()
    return watchlist
