"""Key providers: the master keys that wrap (encrypt) per-record data keys.

A provider never sees record plaintext, only 32-byte data keys. Two implementations:

- `LocalKeyProvider` (``K2_VAULT_PROVIDER=local``, the default): master keys come from
  ``K2_VAULT_MASTER_KEYS`` as ``kid:base64-32-bytes[,kid2:...]``; ``K2_VAULT_ACTIVE_KEY_ID`` names
  the one that wraps new data keys (it may be omitted when exactly one key is configured). Every
  listed key still unwraps, which is what makes rotation possible without downtime.
- `AwsKmsProvider` (``K2_VAULT_PROVIDER=aws-kms``): data keys are wrapped by KMS Encrypt under
  ``K2_VAULT_KMS_KEY_ID`` (key id, ARN or alias) and unwrapped by Decrypt; the key id recorded
  is the key ARN KMS returns. KMS's own automatic rotation keeps the ARN, so nothing needs
  re-wrapping; pointing ``K2_VAULT_KMS_KEY_ID`` at another key is a rotation like any other.
  IAM needs ``kms:Encrypt`` and ``kms:DescribeKey`` on the active key and ``kms:Decrypt`` on
  every key that still wraps stored records.

`get_provider()` returns the provider for the current settings (cached per distinct settings,
so tests that change settings get a fresh provider; `reset_provider_cache()` drops them all).
Configuration errors are `ImproperlyConfigured` and never echo key material; runtime failures
(unknown key id, bad wrapped key, KMS errors) are `VaultError`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import re
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from k2.vault.exceptions import VaultError

__all__ = [
    "AwsKmsProvider",
    "KeyProvider",
    "LocalKeyProvider",
    "check_configuration",
    "get_provider",
    "reset_provider_cache",
]

KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NONCE_BYTES = 12
_KMS_ENCRYPTION_CONTEXT = {"k2-purpose": "vault-data-key"}


class KeyProvider(Protocol):
    """Wraps and unwraps data keys under named master keys."""

    @property
    def active_key_id(self) -> str:
        """The key id new data keys are wrapped under (as recorded in tokens)."""
        ...

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        """Wrap `data_key` under the active master key; return (key id used, wrapped key)."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        """Return the data key wrapped under master key `key_id`, or raise `VaultError`."""
        ...


def _parse_master_keys(spec: str) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for position, item in enumerate((part.strip() for part in spec.split(",")), start=1):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID_RE.match(key_id):
            raise ImproperlyConfigured(
                f"K2_VAULT_MASTER_KEYS entry #{position} must look like "
                f"'<key-id>:<base64 of 32 bytes>' with a key id of letters, digits, '.', '_', '-'"
            )
        if key_id in keys:
            raise ImproperlyConfigured(f"K2_VAULT_MASTER_KEYS lists key id {key_id!r} twice")
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"K2_VAULT_MASTER_KEYS key {key_id!r} is not valid base64") from None
        if len(raw) != 32:
            raise ImproperlyConfigured(
                f"K2_VAULT_MASTER_KEYS key {key_id!r} must decode to exactly 32 bytes (AES-256)"
            )
        keys[key_id] = raw
    if not keys:
        raise ImproperlyConfigured("K2_VAULT_MASTER_KEYS is not set (or lists no keys)")
    return keys


class LocalKeyProvider:
    """Master keys from the environment; AES-256-GCM key wrapping with the key id as AAD.

    Wrapped key layout: 12-byte random nonce followed by the GCM ciphertext and tag.
    """

    def __init__(self, *, master_keys: str, active_key_id: str) -> None:
        self._keys = _parse_master_keys(master_keys)
        if not active_key_id:
            if len(self._keys) != 1:
                raise ImproperlyConfigured(
                    "K2_VAULT_ACTIVE_KEY_ID must be set when K2_VAULT_MASTER_KEYS lists several keys"
                )
            active_key_id = next(iter(self._keys))
        if active_key_id not in self._keys:
            raise ImproperlyConfigured(
                f"K2_VAULT_ACTIVE_KEY_ID {active_key_id!r} is not among the key ids in "
                f"K2_VAULT_MASTER_KEYS ({', '.join(sorted(self._keys))})"
            )
        self._active_key_id = active_key_id

    def __repr__(self) -> str:
        return f"LocalKeyProvider(active_key_id={self._active_key_id!r}, key_ids={sorted(self._keys)!r})"

    @property
    def active_key_id(self) -> str:
        return self._active_key_id

    @property
    def key_ids(self) -> frozenset[str]:
        """Every key id that can unwrap (the active one included)."""
        return frozenset(self._keys)

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(_NONCE_BYTES)
        key_id = self._active_key_id
        wrapped = AESGCM(self._keys[key_id]).encrypt(nonce, data_key, key_id.encode())
        return key_id, nonce + wrapped

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            raise VaultError(f"unknown vault master key id {key_id!r}")
        try:
            return AESGCM(master).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):
            raise VaultError(f"wrapped data key does not open under master key {key_id!r}") from None


class AwsKmsProvider:
    """AWS KMS as the master key: Encrypt/Decrypt of data keys, never exporting the CMK.

    The wrapped key is the KMS ciphertext blob, bound to a fixed encryption context so blobs
    made by other users of the same KMS key do not open here.
    """

    def __init__(self, *, key_id: str, region: str, endpoint_url: str | None = None) -> None:
        import boto3  # local import: only deployments that use KMS pay for boto3

        if not key_id:
            raise ImproperlyConfigured("K2_VAULT_KMS_KEY_ID must be set for K2_VAULT_PROVIDER=aws-kms")
        self._configured_key_id = key_id
        self._client: Any = boto3.client("kms", region_name=region, endpoint_url=endpoint_url)
        self._active_arn: str | None = None

    def __repr__(self) -> str:
        return f"AwsKmsProvider(key_id={self._configured_key_id!r})"

    @property
    def active_key_id(self) -> str:
        """The ARN of the configured key (resolved once, since tokens record ARNs)."""
        if self._active_arn is None:
            try:
                meta = self._client.describe_key(KeyId=self._configured_key_id)["KeyMetadata"]
            except Exception as exc:  # botocore ClientError / connection errors
                raise VaultError(f"KMS DescribeKey failed: {type(exc).__name__}") from exc
            self._active_arn = str(meta["Arn"])
        return self._active_arn

    def wrap(self, data_key: bytes) -> tuple[str, bytes]:
        try:
            response = self._client.encrypt(
                KeyId=self._configured_key_id,
                Plaintext=data_key,
                EncryptionContext=_KMS_ENCRYPTION_CONTEXT,
            )
        except Exception as exc:
            raise VaultError(f"KMS Encrypt failed: {type(exc).__name__}") from exc
        return str(response["KeyId"]), bytes(response["CiphertextBlob"])

    def unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            response = self._client.decrypt(
                CiphertextBlob=wrapped, KeyId=key_id, EncryptionContext=_KMS_ENCRYPTION_CONTEXT
            )
        except Exception as exc:
            raise VaultError(f"KMS Decrypt failed under key {key_id!r}: {type(exc).__name__}") from exc
        return bytes(response["Plaintext"])


@functools.lru_cache(maxsize=8)
def _provider_for(
    provider: str,
    master_keys: str,
    active_key_id: str,
    kms_key_id: str,
    kms_endpoint_url: str | None,
    region: str,
) -> KeyProvider:
    if provider == "local":
        return LocalKeyProvider(master_keys=master_keys, active_key_id=active_key_id)
    if provider == "aws-kms":
        return AwsKmsProvider(key_id=kms_key_id, region=region, endpoint_url=kms_endpoint_url)
    raise ImproperlyConfigured("K2_VAULT_PROVIDER must be 'local' or 'aws-kms'")


def get_provider() -> KeyProvider:
    """The key provider for the current settings.

    One instance per distinct combination of the vault settings, so changing them (a deploy, or
    pytest-django's `settings` fixture) takes effect without restarting anything.
    """
    return _provider_for(
        settings.K2_VAULT_PROVIDER,
        settings.K2_VAULT_MASTER_KEYS,
        settings.K2_VAULT_ACTIVE_KEY_ID,
        settings.K2_VAULT_KMS_KEY_ID,
        settings.K2_VAULT_KMS_ENDPOINT_URL,
        settings.AWS_REGION,
    )


def reset_provider_cache() -> None:
    """Forget every cached provider (and its KMS client)."""
    _provider_for.cache_clear()


def check_configuration() -> None:
    """Raise `ImproperlyConfigured` now if the vault settings cannot work (no network calls).

    Called at startup so a bad or missing master key stops the process before it serves.
    """
    if settings.K2_VAULT_PROVIDER == "local":
        get_provider()
    elif settings.K2_VAULT_PROVIDER == "aws-kms":
        if not settings.K2_VAULT_KMS_KEY_ID:
            raise ImproperlyConfigured("K2_VAULT_KMS_KEY_ID must be set for K2_VAULT_PROVIDER=aws-kms")
    else:
        raise ImproperlyConfigured("K2_VAULT_PROVIDER must be 'local' or 'aws-kms'")
