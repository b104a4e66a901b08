"""Exchange links: a user's credentials at a venue, encrypted with the vault (architecture
`exchange_links`). Neither venue offers OAuth to third-party apps, so a link holds an API key
(id) and its secret (HMAC secret for Crypto.com, RSA private key PEM for Kalshi); the
`refresh_token`/`token_expires_at` columns keep the door open for an OAuth venue."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.exchanges.choices import LinkStatus, Venue
from k2.core.models import BaseModel
from k2.vault.fields import EncryptedTextField


class ExchangeLink(BaseModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exchange_links"
    )
    exchange = models.CharField(max_length=50, choices=Venue.choices)
    status = models.CharField(max_length=20, choices=LinkStatus.choices, default=LinkStatus.ACTIVE)
    access_token = EncryptedTextField(help_text="API key (id) at the venue")
    access_secret = EncryptedTextField(help_text="API secret or private key PEM")
    refresh_token = EncryptedTextField(null=True, blank=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    key_hint = models.CharField(max_length=16, blank=True, help_text="last characters of the API key")
    exchange_user_id = models.CharField(max_length=255, blank=True)
    linked_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)

    class Meta:
        db_table = "exchange_links"
        constraints = [
            models.UniqueConstraint(fields=["user", "exchange"], name="exchange_links_user_exchange")
        ]
        indexes = [models.Index(fields=["status", "last_checked_at"])]

    def __str__(self) -> str:
        return f"{self.exchange} link of {self.user_id} ({self.status})"
