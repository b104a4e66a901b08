from django.db import models


class Venue(models.TextChoices):
    CRYPTOCOM = "cryptocom", "Crypto.com Exchange"
    KALSHI = "kalshi", "Kalshi"


class LinkStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"
