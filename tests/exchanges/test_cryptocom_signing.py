"""Signatures against the spec's worked examples (section 2), for the adapter's signer and the
simulator's independent verifier."""

from __future__ import annotations

import pytest

from apps.exchanges.adapters.cryptocom.client import param_string, sign
from apps.exchanges.simulators.cryptocom import auth as sim_auth

KEY, SECRET = "mk_test_7Hq2", "sk_test_Zx9vPq4LmN"
CREATE_PARAMS = {
    "instrument_name": "BTC_USD",
    "side": "BUY",
    "type": "LIMIT",
    "price": "50000.5",
    "quantity": "0.0100",
    "client_oid": "my-oid-001",
    "time_in_force": "GOOD_TILL_CANCEL",
    "exec_inst": ["POST_ONLY"],
}
LIST_PARAMS = {
    "contingency_type": "LIST",
    "order_list": [
        {"instrument_name": "ETH_USDT", "side": "BUY", "type": "LIMIT", "price": "2000", "quantity": "0.5"},
        {"instrument_name": "ETH_USDT", "side": "SELL", "type": "LIMIT", "price": "2500", "quantity": "0.5"},
    ],
}
VECTORS = [
    (
        "private/create-order",
        42,
        CREATE_PARAMS,
        1718000000000,
        "ba59d869b049b40438598c2d9971184b902ece1d8685b6da1a216962057143ad",
    ),
    ("public/auth", 1, {}, 1718000000000, "29c724d68b839328b2144337bdc2d6adabdf6f2a1ac00eed573c673682b284cc"),
    (
        "private/create-order-list",
        7,
        LIST_PARAMS,
        1718000000123,
        "ca4cb1af5b16a09058a7e0334a77e3e0e4c81786e802218705d21fa3ddf984f0",
    ),
]


@pytest.mark.parametrize(("method", "req_id", "params", "nonce", "expected"), VECTORS)
def test_adapter_signature_matches_spec_vector(method, req_id, params, nonce, expected):
    assert (
        sign(secret=SECRET, method=method, req_id=req_id, api_key=KEY, params=params, nonce=nonce) == expected
    )


@pytest.mark.parametrize(("method", "req_id", "params", "nonce", "expected"), VECTORS)
def test_simulator_verifier_matches_spec_vector(method, req_id, params, nonce, expected):
    assert sim_auth.signature_ok(SECRET, method, str(req_id), KEY, params, str(nonce), expected)
    assert not sim_auth.signature_ok(SECRET, method, str(req_id + 1), KEY, params, str(nonce), expected)


def test_param_strings_match_spec():
    assert param_string(CREATE_PARAMS) == (
        "client_oidmy-oid-001exec_instPOST_ONLYinstrument_nameBTC_USDprice50000.5quantity0.0100sideBUY"
        "time_in_forceGOOD_TILL_CANCELtypeLIMIT"
    )
    assert param_string(LIST_PARAMS) == (
        "contingency_typeLISTorder_listinstrument_nameETH_USDTprice2000quantity0.5sideBUYtypeLIMIT"
        "instrument_nameETH_USDTprice2500quantity0.5sideSELLtypeLIMIT"
    )
    assert param_string({}) == ""


def test_flatten_scalars_lowercase_booleans_null_and_depth_cap():
    assert param_string({"b": True, "a": None, "c": False}) == "anullbtruecfalse"
    deep = {"a": [{"b": [{"c": "x"}]}]}
    # level 3 and deeper is emitted as plain text, not flattened further
    assert param_string(deep) == "ab" + str([{"c": "x"}])
    assert sim_auth.param_string(deep) == param_string(deep)


def test_keys_sorted_by_bytes():
    assert param_string({"b": "1", "B": "2", "a": "3"}) == "B2a3b1"
