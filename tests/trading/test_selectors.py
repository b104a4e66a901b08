"""The order path's combined reads return exactly what their separate ORM queries would."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.exchanges.models import ExchangeLink
from apps.marketdata.models import Instrument
from apps.trading.selectors import instrument_with_link

pytestmark = pytest.mark.django_db


def test_instrument_with_the_users_active_link_to_its_venue(django_user_model: Any) -> None:
    user = django_user_model.objects.create_user("links@example.com", "x" * 16)
    other = django_user_model.objects.create_user("other@example.com", "x" * 16)
    Instrument.objects.create(
        symbol="BTC-USD", venue="cryptocom", venue_symbol="BTC_USD", instrument_type="crypto",
        base="BTC", quote="USD", tick_size=Decimal("0.01"), quantity_step=Decimal("0.0001"),
        min_quantity=Decimal("0.0001"),
    )  # fmt: skip

    def link(owner: Any, venue: str, status: str) -> ExchangeLink:
        return ExchangeLink.objects.create(
            user=owner, exchange=venue, status=status, access_token="key", access_secret="secret",
            linked_at=timezone.now(),
        )  # fmt: skip

    assert instrument_with_link(symbol="NOPE-USD", user_id=user.pk) == (None, None)
    link(user, "kalshi", "active")
    link(other, "cryptocom", "active")
    revoked = link(user, "cryptocom", "revoked")
    instrument, found = instrument_with_link(symbol="BTC-USD", user_id=user.pk)
    assert instrument == Instrument.objects.get(symbol="BTC-USD")
    assert found is None  # another venue's link, another user's, a revoked one: not linked

    ExchangeLink.objects.filter(pk=revoked.pk).update(status="active")
    active = ExchangeLink.objects.get(pk=revoked.pk)
    instrument, found = instrument_with_link(symbol="BTC-USD", user_id=user.pk)
    assert instrument is not None
    assert instrument.tick_size == Decimal("0.01")
    assert found == active
    assert found is not None
    assert (found.access_token.reveal(), found.access_secret.reveal()) == ("key", "secret")
