"""Models that exist only for the test suite."""

from __future__ import annotations

from django.db import models

from k2.vault.fields import EncryptedTextField


class VaultSample(models.Model):
    """A row with a required and an optional encrypted field (vault tests)."""

    label = models.CharField(max_length=50, default="", blank=True)
    secret = EncryptedTextField()
    optional = EncryptedTextField(null=True, blank=True)

    def __str__(self) -> str:
        return f"VaultSample {self.pk} {self.label}"
