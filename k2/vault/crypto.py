"""Envelope encryption of short secrets (exchange credentials, TOTP seeds).

Each `seal` draws a fresh random 256-bit data key and encrypts the UTF-8 plaintext with
AES-256-GCM under a random 96-bit nonce, with the caller's `context` as associated data; the
data key is then wrapped by the configured key provider (see `k2.vault.providers`). The
result is one ASCII token:

    k2v1$<key_id>$<base64 wrapped data key>$<base64 nonce || ciphertext || tag>

- ``k2v1`` is the format version; anything else is refused.
- ``key_id`` names the master key that wrapped the data key (a local key id, or a KMS key ARN),
  so records written under an old master key still open while it is configured, and
  `rewrap` can move them to the active key without touching the payload.
- base64 is the standard alphabet with padding; ``$`` never occurs inside a part.

Guarantees:

- Confidentiality and integrity: any change to any part of a token makes `unseal` fail.
- Binding: a token opens only with the `context` it was sealed with (fields use
  ``"<app_label>.<model_name>.<field_name>"``), so a ciphertext copied into another field fails.
- Errors are `VaultError` whose message never holds plaintext or key material.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from k2.vault.exceptions import VaultError
from k2.vault.providers import get_provider

__all__ = ["TOKEN_VERSION", "VaultError", "is_token", "key_id_of", "rewrap", "seal", "unseal"]

TOKEN_VERSION = "k2v1"
_SEP = "$"
_NONCE_BYTES = 12
_DATA_KEY_BYTES = 32


class _Token(NamedTuple):
    key_id: str
    wrapped_key: bytes
    payload: bytes  # nonce || ciphertext || tag


def _aad(context: str) -> bytes:
    if not context:
        raise VaultError("a vault context is required")
    return f"{TOKEN_VERSION}|{context}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _format(key_id: str, wrapped_key: bytes, payload: bytes) -> str:
    if not key_id or _SEP in key_id:
        raise VaultError("the key provider returned an unusable key id")
    return _SEP.join((TOKEN_VERSION, key_id, _b64(wrapped_key), _b64(payload)))


def _parse(token: str) -> _Token:
    if not isinstance(token, str):
        raise VaultError("a vault token must be a string")
    parts = token.split(_SEP)
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[1]:
        raise VaultError("not a k2v1 vault token")
    try:
        wrapped_key = base64.b64decode(parts[2], validate=True)
        payload = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        raise VaultError("vault token is not valid base64") from None
    if not wrapped_key or len(payload) < _NONCE_BYTES + 16:
        raise VaultError("vault token is truncated")
    return _Token(parts[1], wrapped_key, payload)


def _open(parsed: _Token, context: str) -> tuple[bytes, bytes]:
    """Return (data key, plaintext bytes), or raise `VaultError`."""
    aad = _aad(context)
    data_key = get_provider().unwrap(parsed.key_id, parsed.wrapped_key)
    if len(data_key) != _DATA_KEY_BYTES:
        raise VaultError("vault data key has the wrong length")
    try:
        plaintext = AESGCM(data_key).decrypt(
            parsed.payload[:_NONCE_BYTES], parsed.payload[_NONCE_BYTES:], aad
        )
    except InvalidTag:
        raise VaultError(
            f"vault token does not open in context {context!r} (tampered or copied from elsewhere)"
        ) from None
    return data_key, plaintext


def seal(plaintext: str, *, context: str) -> str:
    """Encrypt `plaintext` under a fresh data key wrapped by the active master key.

    Two seals of the same plaintext give unrelated tokens. The token opens only with `context`.
    """
    if not isinstance(plaintext, str):
        raise TypeError("seal() takes the plaintext as str")
    aad = _aad(context)
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(_NONCE_BYTES)
    payload = nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode("utf-8"), aad)
    key_id, wrapped_key = get_provider().wrap(data_key)
    return _format(key_id, wrapped_key, payload)


def unseal(token: str, *, context: str) -> str:
    """Decrypt a token made by `seal` (or `rewrap`) with the same `context`.

    Raises `VaultError` if the token is malformed or tampered with, its master key is not
    configured, or `context` differs from the one it was sealed with.
    """
    _, plaintext = _open(_parse(token), context)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError("vault plaintext is not UTF-8") from None


def rewrap(token: str, *, context: str) -> str:
    """Return `token` with its data key re-wrapped under the active master key.

    The payload (nonce, ciphertext, tag) is kept byte for byte; it is authenticated first, so a
    tampered or wrong-context token raises `VaultError` instead of being carried forward. A token
    already on the active key is returned unchanged (so rewrapping is idempotent).
    """
    parsed = _parse(token)
    provider = get_provider()
    if parsed.key_id == provider.active_key_id:
        return token
    data_key, _ = _open(parsed, context)
    key_id, wrapped_key = provider.wrap(data_key)
    return _format(key_id, wrapped_key, parsed.payload)


def key_id_of(token: str) -> str:
    """The id of the master key that wrapped the token's data key (no decryption)."""
    return _parse(token).key_id


def is_token(value: str) -> bool:
    """Whether `value` is shaped like a vault token (no decryption, so not proof it opens)."""
    try:
        _parse(value)
    except VaultError:
        return False
    return True
