"""Exchange links: initiate, complete (prove the credentials with a signed call, then store them
with the vault), revoke, and the periodic health check."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import django.dispatch
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.exchanges.adapters.base import Credentials, ExchangeAdapter
from apps.exchanges.choices import LinkStatus
from apps.exchanges.exceptions import (
    ExchangeAccountChanged,
    ExchangeAuthFailed,
    ExchangeUnavailable,
    LinkStateInvalid,
)
from apps.exchanges.models import ExchangeLink
from apps.exchanges.venues import venue_spec
from k2.api.exceptions import NotFoundError
from k2.audit.services import record
from k2.core.cache import redis_client
from k2.observability.logging import get_logger

log = get_logger(__name__)

STATE_PREFIX = "exchange-link-state:"
# Redis channel (the default cache's server) announcing that a link was made, re-keyed or revoked;
# the message is the venue. The user-stream followers (Procfile `streams`) re-read the active
# links when one arrives, besides every K2_TRADING_STREAM_REFRESH_SECONDS.
LINKS_CHANGED_CHANNEL = "k2:exchanges:links-changed"


def _state_key(state: str) -> str:
    return f"{STATE_PREFIX}{state}"


def exchange_link_initiate(*, user: Any, venue: str) -> dict[str, Any]:
    """A short-lived, single-use link state and what the venue needs from the user."""
    spec = venue_spec(venue)
    ttl = settings.K2_EXCHANGE_LINK_STATE_TTL_SECONDS
    state = secrets.token_urlsafe(32)
    cache.set(_state_key(state), {"user_id": str(user.pk), "venue": venue}, timeout=ttl)
    record(user, "exchange.link_initiated", details={"venue": venue})
    return {
        "venue": venue,
        "state": state,
        "expires_at": timezone.now() + timedelta(seconds=ttl),
        "credentials": [
            {"name": f.name, "label": f.label, "secret": f.secret, "help": f.help}
            for f in spec.credential_fields
        ],
        "instructions": spec.instructions,
        "callback": f"/v1/auth/link/{venue}/callback",
    }


def _consume_state(*, user: Any, venue: str, state: str) -> None:
    key = _state_key(state)
    payload = cache.get(key)
    # delete() is atomic in Redis: of two concurrent callbacks with one state, one wins.
    if not payload or not cache.delete(key):
        raise LinkStateInvalid()
    if payload.get("user_id") != str(user.pk) or payload.get("venue") != venue:
        raise LinkStateInvalid()


async def _prove(adapter: ExchangeAdapter) -> int:
    return len(await adapter.get_balances())


def _announce_links_changed(venue: str) -> None:
    """Once the change is committed, tell the user-stream followers: a new link's stream starts at
    once (the fills of its first orders arrive as they happen, not at the next refresh), a revoked
    one's stops. Best effort (`robust`: Redis down is logged, the change stands): a follower that
    misses it still refreshes on its interval."""
    transaction.on_commit(lambda: redis_client(write=True).publish(LINKS_CHANGED_CHANNEL, venue), robust=True)


# Sent when credentials for a user's link have proved themselves with the venue, before they
# are stored (a first link, or new ones for an existing link): `user`, `venue`, `credentials`.
# A receiver refuses them by raising `ExchangeAccountChanged` (or `ExchangeUnavailable`): nothing
# is stored. Trading's receiver checks that the user's resting orders there stay reachable.
link_credentials_proved = django.dispatch.Signal()


def exchange_link_complete(*, user: Any, venue: str, state: str, key: str, secret: str) -> ExchangeLink:
    """Prove the credentials with a signed balance call; store them (encrypted) only if the
    venue accepts them and no receiver of `link_credentials_proved` refuses them. Wrong
    credentials, an unreachable venue or a refusal store nothing."""
    from apps.exchanges.calls import run_venue_call

    _consume_state(user=user, venue=venue, state=state)
    credentials = Credentials(api_key=key, api_secret=secret)
    try:
        run_venue_call(venue, _prove, credentials=credentials, actor=user, target=("exchange", venue))
        link_credentials_proved.send(sender=ExchangeLink, user=user, venue=venue, credentials=credentials)
    except (ExchangeAuthFailed, ExchangeUnavailable, ExchangeAccountChanged) as error:
        record(user, "exchange.link_failed", details={"venue": venue, "code": error.code})
        raise
    now = timezone.now()
    with transaction.atomic(durable=True):
        link = ExchangeLink.objects.select_for_update().filter(user=user, exchange=venue).first()
        created = link is None
        if link is None:
            link = ExchangeLink(user=user, exchange=venue)
        link.access_token = key
        link.access_secret = secret
        link.status = LinkStatus.ACTIVE
        link.key_hint = key[-4:]
        link.linked_at = now
        link.revoked_at = None
        link.last_checked_at = now
        link.last_error_code = ""
        link.save()
        record(
            user,
            "exchange.linked",
            link,
            {"venue": venue, "key_hint": link.key_hint, "relinked": not created},
        )
        _announce_links_changed(venue)
    return link


def exchange_link_revoke(*, user: Any, link_id: Any, actor: Any = None) -> ExchangeLink:
    """Unlink: the link becomes `revoked` and its credentials are erased (also when it was
    already revoked, by the venue refusing its key: the user asked K2 to forget them)."""
    with transaction.atomic(durable=True):
        link = ExchangeLink.objects.select_for_update().filter(pk=link_id, user=user).first()
        if link is None:
            raise NotFoundError("No such exchange link.")
        # (an erased field holds a sealed "", and a Secret is always truthy: look inside)
        held = any(
            s is not None and s.reveal() for s in (link.access_token, link.access_secret, link.refresh_token)
        )
        if link.status != LinkStatus.REVOKED or held:
            was = link.status
            link.status = LinkStatus.REVOKED
            link.revoked_at = link.revoked_at if was == LinkStatus.REVOKED else timezone.now()
            link.access_token = ""
            link.access_secret = ""
            link.refresh_token = None
            link.save()
            record(actor or user, "exchange.unlinked", link, {"venue": link.exchange, "was": was})
            if was != LinkStatus.REVOKED:
                _announce_links_changed(link.exchange)
    return link


def link_credentials(link: ExchangeLink) -> Credentials:
    return Credentials(api_key=link.access_token.reveal(), api_secret=link.access_secret.reveal())


def exchange_link_check(*, link_id: Any) -> str:
    """Re-prove one active link. A venue that refuses the credentials makes the link `revoked`
    (the user is told); an unreachable venue changes nothing but the last error."""
    from apps.exchanges.calls import run_venue_call

    link = ExchangeLink.objects.select_related("user").filter(pk=link_id, status=LinkStatus.ACTIVE).first()
    if link is None:
        return "skipped"
    proved_linked_at = link.linked_at  # a relink meanwhile brings other credentials
    outcome, code = "ok", ""
    try:
        run_venue_call(link.exchange, _prove, credentials=link_credentials(link), actor=None, target=link)
    except ExchangeAuthFailed:
        outcome, code = "refused", "EXCHANGE_AUTH_FAILED"
    except ExchangeUnavailable:
        outcome, code = "unavailable", "EXCHANGE_UNAVAILABLE"
    with transaction.atomic(durable=True):
        link = ExchangeLink.objects.select_for_update().get(pk=link.pk)
        if link.status != LinkStatus.ACTIVE or link.linked_at != proved_linked_at:
            return "skipped"  # unlinked, or linked again with credentials this check never tried
        link.last_checked_at = timezone.now()
        link.last_error_code = code
        fields = ["last_checked_at", "last_error_code", "updated_at"]
        if outcome == "refused":
            link.status = LinkStatus.REVOKED
            link.revoked_at = link.last_checked_at
            link.access_token, link.access_secret, link.refresh_token = "", "", None  # useless now
            fields += ["status", "revoked_at", "access_token", "access_secret", "refresh_token"]
            record(
                None,
                "exchange.link_revoked_by_venue",
                link,
                {"venue": link.exchange, "user_id": str(link.user_id)},
            )
            transaction.on_commit(lambda: _tell_user_link_revoked(link))
            _announce_links_changed(link.exchange)
        link.save(update_fields=fields)
    log.info("exchange_link_checked", link_id=str(link.pk), venue=link.exchange, outcome=outcome)
    return outcome


def _tell_user_link_revoked(link: ExchangeLink) -> None:
    from django.core.mail import send_mail

    send_mail(
        subject="K2: your exchange link needs attention",
        message=(
            f"{link.get_exchange_display()} refused the API key ending {link.key_hint} that K2 holds "
            "for you, so the link is now marked revoked. Link a new key in K2 to keep trading there."
        ),
        from_email=None,
        recipient_list=[link.user.email],
        fail_silently=True,
    )
