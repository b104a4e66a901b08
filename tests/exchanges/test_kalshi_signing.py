"""Kalshi request signing, checked against the spec's worked example (section 2.2) and the
simulator's verification (wrong key, stale timestamp, query string, method binding)."""

from __future__ import annotations

import base64
import time

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from apps.exchanges.adapters.kalshi import signing

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
TS, PATH = "1703123456789", "/trade-api/v2/portfolio/orders?limit=5&status=resting"


def spec_verify(pub, hdrs, method, raw_path) -> bool:
    """The simulator-side `verify` of the spec's worked example, verbatim in behaviour."""
    msg = (hdrs["KALSHI-ACCESS-TIMESTAMP"] + method + raw_path.split("?", 1)[0]).encode()
    try:
        pub.verify(base64.b64decode(hdrs["KALSHI-ACCESS-SIGNATURE"]), msg, PSS, hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def test_worked_example():
    pem, public = signing.generate_private_key_pem()
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")  # PKCS#1, like Kalshi's download
    key = signing.load_private_key(pem)
    assert signing.message(TS, "get", PATH) == b"1703123456789GET/trade-api/v2/portfolio/orders"
    h = signing.auth_headers("a952bcbe-ec3b-4b5b-b8f9-11dae589608c", pem, "GET", PATH, now_ms=int(TS))
    assert h["KALSHI-ACCESS-TIMESTAMP"] == TS
    assert len(base64.b64decode(h["KALSHI-ACCESS-SIGNATURE"])) == 256
    assert spec_verify(public, h, "GET", PATH)
    assert not spec_verify(public, h, "POST", PATH)  # the method is bound
    with_query = base64.b64encode(
        key.sign(f"{TS}GET{PATH}".encode(), PSS, hashes.SHA256())
    ).decode()  # signing the query string too is wrong
    assert not spec_verify(public, {**h, "KALSHI-ACCESS-SIGNATURE": with_query}, "GET", PATH)
    again = signing.sign(key, TS, "GET", PATH)
    assert again != h["KALSHI-ACCESS-SIGNATURE"]  # PSS is randomised...
    assert signing.verify(public, again, TS, "GET", PATH)  # ...yet both verify
    assert signing.verify(public, h["KALSHI-ACCESS-SIGNATURE"], TS, "GET", "/trade-api/v2/portfolio/orders")
    ws = signing.sign(key, TS, "GET", "/trade-api/ws/v2")
    assert signing.message(TS, "GET", "/trade-api/ws/v2") == b"1703123456789GET/trade-api/ws/v2"
    auto = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    public.verify(base64.b64decode(ws), b"1703123456789GET/trade-api/ws/v2", auto, hashes.SHA256())
    assert (
        signing.signed_path("https://external-api.kalshi.com/trade-api/v2/markets?limit=1")
        == "/trade-api/v2/markets"
    )


def test_simulator_verifies_like_kalshi(kalshi_sim, kalshi_account):
    key_id, pem = kalshi_account["api_key_id"], kalshi_account["private_key_pem"]
    path = "/trade-api/v2/portfolio/orders"
    ok = kalshi_sim.http.get(
        path, params={"limit": 5}, headers=signing.auth_headers(key_id, pem, "GET", path)
    )
    assert ok.status_code == 200
    assert ok.json()["orders"] == []

    def refused(headers: dict[str, str]) -> dict:
        response = kalshi_sim.http.get(path, params={"limit": 5}, headers=headers)
        assert response.status_code == 401
        return response.json()["error"]

    other_pem = signing.generate_private_key_pem()[0]
    error = refused(signing.auth_headers(key_id, other_pem, "GET", path))
    assert error["code"] == "authentication_error"
    assert error["details"] == "INCORRECT_API_KEY_SIGNATURE"
    stale = signing.auth_headers(key_id, pem, "GET", path, now_ms=int(time.time() * 1000) - 60_000)
    assert refused(stale)["details"] == "INVALID_TIMESTAMP"
    assert refused(signing.auth_headers(key_id, pem, "POST", path))["code"] == "authentication_error"
    ts = str(int(time.time() * 1000))
    key = signing.load_private_key(pem)
    query_signed = base64.b64encode(
        key.sign(f"{ts}GET{path}?limit=5".encode(), PSS, hashes.SHA256())
    ).decode()
    headers = {
        "KALSHI-ACCESS-KEY": key_id,
        "KALSHI-ACCESS-TIMESTAMP": ts,
        "KALSHI-ACCESS-SIGNATURE": query_signed,
    }
    assert refused(headers)["details"] == "INCORRECT_API_KEY_SIGNATURE"  # the query is not signed
    assert refused({})["details"] == "MISSING_AUTH_HEADERS"
    ws = httpx.get(
        kalshi_sim.base_url + "/trade-api/ws/v2",
        headers=signing.auth_headers(key_id, other_pem, "GET", "/trade-api/ws/v2"),
    )
    assert ws.status_code == 401
    assert kalshi_sim.http.post("/trade-api/v2/login", json={}).status_code == 410
