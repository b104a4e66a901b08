"""The vault's one error type."""

from __future__ import annotations


class VaultError(Exception):
    """A vault token could not be sealed, opened or re-wrapped.

    Raised for a malformed or tampered token, a wrong context (a ciphertext copied to another
    field), an unknown master key id, or a key provider failure. Messages name at most a key id
    or a context, never plaintext or key material.
    """
