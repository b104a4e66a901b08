"""`EncryptedTextField`: a model field whose column holds a vault token, never plaintext.

Usage::

    class ExchangeLink(BaseModel):
        api_secret = EncryptedTextField()
        totp_seed = EncryptedTextField(null=True)

    link.api_secret = "plaintext"      # becomes a Secret at once; sealed on save
    link.save()
    link.api_secret                    # Secret('********')
    link.api_secret.reveal()           # "plaintext" (decrypted on first reveal only)

Guarantees and rules:

- The column (``text``) holds a ``k2v1$...`` token (see `k2.vault.crypto`) sealed with the
  context ``"<app_label>.<model_name>.<field_name>"``, so a token copied into another field or
  model does not open. Renaming the model or field therefore needs a data migration that
  re-seals the values (reveal under the old context, seal under the new).
- The attribute is always a `Secret` (or None): assigning a ``str`` wraps it as plaintext;
  rows loaded from the database are not decrypted until ``.reveal()``.
- The only lookups are ``isnull`` and ``=None``; any other lookup or transform
  raises `FieldError`, because ciphertexts are randomised and comparing them would silently
  match nothing.
- Model forms (and so the admin) leave the field out; a form that sets a secret declares its
  own form field (e.g. ``CharField(widget=PasswordInput)``) and assigns the plaintext. See
  `k2.vault.admin.SecretAdminMixin` for the admin's "set"/"not set" display.
- ``dumpdata`` writes the token; ``loaddata`` recognises a token and keeps it as such.
- There is no implicit empty-string default: a row saved without a value for a non-null field
  fails (``full_clean`` says the field cannot be null) instead of storing an encrypted "".
- ``unique``, ``db_index`` and ``primary_key`` are refused (meaningless on random ciphertext).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldError
from django.db import models
from django.db.models.lookups import Exact
from django.db.models.query_utils import DeferredAttribute

from k2.vault import crypto
from k2.vault.secret import Secret

__all__ = ["EncryptedTextField"]


class _SecretAttribute(DeferredAttribute):
    """Turns plain strings assigned to the attribute into (unsealed) `Secret`s."""

    field: EncryptedTextField

    def __set__(self, instance: models.Model, value: Any) -> None:
        if isinstance(value, str):
            value = Secret.from_plaintext(value, context=self.field.vault_context)
        instance.__dict__[self.field.attname] = value


class _NullOnlyExact(Exact):
    """``field=None`` (which Django turns into ``isnull``); any other value is refused."""

    def __init__(self, lhs: Any, rhs: Any) -> None:
        if rhs is not None:
            raise FieldError(_lookup_refused(lhs.output_field, "exact"))
        super().__init__(lhs, rhs)


def _lookup_refused(field: EncryptedTextField, lookup_name: str) -> str:
    return (
        f"EncryptedTextField {field.vault_context!r} does not support the {lookup_name!r} lookup: "
        f"its values are randomised ciphertext (only isnull / =None work)"
    )


class EncryptedTextField(models.TextField):
    """A text column holding a vault token; the Python value is a `Secret`."""

    description = "Encrypted text (vault token)"
    # No implicit "" default: a missing secret is None (NOT NULL unless null=True), never an
    # encrypted empty string that would look "set".
    empty_strings_allowed = False
    descriptor_class = _SecretAttribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for option in ("primary_key", "unique", "db_index"):
            if kwargs.get(option):
                raise TypeError(f"EncryptedTextField does not support {option}=True")
        super().__init__(*args, **kwargs)

    @property
    def vault_context(self) -> str:
        """The associated data tokens in this column are sealed with."""
        opts = self.model._meta
        return f"{opts.app_label}.{opts.model_name}.{self.name}"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret | None:
        if value is None:
            return None
        return Secret.from_token(value, context=self.vault_context)

    def to_python(self, value: Any) -> Secret | None:
        if value is None or isinstance(value, Secret):
            return value
        if isinstance(value, str):
            # Only deserialisation (loaddata) and direct calls get here with a str: assignment
            # goes through the descriptor. A dumped token stays a token.
            if crypto.is_token(value):
                return Secret.from_token(value, context=self.vault_context)
            return Secret.from_plaintext(value, context=self.vault_context)
        raise TypeError(f"{self.__class__.__name__} takes a str or Secret, not {type(value).__name__}")

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return crypto.seal(value, context=self.vault_context)
        if isinstance(value, Secret):
            return value.token_for(self.vault_context)
        raise TypeError(f"{self.__class__.__name__} takes a str or Secret, not {type(value).__name__}")

    def value_to_string(self, obj: models.Model) -> str:
        """The token (serialisers such as dumpdata never see plaintext)."""
        return self.get_prep_value(self.value_from_object(obj)) or ""

    def formfield(self, **kwargs: Any) -> None:  # type: ignore[override]
        return None

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        if lookup_name == "exact":
            return _NullOnlyExact
        raise FieldError(_lookup_refused(self, lookup_name))

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(
            f"EncryptedTextField {self.vault_context!r} does not support the {lookup_name!r} transform"
        )
