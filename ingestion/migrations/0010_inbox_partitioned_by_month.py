"""PostgreSQL: the inbox becomes a table partitioned by month of received_at (UTC), with a
DEFAULT partition; every row and id is kept and ids go on from the same sequence value.
SQLite keeps its plain table. Django's model state is unchanged (id stays the model's
primary key; the database's is (id, received_at))."""
import datetime as dt

from django.db import migrations

from ingestion import partitions

TABLE = partitions.TABLE
OLD = f"{TABLE}_unpartitioned"
# Months before this many back from now get no partition of their own: DEFAULT holds them.
MAX_MONTHS_BACK = 120


def _rebuild(conn, *, partitioned: bool) -> None:
    """Copy the inbox into a new table, partitioned by month or plain, keeping every row,
    id, index, check, foreign key and the id sequence's position."""
    with conn.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"SELECT count(*), min(received_at), max(id) FROM {TABLE}")
        count, oldest, max_id = cursor.fetchone()
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [TABLE])
        sequence = cursor.fetchone()[0]
        cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
        last_value, is_called = cursor.fetchone()
        next_id = max(last_value + 1 if is_called else last_value, (max_id or 0) + 1)
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s "
            "AND indexname <> %s", [TABLE, f"{TABLE}_pkey"])
        indexes = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype = 'f'", [TABLE])
        foreign_keys = cursor.fetchall()

        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        cursor.execute("SELECT attidentity FROM pg_attribute WHERE attrelid = %s::regclass "
                       "AND attname = 'id'", [OLD])
        if not cursor.fetchone()[0]:  # a sequence default (a table this migration made)
            cursor.execute(f"ALTER TABLE {OLD} ALTER COLUMN id DROP DEFAULT")
        # LIKE copies columns, defaults and checks, not an identity: id gets a sequence.
        cursor.execute(f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING "
                       "CONSTRAINTS)" + (" PARTITION BY RANGE (received_at)" if partitioned
                                         else ""))
        if partitioned:
            cursor.execute(f"CREATE TABLE {partitions.DEFAULT_PARTITION} PARTITION OF "
                           f"{TABLE} DEFAULT")
            this_month = partitions.month_start(dt.datetime.now(dt.UTC))
            month = max(partitions.month_start(oldest or this_month),
                        partitions.add_months(this_month, -MAX_MONTHS_BACK))
            while month <= partitions.add_months(this_month, partitions.MONTHS_AHEAD):
                partitions.create_month_partition(month, conn)
                month = partitions.add_months(month, 1)
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
        if cursor.rowcount != count:
            raise RuntimeError(f"copied {cursor.rowcount} inbox rows of {count}")
        cursor.execute(f"DROP TABLE {OLD}")  # its sequence (and partitions) go with it
        cursor.execute(f"CREATE SEQUENCE {TABLE}_id_seq START WITH {int(next_id)} "
                       f"OWNED BY {TABLE}.id")
        cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT "
                       f"nextval('{TABLE}_id_seq')")
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY "
                       + ("(id, received_at)" if partitioned else "(id)"))
        for indexdef in indexes:
            cursor.execute(indexdef.replace(f" ON ONLY public.{OLD} ", f" ON public.{TABLE} ")
                           .replace(f" ON public.{OLD} ", f" ON public.{TABLE} "))
        for name, definition in foreign_keys:
            cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        if cursor.fetchone()[0] != count:
            raise RuntimeError("the rebuilt inbox does not hold every row")


def partition(apps, schema_editor):
    conn = schema_editor.connection
    if conn.vendor == "postgresql" and not partitions.is_partitioned(conn):
        _rebuild(conn, partitioned=True)


def unpartition(apps, schema_editor):
    conn = schema_editor.connection
    if conn.vendor == "postgresql" and partitions.is_partitioned(conn):
        _rebuild(conn, partitioned=False)


class Migration(migrations.Migration):

    dependencies = [
        ("ingestion", "0009_inbox_key_table"),
        # Nothing may hold a database foreign key to the inbox any more.
        ("opsview", "0012_sync_attempt_without_inbox_constraint"),
        ("exceptions", "0010_corrections_without_inbox_constraints"),
    ]

    operations = [
        migrations.RunPython(partition, unpartition, elidable=False),
    ]
