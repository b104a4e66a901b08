"""Canonical instrument names <-> Crypto.com's.

Spot pairs are `BASE_QUOTE` at the venue and `BASE-QUOTE` in K2. Derivatives (`BTCUSD-PERP`,
`ETHUSD-230825`, warrants) already use dashes and keep the venue's name unchanged.
"""

from __future__ import annotations

import re

_SPOT_VENUE = re.compile(r"^([A-Z0-9]+)_([A-Z0-9]+)$")
_SPOT_CANONICAL = re.compile(r"^([A-Z0-9]+)-([A-Z]+)$")
_NOT_QUOTES = frozenset({"PERP", "INDEX"})


def to_venue(symbol: str) -> str:
    """`BTC-USD` -> `BTC_USD`; derivative names pass through."""
    match = _SPOT_CANONICAL.match(symbol)
    if match and match.group(2) not in _NOT_QUOTES:
        return f"{match.group(1)}_{match.group(2)}"
    return symbol


def from_venue(venue_symbol: str) -> str:
    """`BTC_USD` -> `BTC-USD`; derivative names pass through."""
    match = _SPOT_VENUE.match(venue_symbol)
    return f"{match.group(1)}-{match.group(2)}" if match else venue_symbol


def is_spot(venue_symbol: str) -> bool:
    return bool(_SPOT_VENUE.match(venue_symbol))
