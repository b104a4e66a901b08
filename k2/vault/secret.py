"""`Secret`: the in-memory value of an encrypted field, opaque until `.reveal()`.

Guarantees:

- ``repr``, ``str`` and any ``format`` spec (f-strings, ``%s``, logging) give ``********``.
- It is not JSON-serialisable (no encoder knows it) and refuses to be pickled, so it cannot
  leave the process by accident; copies share the same object.
- A Secret loaded from the database holds only the token: nothing is decrypted until the first
  `.reveal()`, whose result is then kept for the object's lifetime.
- Two Secrets are equal only if they are the same object (no plaintext comparison by ``==``).
"""

from __future__ import annotations

from typing import Any, NoReturn

from k2.vault import crypto

MASK = "********"


class Secret:
    """A plaintext secret bound to a vault context, held sealed, revealed on demand."""

    __slots__ = ("_context", "_plaintext", "_token")

    def __init__(self, *, context: str, token: str | None = None, plaintext: str | None = None) -> None:
        if (token is None) == (plaintext is None):
            raise TypeError("Secret takes exactly one of token= or plaintext=")
        if plaintext is not None and not isinstance(plaintext, str):
            raise TypeError("Secret plaintext must be str")
        self._context = context
        self._token = token
        self._plaintext = plaintext

    @classmethod
    def from_token(cls, token: str, *, context: str) -> Secret:
        """Wrap a sealed token (as stored); decryption is deferred to `reveal()`."""
        return cls(context=context, token=token)

    @classmethod
    def from_plaintext(cls, plaintext: str, *, context: str) -> Secret:
        """Wrap a plaintext; it is sealed when first needed (`token_for`, i.e. on save)."""
        return cls(context=context, plaintext=plaintext)

    @property
    def context(self) -> str:
        """The vault context (``app_label.model_name.field_name`` for model fields)."""
        return self._context

    @property
    def token(self) -> str | None:
        """The sealed token if there is one yet (it is ciphertext, still never display it)."""
        return self._token

    def reveal(self) -> str:
        """The plaintext. Decrypts on first call; raises `VaultError` if the token won't open."""
        if self._plaintext is None:
            assert self._token is not None
            self._plaintext = crypto.unseal(self._token, context=self._context)
        return self._plaintext

    def token_for(self, context: str) -> str:
        """A token that opens in `context`: the held one if it matches, else a fresh seal."""
        if context == self._context:
            if self._token is None:
                self._token = crypto.seal(self.reveal(), context=context)
            return self._token
        return crypto.seal(self.reveal(), context=context)

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Secret values cannot be pickled; store the model row instead")
