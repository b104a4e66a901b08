"""The audit log: append-only at the database, tamper-evident, lock-free for writers, archivable."""

from __future__ import annotations

import hashlib
import threading
import time

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from k2.audit.hashing import hash_of_entry
from k2.audit.models import AuditArchive, AuditEntry, AuditSeal
from k2.audit.services import (
    atomic_audited,
    audit_archive,
    audit_seal_all,
    audit_verify,
    held_entries,
    parse_archive,
    record,
)
from k2.observability import context

# Sealing only covers committed transactions, so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)


def _guard(enabled: bool) -> None:
    """As the table owner (what an attacker with owner rights would do)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE audit_log {'ENABLE' if enabled else 'DISABLE'} TRIGGER audit_log_guard")


def test_record_captures_who_what_where_and_masks_secrets(django_user_model):
    user = django_user_model.objects.create_user("alice@example.com", "x" * 16)
    token = context.current.set(context.RequestContext("req-abc", "10.0.0.7", "pytest-agent"))
    try:
        entry = record(user, "order.placed", ("trading.order", "o-1"), {"qty": "1.5", "api_secret": "s3cr3t"})
    finally:
        context.current.reset(token)
    entry.refresh_from_db()
    assert entry.actor_id == user.id
    assert entry.actor_label == "alice@example.com"
    assert (entry.target_type, entry.target_id) == ("trading.order", "o-1")
    assert entry.details == {"qty": "1.5", "api_secret": "***"}
    assert (entry.ip, entry.user_agent, entry.request_id) == ("10.0.0.7", "pytest-agent", "req-abc")
    assert entry.created_at.tzinfo is not None
    assert entry.txid > 0
    assert hash_of_entry(entry) == entry.entry_hash


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "UPDATE audit_seal SET prev_hash = 'x'",
        "DELETE FROM audit_seal",
    ],
)
def test_database_refuses_changes(sql):
    record(None, "test.event")
    audit_seal_all()
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert AuditEntry.objects.filter(action="test.event").exists()


def test_verify_passes_on_an_untouched_log():
    for i in range(5):
        record(None, "test.event", details={"i": i})
    audit_seal_all()
    record(None, "test.unsealed")
    report = audit_verify()
    assert report.ok, report.problems
    assert report.seals >= 1
    assert report.unsealed >= 1


def test_verify_names_an_edited_entry():
    entries = [record(None, "test.event", details={"i": i}) for i in range(3)]
    audit_seal_all()
    victim = entries[1]
    _guard(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE audit_log SET details = '{\"i\": 99}' WHERE id = %s", [victim.id])
    finally:
        _guard(True)
    report = audit_verify()
    assert f"entry {victim.id}: edited (content does not match seal 1)" in report.problems
    with pytest.raises(CommandError, match="FAILED"):
        call_command("audit_verify")


def test_verify_names_an_edit_even_when_the_attacker_rehashes():
    entry = record(None, "test.event", details={"amount": "10"})
    audit_seal_all()
    entry.details = {"amount": "10000"}
    forged = hash_of_entry(entry)
    _guard(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE audit_log SET details = %s::jsonb, entry_hash = %s WHERE id = %s",
                ['{"amount": "10000"}', forged, entry.id],
            )
    finally:
        _guard(True)
    assert f"entry {entry.id}: edited (content does not match seal 1)" in audit_verify().problems


def test_verify_names_deleted_and_inserted_entries():
    entries = [record(None, "test.event", details={"i": i}) for i in range(3)]
    audit_seal_all()
    seal = AuditSeal.objects.get(seq=1)
    _guard(False)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_log WHERE id = %s", [entries[0].id])
            cursor.execute(
                "INSERT INTO audit_log (created_at, txid, actor_label, action, target_type, target_id,"
                " details, user_agent, request_id, entry_hash) VALUES (now(), %s, 'mallory', 'test.forged',"
                " '', '', '{}', '', '', 'x') RETURNING id",
                [seal.xid_low],
            )
            forged_id = cursor.fetchone()[0]
    finally:
        _guard(True)
    problems = audit_verify().problems
    assert f"entry {entries[0].id}: deleted (listed in seal 1)" in problems
    assert f"entry {forged_id}: inserted (not in seal 1)" in problems


def test_verify_command_reports_ok(capsys):
    record(None, "test.event")
    call_command("audit_verify", "--seal-first")
    assert "audit log OK" in capsys.readouterr().out


def test_writers_do_not_wait_for_each_other_and_late_commits_are_sealed_later():
    """A transaction open across a seal neither blocks other writers nor is skipped: it and
    everything after it are sealed once it commits."""
    inserted = threading.Event()
    release = threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                record(None, "test.slow")
                inserted.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inserted.wait(10)
    started = time.monotonic()
    fast = record(None, "test.fast")  # must not wait for the open transaction
    assert time.monotonic() - started < 1.0
    # The window stops at the oldest running transaction: nothing from it on is sealed yet.
    audit_seal_all()
    assert not any(fast.id in s.entry_ids for s in AuditSeal.objects.all())
    release.set()
    thread.join(10)
    audit_seal_all()
    slow = AuditEntry.objects.get(action="test.slow")
    sealed_ids = {i for s in AuditSeal.objects.all() for i in s.entry_ids}
    assert {slow.id, fast.id} <= sealed_ids
    report = audit_verify()
    assert report.ok, report.problems
    assert report.unsealed == 0


def test_archive_writes_each_seal_once_to_storage(tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "audit_archive": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    from django.core.files.storage import storages

    storages._storages.pop("audit_archive", None)  # type: ignore[attr-defined]
    ids = [record(None, "test.event", details={"i": i}).id for i in range(4)]
    audit_seal_all()
    archived = audit_archive()
    assert len(archived) == AuditSeal.objects.count() >= 1
    assert audit_archive() == []  # idempotent
    item = AuditArchive.objects.get(seal__seq=1)
    body = (tmp_path / item.storage_name).read_bytes()
    assert hashlib.sha256(body).hexdigest() == item.sha256
    seal, lines = parse_archive(body)
    assert seal["seq"] == 1
    assert {line["id"] for line in lines} >= set(ids) & set(item.seal.entry_ids)
    storages._storages.pop("audit_archive", None)  # type: ignore[attr-defined]


def test_audit_tables_are_owned_by_migrations_not_writable_by_psycopg_either(settings):
    """The guard is the database's own: a raw connection outside Django is refused too."""
    record(None, "test.event")
    db = settings.DATABASES["default"]
    conn = psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db["PASSWORD"],
        dbname=connection.settings_dict["NAME"],
    )
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_log")
    finally:
        conn.close()


def test_atomic_audited_writes_held_entries_with_the_change_or_not_at_all():
    with atomic_audited():
        first = record(None, "test.held.one", ("t", "1"))
        assert first.id is None  # held, not written yet
        assert held_entries() == [first]
        assert held_entries() == []  # handed over once
        record(None, "test.held.two", ("t", "2"))  # still held at the end: written before commit
    assert set(
        AuditEntry.objects.filter(action__startswith="test.held").values_list("action", flat=True)
    ) == {"test.held.two"}  # `first` was handed over and never written by anyone: the caller's job

    def fails() -> None:
        with atomic_audited():
            record(None, "test.held.rolled_back")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fails()
    assert not AuditEntry.objects.filter(action="test.held.rolled_back").exists()
    entry = record(None, "test.held.outside")
    assert entry.id is not None  # outside the block, written at once
