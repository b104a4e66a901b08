"""Every answer is in the envelope with a request id; every error has the right status and code."""

from __future__ import annotations

import io
import json
import logging
import re
import threading

import pytest
import structlog
from django.db import connection
from django.test import Client

from k2.audit.models import AuditEntry
from k2.audit.services import record
from k2.observability.logging import formatter_processors, shared_processors

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.k2.urls")]


@pytest.fixture
def client() -> Client:
    return Client(raise_request_exception=False)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error", "meta"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert "details" in body["error"]
    assert body["meta"]["request_id"] == response["X-Request-ID"]
    assert body["meta"]["timestamp"].endswith("Z")
    assert re.fullmatch(r"app;dur=\d+\.\d", response["Server-Timing"])
    return body


def test_success_envelope_and_decimal_as_string(client):
    response = client.post(
        "/v1/test/echo", {"name": "abc", "amount": "1.50"}, content_type="application/json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["data"] == {"name": "abc", "amount": "1.50000000"}
    assert body["meta"]["request_id"] == response["X-Request-ID"]


def test_unknown_route_is_404_envelope(client):
    assert_error(client.get("/v1/no/such/route"), 404, "NOT_FOUND")
    assert_error(client.get("/nothing-here"), 404, "NOT_FOUND")


def test_malformed_json_is_400(client):
    assert_error(
        client.post("/v1/test/echo", "{bad json", content_type="application/json"), 400, "MALFORMED_REQUEST"
    )


def test_validation_error_has_per_field_details(client):
    response = client.post(
        "/v1/test/echo", {"name": "x" * 50, "amount": "lots"}, content_type="application/json"
    )
    body = assert_error(response, 400, "VALIDATION_ERROR")
    assert set(body["error"]["details"]["fields"]) == {"name", "amount"}
    response = client.post("/v1/test/echo", [1, 2], content_type="application/json")
    assert_error(response, 400, "VALIDATION_ERROR")


def test_unauthenticated_forbidden_method_media_type(client):
    assert_error(client.get("/v1/test/protected"), 401, "UNAUTHENTICATED")
    assert_error(client.get("/v1/test/forbidden"), 403, "FORBIDDEN")
    assert_error(client.delete("/v1/test/echo"), 405, "METHOD_NOT_ALLOWED")
    assert_error(
        client.post("/v1/test/echo", "name=a", content_type="text/plain"), 415, "UNSUPPORTED_MEDIA_TYPE"
    )


def test_application_error_carries_code_and_details(client):
    body = assert_error(client.get("/v1/test/conflict"), 409, "TEST_CONFLICT")
    assert body["error"]["details"] == {"limit": "5", "attempted": "6"}


def test_throttled_is_429_with_retry_after(client):
    for _ in range(2):
        assert client.get("/v1/test/throttled").status_code == 200
    response = client.get("/v1/test/throttled")
    body = assert_error(response, 429, "RATE_LIMITED")
    assert int(response["Retry-After"]) >= 1
    assert body["error"]["details"]["retry_after_seconds"] >= 1


@pytest.mark.django_db(transaction=True)
def test_throttle_counts_exactly_under_concurrent_requests():
    # Eight requests at once from one address against 2/min: exactly two get through (a
    # read-then-write counter lets several through together). Other tests use another address.
    statuses: list[int] = []
    gate = threading.Barrier(8)

    def request() -> None:
        client = Client(REMOTE_ADDR="10.20.30.40")
        gate.wait(10)
        try:
            statuses.append(client.get("/v1/test/throttled").status_code)
        finally:
            connection.close()  # the test client keeps it open; give it back to the pool

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 200] + [429] * 6
    response = Client(REMOTE_ADDR="10.20.30.40").get("/v1/test/throttled")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60


def test_unexpected_error_is_generic_500_and_logged_not_leaked(client):
    response = client.get("/v1/test/boom")
    body = assert_error(response, 500, "INTERNAL_ERROR")
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert body["error"]["details"] == {}
    assert AuditEntry.objects.filter(action="api.error", request_id=response["X-Request-ID"]).exists()


def test_oversized_body_is_413(client, settings):
    settings.K2_REQUEST_MAX_BODY_BYTES = 1000
    response = client.post("/v1/test/echo", json.dumps({"name": "x" * 5000}), content_type="application/json")
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("client-id-123", True), ("bad id with spaces", False), ("x" * 300, False), ("a\u00e9b", False)],
)
def test_request_id_accepted_when_valid_else_generated(client, sent, kept):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=sent)
    assert (response["X-Request-ID"] == sent) is kept
    assert response.json()["meta"]["request_id"] == response["X-Request-ID"]


def test_every_api_request_is_audited(client):
    response = client.post("/v1/test/echo", {"name": "a", "amount": "1"}, content_type="application/json")
    entry = AuditEntry.objects.get(action="api.request", request_id=response["X-Request-ID"])
    assert entry.details["method"] == "POST"
    assert entry.details["path"] == "/v1/test/echo"
    assert entry.details["status"] == 201
    assert entry.details["latency_ms"] >= 0


def test_cursor_pagination_limit_cap_sort_and_filter(client, settings):
    settings.K2_PAGINATION_MAX_LIMIT = 5
    for i in range(8):
        record(None, f"test.page.{i % 2}")
    response = client.get("/v1/test/entries", {"limit": 500, "sort": "-created_at", "action": "test.page.0"})
    body = response.json()
    assert response.status_code == 200
    assert len(body["data"]) == 4  # filter applied; 4 <= cap of 5
    seen = [row["id"] for row in body["data"]]
    response = client.get("/v1/test/entries", {"limit": 3})
    page1 = response.json()
    assert len(page1["data"]) == 3
    cursor = page1["meta"]["pagination"]["next_cursor"]
    assert cursor
    page2 = client.get("/v1/test/entries", {"limit": 3, "cursor": cursor}).json()
    assert not {r["id"] for r in page1["data"]} & {r["id"] for r in page2["data"]}
    assert seen
    assert_error(client.get("/v1/test/entries", {"cursor": "garbage"}), 400, "VALIDATION_ERROR")
    assert_error(client.get("/v1/test/entries", {"sort": "-secret"}), 400, "VALIDATION_ERROR")
    assert_error(client.get("/v1/test/entries", {"limit": "ten"}), 400, "VALIDATION_ERROR")


def test_schema_and_docs(client):
    response = client.get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    docs = client.get("/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content
    # Assets are served locally (sidecar), no CDN. (The page also carries a random CSRF token,
    # which once in a while contains "cdn": look at what it loads, not at every byte.)
    assets = re.findall(r'(?:src|href)="([^"]*)"', docs.content.decode())
    assert assets
    assert all(url.startswith("/static/") for url in assets), assets


def test_health_and_readiness(client):
    assert client.get("/healthz").json()["data"]["status"] == "ok"
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["data"]["checks"] == {"postgresql": "ok", "redis": "ok", "broker": "ok"}


def test_readiness_names_the_failing_dependency(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    body = assert_error(client.get("/readyz"), 503, "NOT_READY")
    assert body["error"]["details"]["failed"] == ["redis"]


def test_logs_are_structured_json_with_request_context(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=formatter_processors, foreign_pre_chain=shared_processors
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        response = client.get("/v1/test/boom", HTTP_X_REQUEST_ID="trace-me-1")
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    line = next(entry for entry in lines if entry["message"] == "unhandled_exception")
    assert response.status_code == 500
    assert line["trace_id"] == "trace-me-1"
    assert line["level"] == "error"
    assert line["service"] == "k2"
    assert {"timestamp", "user_id", "message"} <= set(line)
    assert "RuntimeError" in line.get("exception", "")
