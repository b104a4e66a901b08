"""The venue registry: what K2 needs to know about each venue outside its adapter.

A venue is an adapter plus a simulator; this table says how to build its adapter from settings
and a link's credentials, and what credentials linking asks the user for. Nothing else in K2
branches on the venue name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.exchanges.choices import Venue


@dataclass(frozen=True)
class CredentialField:
    name: str
    label: str
    secret: bool
    help: str = ""


@dataclass(frozen=True)
class VenueSpec:
    venue: Venue
    adapter_path: str
    credential_fields: tuple[CredentialField, CredentialField]
    instructions: str
    url_settings: dict[str, str]  # adapter keyword -> settings name

    def adapter_kwargs(self) -> dict[str, Any]:
        return {kw: getattr(settings, name) for kw, name in self.url_settings.items()}


VENUES: dict[str, VenueSpec] = {
    Venue.CRYPTOCOM: VenueSpec(
        venue=Venue.CRYPTOCOM,
        adapter_path="apps.exchanges.adapters.cryptocom.CryptocomAdapter",
        credential_fields=(
            CredentialField("api_key", "API key", secret=False),
            CredentialField("api_secret", "API secret", secret=True),
        ),
        instructions=(
            "Create an API key in Crypto.com Exchange (User Center > API) with read and trade "
            "permissions (never withdrawal), then send the key and its secret to the callback."
        ),
        url_settings={
            "base_url": "K2_CRYPTOCOM_REST_URL",
            "market_ws_url": "K2_CRYPTOCOM_MARKET_WS_URL",
            "user_ws_url": "K2_CRYPTOCOM_USER_WS_URL",
        },
    ),
    Venue.KALSHI: VenueSpec(
        venue=Venue.KALSHI,
        adapter_path="apps.exchanges.adapters.kalshi.KalshiAdapter",
        credential_fields=(
            CredentialField(
                "api_key_id", "API key ID", secret=False, help="The UUID Kalshi shows next to the key."
            ),
            CredentialField(
                "private_key",
                "Private key (PEM)",
                secret=True,
                help="The whole downloaded file, from -----BEGIN RSA PRIVATE KEY----- to the END line.",
            ),
        ),
        instructions=(
            "Create an API key in Kalshi (Account & security > API Keys). Kalshi shows the key ID "
            "and downloads the RSA private key once; send both to the callback. K2 signs each "
            "request with the key and never shares it."
        ),
        url_settings={"base_url": "K2_KALSHI_REST_URL", "ws_url": "K2_KALSHI_WS_URL"},
    ),
}


def venue_spec(venue: str) -> VenueSpec:
    """The spec of a known venue; KeyError otherwise (APIs check `venue in VENUES` first)."""
    return VENUES[venue]
