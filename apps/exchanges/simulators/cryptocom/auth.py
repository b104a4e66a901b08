"""Request verification exactly as Crypto.com does it (spec section 2), written independently of
the adapter's signer so that a bug in one cannot hide in the other."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

MAX_LEVEL = 3


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def param_string(value: Any, level: int = 0) -> str:
    """The spec's recursive flatten: sorted object keys, lists in order, plain text past level 3."""
    if level >= MAX_LEVEL:
        return _text(value)
    if isinstance(value, dict):
        out = []
        for key in sorted(value, key=lambda k: str(k).encode()):
            item = value[key]
            out.append(str(key))
            out.append(param_string(item, level + 1) if isinstance(item, dict | list) else _text(item))
        return "".join(out)
    if isinstance(value, list):
        return "".join(param_string(e, level + 1) if isinstance(e, dict | list) else _text(e) for e in value)
    return _text(value)


def expected_signature(secret: str, method: str, req_id: str, api_key: str, params: Any, nonce: str) -> str:
    payload = f"{method}{req_id}{api_key}{param_string(params or {})}{nonce}"
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signature_ok(
    secret: str, method: str, req_id: str, api_key: str, params: Any, nonce: str, sig: str
) -> bool:
    expected = expected_signature(secret, method, req_id, api_key, params, nonce)
    return hmac.compare_digest(expected, str(sig).lower())


def wire_text(value: Any) -> str | None:
    """An `id` or `nonce` as its decimal text, exactly as sent (int or numeric string); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isdigit():
        return value
    return None
