"""Query helpers for the few statements on every API request's and every order's path.

The ORM compiles each query anew: 0.4-0.6 ms of CPU per statement, several times what running it
costs, and an order runs ten before its answer (in seven round trips, each of which an idle
server pays again in wake-ups). The helpers here build their SQL once per shape from the model's
metadata and keep what matters of the ORM's behaviour: values prepared and converted by the
model's fields (encrypted fields, JSON), `auto_now` fields, the `pre_save`/`post_save` signals,
and instances that know they are saved. `row_update_if` and `rows_where` do in one statement
what the ORM needs several for, and `pipelined` sends statements without waiting for each
answer (`rows_where_later` reads its rows after the block).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import signals

M = TypeVar("M", bound=models.Model)
Field = models.Field


def _db() -> BaseDatabaseWrapper:
    """This thread's connection itself. `django.db.connection` is a proxy that looks the
    connection up (a thread-and-task-local read) on every attribute access; preparing a row's
    values touches it once per field, so each helper resolves it once and passes it on."""
    return connections[DEFAULT_DB_ALIAS]


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)  # identifiers come from models; values are parameters


@dataclass(frozen=True)
class _Columns:
    """A model's columns as selected under a table alias, with their value converters."""

    model: type[models.Model]
    sql: list[str]
    attnames: list[str]
    converters: list[tuple[int, list[Any], Any]]  # (index, converters, expression) where needed

    @classmethod
    def of(cls, model: type[models.Model], alias: str, fields: list[Field] | None = None) -> _Columns:
        fields = fields if fields is not None else list(model._meta.concrete_fields)
        converters = []
        for index, field in enumerate(fields):
            col = field.get_col(alias)
            found = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
            if found:
                converters.append((index, found, col))
        return cls(
            model=model,
            sql=[f"{_qn(alias)}.{_qn(f.column)}" for f in fields],
            attnames=[f.attname for f in fields],
            converters=converters,
        )

    def convert(self, values: list[Any], db: BaseDatabaseWrapper) -> list[Any]:
        for index, found, col in self.converters:
            for converter in found:
                values[index] = converter(values[index], col, db)
        return values

    def build(self, values: list[Any], db: BaseDatabaseWrapper) -> models.Model:
        return self.model.from_db(db.alias, self.attnames, self.convert(values, db))


@dataclass(frozen=True)
class _Select:
    sql: str
    keys: list[Field]
    main: _Columns
    related: list[tuple[Any, _Columns]]  # (foreign key, its model's columns)


@functools.cache
def _select(
    model: type[models.Model], keys: tuple[str, ...], related: tuple[str, ...], lock: bool
) -> _Select:
    meta = model._meta
    table = _qn(meta.db_table)
    key_fields: list[Field] = [meta.pk if key == "pk" else meta.get_field(key) for key in keys]  # type: ignore[misc]
    main = _Columns.of(model, meta.db_table)
    columns, joins, parts = list(main.sql), [], []
    for name in related:
        fk: Any = meta.get_field(name)
        if not fk.many_to_one or fk.null:
            raise ValueError(f"{name}: only a required foreign key can be loaded along")
        target = fk.related_model._meta
        part = _Columns.of(fk.related_model, target.db_table)
        columns += part.sql
        joins.append(
            f"JOIN {_qn(target.db_table)} ON {_qn(target.db_table)}.{_qn(fk.target_field.column)} "
            f"= {table}.{_qn(fk.column)}"
        )
        parts.append((fk, part))
    where = " AND ".join(f"{table}.{_qn(f.column)} = %s" for f in key_fields)
    sql = f"SELECT {', '.join(columns)} FROM {table} {' '.join(joins)} WHERE {where} LIMIT 1"  # noqa: S608
    return _Select(
        sql=sql + (f" FOR UPDATE OF {table}" if lock else ""), keys=key_fields, main=main, related=parts
    )


def row_get(model: type[M], *, lock: bool = False, related: Iterable[str] = (), **where: Any) -> M | None:
    """The row whose fields equal `where` (a unique key), or None: `one_or_none(model.objects
    [.select_for_update(of=("self",))][.select_related(*related)].filter(**where))` without the
    compile. `where` names fields, attnames or `pk`; `related` names required foreign keys to
    load along (joined; only this model's row is locked)."""
    select, db = _select(model, tuple(where), tuple(related), lock), _db()
    params = [f.get_db_prep_value(v, db) for f, v in zip(select.keys, where.values(), strict=True)]
    with db.cursor() as cursor:
        cursor.execute(select.sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values, width = list(row), len(select.main.attnames)
    instance = select.main.build(values[:width], db)
    for fk, part in select.related:
        end = width + len(part.attnames)
        fk.set_cached_value(instance, part.build(values[width:end], db))
        width = end
    return instance  # type: ignore[return-value]


@functools.cache
def _union(parts: tuple[tuple[type[models.Model], str], ...]) -> tuple[str, list[tuple[int, _Columns]]]:
    """`SELECT <part>, <columns> FROM <table> WHERE <where> UNION ALL ...`: every part's row has
    every part's columns, its own in place and typed NULLs for the others'."""
    columns = [_Columns.of(model, model._meta.db_table) for model, _ in parts]
    nulls = [
        [f"NULL::{f.cast_db_type(connection)}" for f in model._meta.concrete_fields]  # type: ignore[attr-defined]
        for model, _ in parts
    ]
    selects, offsets, offset = [], [], 1
    for index, ((model, where), own) in enumerate(zip(parts, columns, strict=True)):
        values = [str(index)]
        for other, null in enumerate(nulls):
            values += own.sql if other == index else null
        selects.append(f"SELECT {', '.join(values)} FROM {_qn(model._meta.db_table)} WHERE {where}")  # noqa: S608
        offsets.append((offset, own))
        offset += len(own.sql)
    return " UNION ALL ".join(f"({select})" for select in selects), offsets


def rows_where(*parts: tuple[type[models.Model], str, Sequence[Any]]) -> list[list[Any]]:
    """The rows of several models in one statement, each model's picked by an SQL condition on
    its own columns (`(model, "active AND venue = %s", [venue])`): a list of instances per part,
    in no particular order. The ORM would compile and run one query per part."""
    return rows_where_later(*parts)()


def rows_where_later(*parts: tuple[type[models.Model], str, Sequence[Any]]) -> Callable[[], list[list[Any]]]:
    """`rows_where`, its statement sent now and its rows read by the function it returns: inside
    `pipelined`, the statement goes out with the block's others and is read after the block
    without a round trip of its own. Not read if the block fails."""
    sql, offsets = _union(tuple((model, where) for model, where, _ in parts))
    db = _db()
    cursor = db.cursor()
    try:
        cursor.execute(sql, [value for _, _, params in parts for value in params])
    except BaseException:
        cursor.close()
        raise

    def read() -> list[list[Any]]:
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        found: list[list[Any]] = [[] for _ in parts]
        for row in rows:
            start, columns = offsets[row[0]]
            found[row[0]].append(columns.build(list(row[start : start + len(columns.sql)]), db))
        return found

    return read


def _saved_value(field: Field, instance: models.Model, add: bool, db: BaseDatabaseWrapper) -> Any:
    """The value `save` would write: `pre_save` (it sets `auto_now` fields), then the field's
    preparation for the database (it encrypts, serialises JSON, ...)."""
    return field.get_db_prep_save(field.pre_save(instance, add), db)


@functools.cache
def _insert(model: type[models.Model]) -> tuple[str, str, list[Field], _Columns | None]:
    """(`INSERT INTO t (columns) VALUES `, one row's placeholders, the fields, the returned ones)."""
    meta = model._meta
    returning = meta.db_returning_fields
    fields = [f for f in meta.concrete_fields if f not in returning]
    head = f"INSERT INTO {_qn(meta.db_table)} ({', '.join(_qn(f.column) for f in fields)}) VALUES "  # noqa: S608
    back = _Columns.of(model, meta.db_table, returning) if returning else None
    return head, f"({', '.join(['%s'] * len(fields))})", fields, back


def _before_insert(instances: Iterable[models.Model], using: str) -> None:
    for instance in instances:
        signals.pre_save.send(
            sender=type(instance), instance=instance, raw=False, using=using, update_fields=None
        )


def _after_insert(instances: Iterable[models.Model], using: str) -> None:
    """What `save` does once a new row is written: the instance knows it is saved, post_save."""
    for instance in instances:
        instance._state.adding, instance._state.db = False, using
        signals.post_save.send(
            sender=type(instance), instance=instance, created=True, update_fields=None, raw=False, using=using
        )


def _along(
    instances: Sequence[models.Model], db: BaseDatabaseWrapper, *, only_with: str = ""
) -> tuple[list[str], list[Any]]:
    """New rows to insert in the same statement as another write: `WITH` clauses and their
    parameters. One clause per model, one multi-row VALUES each; generated fields are not read
    back (the rows are written, not returned). `only_with`: a clause of the statement returning
    one row or none; the rows are written only when it returns one (the VALUES become a subquery,
    so their first row is cast to the columns' types)."""
    groups: dict[type[models.Model], list[models.Model]] = {}
    for instance in instances:
        groups.setdefault(type(instance), []).append(instance)
    clauses, params = [], []
    for index, (model, rows) in enumerate(groups.items()):
        head, one, fields, _ = _insert(model)
        params += [_saved_value(f, row, True, db) for row in rows for f in fields]
        if not only_with:
            clause = f"{head}{', '.join([one] * len(rows))}"
        else:
            values = ", ".join([_typed_row(model)] + [one] * (len(rows) - 1))
            clause = f"{head.removesuffix('VALUES ')}SELECT v.* FROM (VALUES {values}) AS v, {_qn(only_with)}"  # noqa: S608
        clauses.append(f"{_qn(f'along_{index}')} AS ({clause})")
    return clauses, params


@functools.cache
def _typed_row(model: type[models.Model]) -> str:
    """`_insert`'s placeholders for one row, each cast to its column's type."""
    fields = _insert(model)[2]
    return f"({', '.join(f'%s::{f.cast_db_type(connection)}' for f in fields)})"  # type: ignore[attr-defined]


def _with(clauses: list[str]) -> str:
    return ("WITH " + ", ".join(clauses) + " ") if clauses else ""


def row_insert(instance: models.Model, *, along: Sequence[models.Model] = ()) -> None:
    """`instance.save()` for a new row, without the compile; database-generated fields (an auto
    primary key, `db_default`s) are read back. `along`: other new rows written by the same
    statement (all or none, even outside a transaction)."""
    db = _db()
    using = db.alias
    head, one, fields, back = _insert(type(instance))
    _before_insert([*along, instance], using)
    clauses, params = _along(along, db)
    params += [_saved_value(f, instance, True, db) for f in fields]
    sql = _with(clauses) + head + one
    if back is not None:
        sql += f" RETURNING {', '.join(back.sql)}"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        if back is not None:
            for attname, value in zip(back.attnames, back.convert(list(cursor.fetchone()), db), strict=True):
                setattr(instance, attname, value)
    _after_insert([*along, instance], using)


@functools.cache
def _update(model: type[models.Model], names: tuple[str, ...]) -> tuple[str, list[Field], Field]:
    meta = model._meta
    fields: list[Field] = [meta.get_field(name) for name in names]  # type: ignore[misc]
    sets = ", ".join(f"{_qn(f.column)} = %s" for f in fields)
    pk: Field = meta.pk
    return f"UPDATE {_qn(meta.db_table)} SET {sets} WHERE {_qn(pk.column)} = %s", fields, pk  # noqa: S608


def row_update(instance: models.Model, fields: Iterable[str], *, along: Sequence[models.Model] = ()) -> None:
    """`instance.save(update_fields=fields)` without the compile (`auto_now` fields listed in
    `fields` are refreshed). Raises DatabaseError when the row is gone, as `save` does (inside
    `pipelined`, at its end). `along`: new rows written by the same statement."""
    names, db = tuple(fields), _db()
    sql, values = _update_begin(instance, names, along, db)
    clauses, params = _along(along, db)
    with db.cursor() as cursor:
        cursor.execute(_with(clauses) + sql, params + values)
        _when_answered(functools.partial(_one_row_updated, cursor, type(instance)))
    _update_done(instance, names, along, db)


def _update_begin(
    instance: models.Model, names: tuple[str, ...], along: Sequence[models.Model], db: BaseDatabaseWrapper
) -> tuple[str, list[Any]]:
    """What `save` does before an UPDATE (`pre_save` for the row and the rows along, `auto_now`
    refreshed); the UPDATE and its values (the fields', then the primary key)."""
    model, using = type(instance), db.alias
    sql, columns, pk = _update(model, names)
    _before_insert(along, using)
    signals.pre_save.send(
        sender=model, instance=instance, raw=False, using=using, update_fields=frozenset(names)
    )
    values = [_saved_value(f, instance, False, db) for f in columns]
    values.append(pk.get_db_prep_value(instance.pk, db))
    return sql, values


def _update_done(
    instance: models.Model, names: tuple[str, ...], along: Sequence[models.Model], db: BaseDatabaseWrapper
) -> None:
    """What `save` does once the row is updated (and the rows along written): `post_save`."""
    using = db.alias
    _after_insert(along, using)
    signals.post_save.send(
        sender=type(instance), instance=instance, created=False, update_fields=frozenset(names), raw=False,
        using=using,
    )  # fmt: skip


def _one_row_updated(cursor: Any, model: type[models.Model]) -> None:
    if cursor.rowcount != 1:
        raise DatabaseError(f"{model._meta.label}: no row updated (it was deleted)")


_pipeline_checks: ContextVar[list[Callable[[], None]] | None] = ContextVar("k2_pipeline_checks", default=None)


@contextmanager
def pipelined() -> Iterator[None]:
    """The block's statements go out without waiting for each one's answer (psycopg's pipeline
    mode): the database still runs them in order, one after the other, and their answers are
    read together when one is needed (a fetch) and at the end of the block. For a transaction's
    statements: inside `atomic`, its BEGIN goes out with the first of them; a lock, then a read
    that must see what the lock's previous holder committed, cost one round trip, not two.

    An error surfaces at the next read or at the end of the block, and fails the transaction
    as usual. What a helper checks in an answer it did not need at once (`row_update`'s count
    of rows) is checked at the end of the block, before it returns. Commit after the block (the
    end of `atomic`), not in it."""
    db = _db()
    db.ensure_connection()
    checks: list[Callable[[], None]] = []
    token = _pipeline_checks.set(checks)
    try:
        with db.wrap_database_errors, db.connection.pipeline():
            yield
    except BaseException:
        _prepared_forget(db)
        raise
    finally:
        _pipeline_checks.reset(token)
    for check in checks:
        check()


def _prepared_forget(db: BaseDatabaseWrapper) -> None:
    """After a block that failed: the connection's prepared statements are forgotten, and
    deallocated on the server with its next statement (`DEALLOCATE ALL`, psycopg's own
    maintenance). A statement due to be prepared (`DATABASE_PREPARE_THRESHOLD`) is counted as
    prepared by psycopg (3.3.9) once its PREPARE is sent, and for a statement it has seen
    before, never checked: when an earlier statement of the block fails, the server skips the
    rest of the block, PREPARE included, and every later run of that statement on the
    connection would fail ("prepared statement "_pg3_N" does not exist"). In a transaction the
    ROLLBACK that follows makes psycopg forget them itself; in autocommit (the order path's
    own blocks) nothing did. Statements are prepared again after as many runs as at first."""
    if db.connection is not None:
        db.connection._prepared.clear()


def _when_answered(check: Callable[[], None]) -> None:
    """Run `check` on a statement's answer: now, or at the end of `pipelined`."""
    checks = _pipeline_checks.get()
    if checks is None:
        check()
    else:
        checks.append(check)


def row_update_if(
    instance: models.Model,
    fields: Iterable[str],
    *,
    unchanged: dict[str, Any],
    along: Sequence[models.Model] = (),
) -> bool:
    """`row_update`, only if the row's `unchanged` fields still hold those values (optimistic
    concurrency: typically the `updated_at` this process last wrote), in one statement without
    a lock or a transaction. The `along` rows are written exactly when the row is. Returns
    whether it was; when not, nothing was written and the instance is as given (its `auto_now`
    fields aside)."""
    names, db = tuple(fields), _db()
    sql, params = _update_begin(instance, names, along, db)
    meta = type(instance)._meta
    for name, value in unchanged.items():
        check: Field = meta.get_field(name)  # type: ignore[assignment]
        sql += f" AND {_qn(check.column)} IS NOT DISTINCT FROM %s"
        params.append(check.get_db_prep_value(value, db))
    clauses, along_params = _along(along, db, only_with="updated")
    statement = _with([f'"updated" AS ({sql} RETURNING 1)', *clauses]) + 'SELECT count(*) FROM "updated"'  # noqa: S608
    with db.cursor() as cursor:
        cursor.execute(statement, params + along_params)
        if cursor.fetchone()[0] != 1:
            return False
    _update_done(instance, names, along, db)
    return True


def rows_insert(instances: Sequence[models.Model]) -> None:
    """New rows in one statement (generated fields are not read back)."""
    if not instances:
        return
    db = _db()
    using = db.alias
    _before_insert(instances, using)
    clauses, params = _along(instances, db)
    with db.cursor() as cursor:
        cursor.execute(_with(clauses) + "SELECT 1", params)
    _after_insert(instances, using)
