"""Tokens that cannot even be encoded (a lone UTF-16 surrogate, which JSON can carry as
"\\ud800" but UTF-8 cannot represent) are refused by the decoder like any other garbage token:
TOKEN_INVALID, never an unexpected exception (UnicodeEncodeError) and a 500.

What reaches the decoder from outside: an HTTP header cannot carry a lone surrogate (headers are
bytes); the JSON bodies that carry tokens (/v1/auth/token/refresh `refresh_token`,
/v1/auth/2fa/verify `challenge_token`) are refused before it by DRF's CharField, which rejects
surrogates (400 VALIDATION_ERROR, like any other badly shaped field). The one way in is the
WebSocket `auth` message on /ws/prices (tests/marketdata/test_ws_hardening.py). The HTTP tests
here pin what those interfaces answer, so a change of serializer cannot turn them into a 500.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.accounts import tokens
from apps.accounts.choices import TOKEN_TYPE_ACCESS, TOKEN_TYPE_CHALLENGE, TOKEN_TYPE_REFRESH
from apps.accounts.exceptions import TokenInvalid
from tests.accounts.conftest import error, get, login, make_client

pytestmark = pytest.mark.django_db(transaction=True)

GARBAGE = "not-a-token"


def unencodable_tokens(valid: str) -> list[str]:
    """Lone surrogates alone, inside garbage, and inside or after a real, valid token."""
    header, payload, signature = valid.split(".")
    return [
        "a\ud800b",
        "\udfff",
        valid + "\ud800",
        f"{header}.{payload}\udc00.{signature}",
        f"{header}\ud83d.{payload}.{signature}",
    ]


@pytest.fixture
def signed_in(user_factory) -> dict:
    user_factory("surrogate@example.com")
    return login(make_client(), "surrogate@example.com")


def post_raw_json(path: str, body: dict) -> Any:
    """POST `body` as JSON with non-ASCII escaped (`"\\ud800"`), as any JSON client sends a
    lone surrogate; the test client's own renderer would try to encode it as UTF-8 and fail."""
    return make_client().post(path, data=json.dumps(body), content_type="application/json")


@pytest.mark.parametrize("token_type", [TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH, TOKEN_TYPE_CHALLENGE])
def test_the_decoder_refuses_unencodable_tokens_as_invalid(signed_in, token_type):
    for bad in unencodable_tokens(signed_in["access_token"]):
        with pytest.raises(TokenInvalid) as refused:
            tokens.decode(bad, token_type=token_type)
        assert (refused.value.code, refused.value.message) == ("TOKEN_INVALID", "The token is invalid.")


@pytest.mark.parametrize(
    ("path", "field", "extra"),
    [
        ("/v1/auth/token/refresh", "refresh_token", {}),
        ("/v1/auth/2fa/verify", "challenge_token", {"code": "123456"}),
    ],
)
def test_json_bodies_with_bad_tokens_answer_in_the_error_envelope(signed_in, path, field, extra):
    usual = error(post_raw_json(path, {field: GARBAGE, **extra}), 401, "TOKEN_INVALID")
    # encodable non-ASCII reaches the decoder: refused exactly like garbage
    for bad in ("\xe9" * 10, signed_in["refresh_token"] + "\u00ff"):
        assert error(post_raw_json(path, {field: bad, **extra}), 401, "TOKEN_INVALID") == usual, bad
    # a surrogate is refused by the serializer first, naming the field
    for bad in unencodable_tokens(signed_in["refresh_token"]):
        refused = error(post_raw_json(path, {field: bad, **extra}), 400, "VALIDATION_ERROR")
        assert list(refused["details"]["fields"]) == [field], refused
    # and the real refresh token still works afterwards
    refreshed = post_raw_json("/v1/auth/token/refresh", {"refresh_token": signed_in["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.content


def test_a_non_ascii_bearer_header_answers_401_like_garbage(signed_in):
    usual = error(get(make_client(), "/v1/users/me", token=GARBAGE), 401, "TOKEN_INVALID")
    # what a header can carry instead of a surrogate: bytes that are not ASCII
    for bad in ("\xe9" * 10, signed_in["access_token"] + "\xff"):
        assert error(get(make_client(), "/v1/users/me", token=bad), 401, "TOKEN_INVALID") == usual
