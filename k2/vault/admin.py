"""Admin support: show encrypted fields as "set" / "not set", never their value.

Put `SecretAdminMixin` first in a ModelAdmin's bases::

    @admin.register(ExchangeLink)
    class ExchangeLinkAdmin(SecretAdminMixin, admin.ModelAdmin):
        list_display = ["id", "user", "api_secret"]   # rendered as set / not set

Guarantees: every `EncryptedTextField` of the model is left out of the admin form (the field
has no form field) and shown read-only as "set" / "not set" on the change page, and
`list_display` entries naming one are rendered the same way. Neither plaintext nor ciphertext
reaches the page, and nothing is decrypted to render it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.db import models
from django.http import HttpRequest

from k2.vault.fields import EncryptedTextField

__all__ = ["SecretAdminMixin", "secret_status"]

SET = "set"
NOT_SET = "not set"


def secret_status(field_name: str, label: str) -> Callable[[models.Model], str]:
    """An admin display callable: "set" if the model's `field_name` holds a secret, else "not set".

    It only tests for None, so nothing is decrypted to render it.
    """

    @admin.display(description=label)
    def status(obj: models.Model) -> str:
        return NOT_SET if getattr(obj, field_name, None) is None else SET

    status.__name__ = f"{field_name}_vault_status"
    return status


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin[Any]
else:
    _AdminBase = object


class SecretAdminMixin(_AdminBase):
    """ModelAdmin mixin rendering every EncryptedTextField as a read-only "set" / "not set".

    Each field ``name`` gets an admin attribute ``<name>_vault_status``; the mixin substitutes it
    for ``name`` in readonly_fields, fields, fieldsets and list_display, and adds it to the
    read-only fields of the change page.
    """

    def __init__(self, model: type[models.Model], admin_site: AdminSite) -> None:
        super().__init__(model, admin_site)
        self._vault_displays: dict[str, str] = {}
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                display = secret_status(field.name, str(field.verbose_name))
                setattr(self, display.__name__, display)
                self._vault_displays[field.name] = display.__name__

    def _swap(self, items: Sequence[Any]) -> list[Any]:
        """Replace encrypted field names (also inside fieldset rows) by their status display."""
        return [
            self._vault_displays.get(item, item)
            if isinstance(item, str)
            else self._swap(item)
            if isinstance(item, list | tuple)
            else item
            for item in items
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any | None = None) -> Any:
        readonly = self._swap(super().get_readonly_fields(request, obj))
        return readonly + [name for name in self._vault_displays.values() if name not in readonly]

    def get_list_display(self, request: HttpRequest) -> Any:
        return self._swap(super().get_list_display(request))

    def get_fields(self, request: HttpRequest, obj: Any | None = None) -> Any:
        return self._swap(super().get_fields(request, obj))

    def get_fieldsets(self, request: HttpRequest, obj: Any | None = None) -> Any:
        return [
            (name, {**options, "fields": self._swap(options.get("fields", ()))})
            for name, options in super().get_fieldsets(request, obj)
        ]
