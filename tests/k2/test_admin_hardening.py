"""Admin and audit hardening: no unaudited bulk delete, IPv4-mapped addresses verify, the master
key rotation is audited."""

from __future__ import annotations

import base64
import io
import secrets

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from apps.accounts.models import User
from apps.trading.models import KillSwitch
from k2.audit.hashing import hash_of_entry
from k2.audit.models import AuditEntry
from k2.audit.services import audit_seal_all, audit_verify, record
from k2.vault import crypto
from k2.vault.providers import reset_provider_cache
from tests.testapp.models import VaultSample

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN = "api-secret-for-rotation-Zq7"
KEY_A = base64.b64encode(secrets.token_bytes(32)).decode()
KEY_B = base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def ops() -> Client:
    admin = User.objects.create_superuser("ops@example.com", "correct horse battery staple")
    client = Client()
    client.force_login(admin)
    return client


def _new_actions(before: int) -> list[str]:
    return list(AuditEntry.objects.filter(id__gt=before).order_by("id").values_list("action", flat=True))


def _last_id() -> int:
    return AuditEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0


# --- 1. Bulk delete is off; single deletes are audited ------------------------------------------


def test_changelist_does_not_offer_bulk_delete(ops):
    KillSwitch.objects.create(scope="global", reason="incident 1")
    page = ops.get("/admin/trading/killswitch/")
    assert page.status_code == 200
    choices = [name for name, _ in page.context["action_form"].fields["action"].choices]
    assert "delete_selected" not in choices
    assert "deactivate" in choices


def test_posting_bulk_delete_deletes_nothing(ops):
    a = KillSwitch.objects.create(scope="global", reason="incident 1")
    b = KillSwitch.objects.create(scope="venue", venue="kalshi", reason="incident 2")
    ops.post(
        "/admin/trading/killswitch/",
        {"action": "delete_selected", "_selected_action": [str(a.pk), str(b.pk)], "post": "yes"},
    )
    assert set(KillSwitch.objects.values_list("pk", flat=True)) == {a.pk, b.pk}


def test_single_delete_is_still_audited(ops):
    switch = KillSwitch.objects.create(scope="global", reason="incident 1")
    before = _last_id()
    response = ops.post(f"/admin/trading/killswitch/{switch.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not KillSwitch.objects.exists()
    actions = _new_actions(before)
    assert "trading.killswitch_deleted" in actions
    assert "admin.delete" in actions


# --- 3. IPv4-mapped IPv6 addresses ---------------------------------------------------------------


def test_ipv4_mapped_address_is_stored_and_hashed_as_ipv4():
    entry = record(None, "probe.mapped", ip="::ffff:203.0.113.5")
    report = audit_verify()
    assert report.ok, report.problems
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert hash_of_entry(stored) == stored.entry_hash
    assert stored.ip == "203.0.113.5"
    audit_seal_all()
    report = audit_verify()
    assert report.ok, report.problems


def test_ipv4_mapped_remote_addr_from_a_request_verifies(client):
    before = _last_id()
    client.get("/v1/nonexistent/", REMOTE_ADDR="::ffff:203.0.113.5")
    report = audit_verify()
    assert report.ok, report.problems
    stored = AuditEntry.objects.filter(id__gt=before).latest("id")
    assert stored.ip == "203.0.113.5"


# --- 5. Master key rotation is audited -----------------------------------------------------------


@pytest.fixture
def vault_keys(settings):
    settings.K2_VAULT_PROVIDER = "local"
    settings.K2_VAULT_MASTER_KEYS = f"a:{KEY_A}"
    settings.K2_VAULT_ACTIVE_KEY_ID = "a"
    reset_provider_cache()
    yield settings
    reset_provider_cache()


def test_rotate_master_key_writes_an_audit_entry_without_secrets(vault_keys):
    row = VaultSample.objects.create(secret=PLAIN)
    vault_keys.K2_VAULT_MASTER_KEYS = f"a:{KEY_A},b:{KEY_B}"
    vault_keys.K2_VAULT_ACTIVE_KEY_ID = "b"
    before = _last_id()

    call_command("rotate_master_key", "--dry-run", stdout=io.StringIO(), stderr=io.StringIO())
    assert not AuditEntry.objects.filter(id__gt=before, action="vault.master_key_rotated").exists()

    call_command("rotate_master_key", stdout=io.StringIO(), stderr=io.StringIO())
    entry = AuditEntry.objects.get(id__gt=before, action="vault.master_key_rotated")
    assert entry.actor_label == "manage.py rotate_master_key"
    assert entry.actor_id is None
    assert entry.details["active_key_id"] == "b"
    assert entry.details["failed"] == 0
    columns = {(c["model"], c["field"]): c for c in entry.details["columns"]}
    assert columns[("testapp.VaultSample", "secret")] == {
        "model": "testapp.VaultSample", "field": "secret", "rewrapped": 1, "failed": 0, "remaining": 0,
    }  # fmt: skip
    text = str(entry.details)
    for needle in (PLAIN, KEY_A, KEY_B, "k2v1$"):
        assert needle not in text
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM testapp_vaultsample WHERE id = %s", [row.pk])
        assert crypto.key_id_of(cursor.fetchone()[0]) == "b"
