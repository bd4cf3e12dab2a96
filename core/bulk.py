"""Set-based writes the ORM cannot say in one statement, for PostgreSQL and SQLite.

`update_rows` replaces `QuerySet.bulk_update`, whose CASE WHEN per field and row made it the
slowest step of processing: one `WITH v(...) AS (VALUES ...) UPDATE ... FROM v` instead.
`insert_returning` is one INSERT .. ON CONFLICT DO NOTHING RETURNING for the inbox.
"""
import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, cast

from django.db import connection
from django.db.models import Field, JSONField, Model

MAX_PARAMS = 30_000  # below SQLite's 32,766 and PostgreSQL's 65,535 bind parameters


def _placeholder(field: Field) -> str:
    if connection.vendor == "postgresql":
        return f"%s::{field.cast_db_type(connection)}"
    return "%s"


def _chunks(rows: Sequence[Any], per_row: int) -> Iterator[Sequence[Any]]:
    size = max(1, MAX_PARAMS // per_row)
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def update_rows(model: type[Model], rows: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write `field_names` of model instances `rows` (which have pks) back, set-based."""
    if not rows or not field_names:
        return
    if connection.vendor == "postgresql":
        return _update_rows_unnest(model, rows, field_names)
    meta = model._meta
    fields = [cast(Field, meta.get_field(name)) for name in field_names]
    pk = meta.pk
    qn: Callable[[Any], str] = connection.ops.quote_name  # a concrete field has a column
    columns = [pk.column] + [f.column for f in fields]
    row_sql = "(" + ", ".join([_placeholder(pk)] + [_placeholder(f) for f in fields]) + ")"
    assignments = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields)
    for chunk in _chunks(rows, len(columns)):
        params = []
        for row in chunk:
            params.append(row.pk)
            params.extend(f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields)
        sql = (
            f"WITH v ({', '.join(qn(c) for c in columns)}) AS "
            f"(VALUES {', '.join([row_sql] * len(chunk))}) "
            f"UPDATE {qn(meta.db_table)} SET {assignments} FROM v "
            f"WHERE {qn(meta.db_table)}.{qn(pk.column)} = v.{qn(pk.column)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


# PostgreSQL: the Python types psycopg adapts as they are, by a field's internal type; a
# value of exactly such a type is what get_db_prep_save would return for it, so it is sent
# as it is (that call, per value and field, was most of a bulk write's own time).
_SAVED_AS_IS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("AutoField", "BigAutoField", "SmallAutoField", "IntegerField",
                     "BigIntegerField", "SmallIntegerField", "PositiveIntegerField",
                     "PositiveBigIntegerField", "PositiveSmallIntegerField"), (int,)),
    **dict.fromkeys(("CharField", "TextField", "SlugField"), (str,)),
    "BooleanField": (bool,),
    "DecimalField": (Decimal,),
    "DateField": (dt.date,),
    "DateTimeField": (dt.datetime,),
}


def _saved_values(field: Field, rows: Sequence[Model]) -> list[Any]:
    """get_db_prep_save of `field` for each row, on PostgreSQL, skipping the call where it
    returns the value unchanged (None; a plain value of the field's type; an aware
    datetime for a DateTimeField, a naive one is made aware by the call)."""
    kind = field.get_internal_type()
    if kind == "ForeignKey":
        kind = cast(Field, field.target_field).get_internal_type()  # type: ignore[attr-defined]
    same = _SAVED_AS_IS.get(kind, ())
    prep, name = field.get_db_prep_save, field.attname
    values = [getattr(row, name) for row in rows]
    if not same:
        return [prep(value, connection) for value in values]
    if kind == "DateTimeField":
        return [value if value is None or (type(value) is dt.datetime
                                           and value.tzinfo is not None)
                else prep(value, connection) for value in values]
    return [value if value is None or type(value) in same else prep(value, connection)
            for value in values]


def _unnest_columns(fields: Sequence[Field], rows: Sequence[Model],
                    ) -> tuple[list[list[Any]], list[str], list[bool]]:
    """(arrays, casts, is_json) to bind `fields` of `rows` as one PostgreSQL array each."""
    arrays, casts, is_json = [], [], []
    for field in fields:
        if field.get_internal_type() == "JSONField":
            # Sent as text and parsed by the server, which keeps the array simple to bind.
            encoder = cast(JSONField, field).encoder
            arrays.append([None if getattr(row, field.attname) is None
                           else json.dumps(getattr(row, field.attname), cls=encoder)
                           for row in rows])
            casts.append("%s::text[]")
            is_json.append(True)
        else:
            arrays.append(_saved_values(field, rows))
            casts.append(f"%s::{field.cast_db_type(connection)}[]")
            is_json.append(False)
    return arrays, casts, is_json


def _update_rows_unnest(model: type[Model], rows: Sequence[Model],
                        field_names: Sequence[str]) -> None:
    """PostgreSQL: one array per column, so the statement stays short whatever the row count."""
    meta = model._meta
    fields = [meta.pk] + [cast(Field, meta.get_field(name)) for name in field_names]
    qn: Callable[[Any], str] = connection.ops.quote_name  # a concrete field has a column
    arrays, casts, is_json = _unnest_columns(fields, rows)
    assignments = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" + ("::jsonb" if j else "")
                            for f, j in zip(fields[1:], is_json[1:], strict=True))
    sql = (f"UPDATE {qn(meta.db_table)} SET {assignments} "
           f"FROM unnest({', '.join(casts)}) AS v({', '.join(qn(f.column) for f in fields)}) "
           f"WHERE {qn(meta.db_table)}.{qn(meta.pk.column)} = v.{qn(meta.pk.column)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)


def insert_new(model: type[Model], instances: Sequence[Model], key_field: str,
               ) -> dict[Any, Model]:
    """Insert unsaved `instances`, skipping keys already stored; returns {key: instance} of
    those inserted, with their pks set."""
    if not instances:
        return {}
    by_key = {getattr(instance, key_field): instance for instance in instances}
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    for instance in instances:
        for field in fields:
            setattr(instance, field.attname, field.pre_save(instance, add=True))
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(instances, ignore_conflicts=True)
        return {}  # SQLite cannot say which were inserted: the caller selects them
    qn: Callable[[Any], str] = connection.ops.quote_name  # a concrete field has a column
    arrays, casts, is_json = _unnest_columns(fields, instances)
    key = cast(Field, meta.get_field(key_field)).column
    values = ", ".join(f"v.{qn(f.column)}" + ("::jsonb" if j else "")
                       for f, j in zip(fields, is_json, strict=True))
    sql = (f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
           f"SELECT {values} "
           f"FROM unnest({', '.join(casts)}) AS v({', '.join(qn(f.column) for f in fields)}) "
           f"ON CONFLICT ({qn(key)}) DO NOTHING RETURNING {qn(key)}, {qn(meta.pk.column)}")
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)
        inserted = cursor.fetchall()
    result = {}
    for key_value, pk in inserted:
        instance = by_key[key_value]
        instance.pk = pk
        instance._state.adding = False
        result[key_value] = instance
    return result


def insert_rows(model: type[Model], instances: Sequence[Model],
                ignore_conflicts: bool = False) -> None:
    """Insert unsaved `instances` in one statement (PostgreSQL: one array per column), pks
    not read back; `ignore_conflicts` skips rows any unique constraint refuses. Elsewhere,
    bulk_create."""
    if not instances:
        return
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(instances, ignore_conflicts=ignore_conflicts,
                                           batch_size=500)
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for instance in instances:
                setattr(instance, field.attname, field.pre_save(instance, add=True))
    qn: Callable[[Any], str] = connection.ops.quote_name  # a concrete field has a column
    arrays, casts, is_json = _unnest_columns(fields, instances)
    columns = ", ".join(qn(f.column) for f in fields)
    values = ", ".join(f"v.{qn(f.column)}" + ("::jsonb" if j else "")
                       for f, j in zip(fields, is_json, strict=True))
    sql = (f"INSERT INTO {qn(meta.db_table)} ({columns}) SELECT {values} "
           f"FROM unnest({', '.join(casts)}) AS v({columns})"
           + (" ON CONFLICT DO NOTHING" if ignore_conflicts else ""))
    with connection.cursor() as cursor:
        cursor.execute(sql, arrays)


def insert_returning(model: type[Model], rows: Sequence[dict[str, Any]], columns: Sequence[str],
                     conflict: Sequence[str] | None,
                     returning: Sequence[str]) -> list[tuple[Any, ...]]:
    """INSERT dict `rows` in one statement, skipping conflicts on `conflict` (None: no
    conflict clause); returns tuples of the `returning` columns of the rows inserted."""
    if not rows:
        return []
    fields = {f.attname: f for f in model._meta.concrete_fields}
    qn: Callable[[Any], str] = connection.ops.quote_name  # a concrete field has a column
    row_sql = "(" + ", ".join(_placeholder(fields[c]) for c in columns) + ")"
    result = []
    for chunk in _chunks(rows, len(columns)):
        params = [fields[c].get_db_prep_save(row[c], connection) for row in chunk
                  for c in columns]
        sql = (
            f"INSERT INTO {qn(model._meta.db_table)} "
            f"({', '.join(qn(fields[c].column) for c in columns)}) "
            f"VALUES {', '.join([row_sql] * len(chunk))} "
            + (f"ON CONFLICT ({', '.join(qn(fields[c].column) for c in conflict)}) DO NOTHING "
               if conflict else "")
            + f"RETURNING {', '.join(qn(fields[c].column) for c in returning)}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            result.extend(cursor.fetchall())
    return result
