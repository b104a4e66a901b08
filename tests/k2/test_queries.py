"""`k2.core.queries`: the order path's SELECT, INSERT and UPDATE, built once from the model, must
read and write exactly what the ORM would."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.models import Session
from apps.exchanges.models import ExchangeLink
from apps.trading.models import Order
from k2.audit.models import AuditEntry
from k2.core.queries import (
    pipelined,
    row_get,
    row_insert,
    row_update,
    row_update_if,
    rows_insert,
    rows_where,
    rows_where_later,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("rows@example.com", "x" * 16)


def new_order(user: Any, **fields: Any) -> Order:
    values: dict[str, Any] = {
        "user": user,
        "client_order_id": uuid.uuid4().hex,
        "request_fingerprint": "f" * 64,
        "exchange": "cryptocom",
        "instrument": "BTC-USD",
        "instrument_type": "crypto",
        "side": "buy",
        "order_type": "limit",
        "quantity": Decimal("0.5"),
        "price": Decimal("65000.12"),
        "metadata": {"reference_price": "65001", "nested": {"a": [1, 2]}},
    }
    return Order(**{**values, **fields})


def orm_values(instance: Any) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_insert_then_get_matches_the_orm(user: Any) -> None:
    order = new_order(user)
    with CaptureQueriesContext(connection) as insert:
        row_insert(order)
    assert len(insert) == 1
    assert not order._state.adding
    assert order.created_at is not None
    assert order.updated_at >= order.created_at
    assert order.status == "pending"

    loaded = row_get(Order, pk=order.pk)
    assert loaded is not None
    assert orm_values(loaded) == orm_values(Order.objects.get(pk=order.pk))
    assert loaded.metadata == {"reference_price": "65001", "nested": {"a": [1, 2]}}
    assert loaded.quantity == Decimal("0.5")
    assert loaded.created_at.tzinfo is not None
    assert row_get(Order, pk=uuid.uuid4()) is None
    assert row_get(Order, user_id=user.pk, client_order_id=order.client_order_id) == order


def test_get_decrypts_like_the_orm_and_loads_a_foreign_key_in_the_same_query(user: Any) -> None:
    link = ExchangeLink.objects.create(
        user=user, exchange="cryptocom", access_token="key-123", access_secret="secret-456",
        linked_at=timezone.now(),
    )  # fmt: skip
    loaded = row_get(ExchangeLink, user_id=user.pk, exchange="cryptocom", status="active")
    assert loaded is not None
    assert loaded.pk == link.pk
    assert (loaded.access_token.reveal(), loaded.access_secret.reveal()) == ("key-123", "secret-456")
    assert row_get(ExchangeLink, user_id=user.pk, exchange="cryptocom", status="revoked") is None

    session = Session.objects.create(user=user, token_hash="h" * 64, expires_at=timezone.now() + timedelta(1))
    with CaptureQueriesContext(connection) as queries:
        found = row_get(Session, related=("user",), pk=session.pk)
        assert found is not None
        assert found.user.email == "rows@example.com"
    assert len(queries) == 1
    with pytest.raises(ValueError, match="required foreign key"):
        row_get(Session, related=("token_hash",), pk=session.pk)


def test_get_with_lock_holds_the_row_until_commit(user: Any) -> None:
    order = new_order(user)
    row_insert(order)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert row_get(Order, lock=True, pk=order.pk) == order
    assert "FOR UPDATE" in queries[-1]["sql"]


def test_update_writes_the_listed_fields_refreshes_auto_now_and_sends_signals(user: Any) -> None:
    order = new_order(user)
    row_insert(order)
    before = order.updated_at
    seen: list[tuple[bool, Any]] = []

    def saved(sender: Any, instance: Any, created: bool, update_fields: Any, **kwargs: Any) -> None:
        seen.append((created, update_fields))

    post_save.connect(saved, sender=Order, dispatch_uid="test_queries")
    try:
        order.status, order.notional, order.error_code = "submitted", Decimal("32500.06"), "ignored"
        order.metadata = {**order.metadata, "price_source": "ticker"}
        row_update(order, ["status", "notional", "metadata", "updated_at"])
    finally:
        post_save.disconnect(sender=Order, dispatch_uid="test_queries")
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.notional) == ("submitted", Decimal("32500.06"))
    assert stored.metadata["price_source"] == "ticker"
    assert stored.error_code == ""  # not listed: not written
    assert stored.updated_at > before
    assert seen == [(False, frozenset({"status", "notional", "metadata", "updated_at"}))]

    Order.objects.filter(pk=order.pk).delete()
    with pytest.raises(DatabaseError, match="no row updated"):
        row_update(order, ["status"])


def test_insert_reads_back_database_generated_fields() -> None:
    entry = AuditEntry(
        created_at=timezone.now(), action="test.rows", actor_label="system", details={}, entry_hash="0" * 64
    )
    row_insert(entry)
    assert isinstance(entry.id, int)
    assert entry.txid > 0
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.txid, stored.action) == (entry.txid, "test.rows")


def test_rows_along_are_written_by_the_same_statement_or_not_at_all(user: Any) -> None:
    def entry(action: str) -> AuditEntry:
        return AuditEntry(created_at=timezone.now(), action=action, details={"n": 1}, entry_hash="0" * 64)

    order = new_order(user)
    with CaptureQueriesContext(connection) as queries:
        row_insert(order, along=[entry("test.along.insert")])
        order.status = "submitted"
        row_update(order, ["status"], along=[entry("test.along.update.1"), entry("test.along.update.2")])
        rows_insert([entry("test.along.alone")])
    assert len(queries) == 3
    actions = set(AuditEntry.objects.filter(action__startswith="test.along").values_list("action", flat=True))
    assert actions == {"test.along.insert", "test.along.update.1", "test.along.update.2", "test.along.alone"}
    assert AuditEntry.objects.get(action="test.along.insert").details == {"n": 1}

    duplicate = new_order(user, client_order_id=order.client_order_id)
    with pytest.raises(IntegrityError), transaction.atomic():
        row_insert(duplicate, along=[entry("test.along.refused")])
    assert not AuditEntry.objects.filter(action="test.along.refused").exists()


def test_update_if_unchanged_writes_the_row_and_its_entries_only_when_the_row_is_as_expected(
    user: Any,
) -> None:
    def entry(action: str) -> AuditEntry:
        return AuditEntry(
            created_at=timezone.now(), action=action, details={"n": 1}, ip="127.0.0.1", entry_hash="0" * 64
        )

    order = new_order(user)
    row_insert(order)
    seen: dict[str, Any] = {"status": order.status, "updated_at": order.updated_at, "reconciled_at": None}

    # another writer moved the row on since we read it: nothing is written, entries included
    Order.objects.filter(pk=order.pk).update(reconciled_at=timezone.now())
    order.status = "submitted"
    with CaptureQueriesContext(connection) as queries:
        assert not row_update_if(order, ["status", "updated_at"], unchanged=seen, along=[entry("test.if.no")])
    assert len(queries) == 1
    assert Order.objects.get(pk=order.pk).status == "pending"
    assert not AuditEntry.objects.filter(action="test.if.no").exists()

    # as expected: the row and both entries, in one statement
    stored = Order.objects.get(pk=order.pk)
    seen = {"status": stored.status, "updated_at": stored.updated_at, "reconciled_at": stored.reconciled_at}
    entries = [entry("test.if.yes.1"), entry("test.if.yes.2")]
    with CaptureQueriesContext(connection) as queries:
        assert row_update_if(order, ["status", "updated_at"], unchanged=seen, along=entries)
    assert len(queries) == 1
    stored = Order.objects.get(pk=order.pk)
    assert (stored.status, stored.updated_at) == ("submitted", order.updated_at)
    assert stored.updated_at > seen["updated_at"]
    written = AuditEntry.objects.filter(action__startswith="test.if.yes").order_by("id")  # as given
    assert [(e.action, e.ip, e.details) for e in written] == [
        ("test.if.yes.1", "127.0.0.1", {"n": 1}),
        ("test.if.yes.2", "127.0.0.1", {"n": 1}),
    ]
    assert all(not e._state.adding for e in entries)

    # the same expectation again is stale now (updated_at moved on)
    order.status = "open"
    assert not row_update_if(order, ["status", "updated_at"], unchanged=seen)
    assert Order.objects.get(pk=order.pk).status == "submitted"


def test_rows_where_reads_several_models_in_one_statement(user: Any) -> None:
    from apps.trading.models import KillSwitch, RiskLimit

    RiskLimit.objects.create(user=user, instrument_type="crypto", max_order_notional=Decimal("12.34"))
    RiskLimit.objects.create(user=None, instrument_type="", max_orders_per_second=3)
    KillSwitch.objects.create(scope="user", user=user, mode="halt", reason="ops")
    KillSwitch.objects.create(scope="venue", venue="kalshi", mode="halt", active=False)
    parts = (
        (KillSwitch, "active AND user_id = %s", [user.pk]),
        (RiskLimit, "user_id = %s OR user_id IS NULL", [user.pk]),
        (Order, "user_id = %s", [user.pk]),
    )
    with CaptureQueriesContext(connection) as queries:
        switches, limits, orders = rows_where(*parts)
    assert len(queries) == 1
    assert orders == []
    assert [(s.scope, s.user_id, s.mode, s.reason, s._state.adding) for s in switches] == [
        ("user", user.pk, "halt", "ops", False)
    ]
    assert [orm_values(s) for s in switches] == [orm_values(KillSwitch.objects.get(scope="user"))]
    by_user = {row.user_id: row for row in limits}
    assert set(by_user) == {user.pk, None}
    assert orm_values(by_user[user.pk]) == orm_values(RiskLimit.objects.get(user=user))
    assert by_user[user.pk].max_order_notional == Decimal("12.34")
    assert (by_user[None].max_orders_per_second, by_user[None].max_order_notional) == (3, None)


@pytest.mark.django_db(transaction=True)
def test_pipelined_statements_go_out_without_waiting_for_their_answers(user: Any) -> None:
    """A statement waiting on a lock another session holds does not hold up the block: its
    answer is waited for only when it is read."""
    import threading
    import time

    from django.db import connections

    order = new_order(user)
    row_insert(order)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                row_get(Order, lock=True, pk=order.pk)
                locked.set()
                release.wait(5)
        finally:
            connections.close_all()

    other = threading.Thread(target=hold)
    other.start()
    try:
        assert locked.wait(5)
        with transaction.atomic(), pipelined(), connection.cursor() as lock, connection.cursor() as read:
            started = time.monotonic()
            lock.execute("SELECT status FROM orders WHERE id = %s FOR UPDATE", [order.pk])
            read.execute("SELECT count(*) FROM orders WHERE user_id = %s", [user.pk])
            sent_in = time.monotonic() - started
            release.set()
            assert (lock.fetchone(), read.fetchone()) == (("pending",), (1,))
        assert sent_in < 2  # not the 5 s the other session holds the lock without the release
    finally:
        release.set()
        other.join(10)


def test_pipelined_checks_an_update_s_row_at_the_end_of_the_block(user: Any) -> None:
    order = new_order(user)
    row_insert(order)
    Order.objects.filter(pk=order.pk).delete()
    written = []

    def update() -> None:
        with transaction.atomic(), pipelined():
            order.status = "open"
            row_update(
                order,
                ["status"],
                along=[AuditEntry(created_at=timezone.now(), action="t.along", entry_hash="0" * 64)],
            )
            written.append(order.status)

    with pytest.raises(DatabaseError, match="no row updated"):
        update()
    assert written == ["open"]  # the block went on; the check came at its end
    assert not AuditEntry.objects.filter(action="t.along").exists()  # and the transaction rolled back


def test_pipelined_errors_are_django_s(user: Any) -> None:
    order = new_order(user)
    row_insert(order)
    duplicate = new_order(user, client_order_id=order.client_order_id)
    with pytest.raises(IntegrityError), transaction.atomic(), pipelined():
        row_insert(duplicate)


def test_rows_where_later_is_read_after_its_block_and_never_when_the_block_fails(user: Any) -> None:
    order = new_order(user)
    with pipelined():
        row_insert(order)  # answered at the end of the block, with the read
        read = rows_where_later((Order, "user_id = %s", [user.pk]))
    ((found,),) = read()
    assert (found.pk, found.status) == (order.pk, "pending")

    duplicate = new_order(user, client_order_id=order.client_order_id)

    def insert_then_read() -> None:
        with transaction.atomic(), pipelined():
            row_insert(duplicate)
            rows_where_later((Order, "user_id = %s", [user.pk]))

    # The insert's error: at the end of the block, or at the read's send if its answer is back
    # by then (psycopg reads what has arrived as it sends); never one of the read's own.
    with pytest.raises(IntegrityError):
        insert_then_read()
    assert Order.objects.filter(user=user).count() == 1


@pytest.mark.django_db(transaction=True)  # autocommit, as the order path's own blocks run
def test_a_statement_skipped_by_a_failed_block_still_runs_on_that_connection(user: Any) -> None:
    """A statement run often enough on a connection is prepared there (DATABASE_PREPARE_THRESHOLD)
    on its next run. psycopg (3.3.9) counts it as prepared as soon as it sends the PREPARE, and
    checks that only for a statement it had never seen: when an earlier statement of the block
    fails, the server skips the rest of the block, PREPARE included, and every later run of the
    statement on that connection failed ("prepared statement "_pg3_N" does not exist"). On the
    order path, an idempotent replay (a duplicate insert, then the risk configuration's read)
    left half the web process's pooled connections refusing every new order with a 500."""
    threshold = connection.connection.prepare_threshold
    assert threshold is not None  # the statement below is prepared on its (threshold + 1)th run
    order = new_order(user)
    row_insert(order)
    query = (Order, "user_id = %s", [user.pk])

    def read() -> list[Any]:
        with pipelined():
            rows = rows_where_later(query)
        ((found,),) = rows()
        return [found.pk]

    for _ in range(threshold):
        assert read() == [order.pk]
    duplicate = new_order(user, client_order_id=order.client_order_id)

    def insert_then_read() -> None:
        with pipelined():
            row_insert(duplicate)  # fails: the read after it, due to be prepared, is skipped
            rows_where_later(query)

    with pytest.raises(IntegrityError):
        insert_then_read()
    for _ in range(threshold + 2):  # unprepared, then prepared again
        assert read() == [order.pk]
