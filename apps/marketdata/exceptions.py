"""Market data errors, each with a stable code."""

from __future__ import annotations

from rest_framework import status

from k2.api.exceptions import ApplicationError, NotFoundError


class InstrumentNotFound(NotFoundError):
    code = "INSTRUMENT_NOT_FOUND"
    default_message = "Unknown instrument."


class WatchlistNotFound(NotFoundError):
    code = "WATCHLIST_NOT_FOUND"
    default_message = "Watchlist not found."


class WatchlistLimitExceeded(ApplicationError):
    code = "WATCHLIST_LIMIT_EXCEEDED"
    status_code = status.HTTP_409_CONFLICT
    default_message = "Watchlist limit reached."


class WatchlistItemExists(ApplicationError):
    code = "WATCHLIST_ITEM_EXISTS"
    status_code = status.HTTP_409_CONFLICT
    default_message = "The instrument is already in this watchlist."


class WatchlistItemNotFound(NotFoundError):
    code = "WATCHLIST_ITEM_NOT_FOUND"
    default_message = "The instrument is not in this watchlist."
