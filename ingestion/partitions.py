"""The inbox partitioned by calendar month (UTC) on PostgreSQL, and its retention.

`ingestion_inboxevent` is `PARTITION BY RANGE (received_at)`: one partition a month
(`ingestion_inboxevent_pYYYYMM`) and a DEFAULT partition for any row outside them, so a row
is never refused for want of a partition. Retention drops the processed rows of the months
past it and keeps every dead letter, every row not yet processed and every row a payload
correction names. SQLite keeps a plain table; retention deletes there instead.
"""
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

TABLE = "ingestion_inboxevent"
DEFAULT_PARTITION = f"{TABLE}_default"
# Created ahead of the current month by the migration, the beat task and prune_inbox.
MONTHS_AHEAD = 3
# Retention drops only these; dead, discarded, unhandled and pending rows stay.
DROPPABLE_STATUS = "processed"
# Inbox ids that payload corrections name: kept whatever their status or age.
REFERENCED_IDS = """
SELECT original_id FROM exceptions_payloadcorrection
UNION SELECT corrected_id FROM exceptions_payloadcorrection
"""
DELETE_BATCH = 5000


def month_start(moment: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the month holding `moment`."""
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC)


def add_months(month: dt.datetime, n: int) -> dt.datetime:
    """The first instant of the month `n` months after (or before) `month`'s."""
    index = month.year * 12 + month.month - 1 + n
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(month: dt.datetime) -> str:
    return f"{TABLE}_p{month:%Y%m}"


def is_partitioned(conn: BaseDatabaseWrapper = connection) -> bool:
    """Whether the inbox is a partitioned table (PostgreSQL after the migration)."""
    if conn.vendor != "postgresql":
        return False
    with conn.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s "
                       "AND relnamespace = 'public'::regnamespace", [TABLE])
        row = cursor.fetchone()
    return bool(row and row[0] == "p")


def month_partitions(conn: BaseDatabaseWrapper = connection) -> list[tuple[str, dt.datetime]]:
    """[(name, first instant of its month)] of the monthly partitions, oldest first."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname", [TABLE])
        names = [name for (name,) in cursor.fetchall()]
    months = []
    for name in names:
        stamp = name.removeprefix(f"{TABLE}_p")
        if name != DEFAULT_PARTITION and stamp.isdigit() and len(stamp) == 6:
            months.append((name, dt.datetime(int(stamp[:4]), int(stamp[4:]), 1, tzinfo=dt.UTC)))
    return months


def create_month_partition(month: dt.datetime, conn: BaseDatabaseWrapper = connection) -> bool:
    """Create the partition of `month` unless it exists; rows of that month already in the
    DEFAULT partition move into it. Returns whether it was created."""
    name, upper = partition_name(month), add_months(month, 1)
    with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [name])
        if cursor.fetchone()[0] is not None:
            return False
        # Creating a partition checks the DEFAULT one holds none of its rows: move them out
        # first, and back in through the parent once the partition exists.
        cursor.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(f"CREATE TEMP TABLE inbox_parked (LIKE {TABLE}) ON COMMIT DROP")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE received_at >= %s "
            f"AND received_at < %s RETURNING *) INSERT INTO inbox_parked SELECT * FROM moved",
            [month, upper])
        cursor.execute(f"CREATE TABLE {name} PARTITION OF {TABLE} FOR VALUES FROM (%s) TO (%s)",
                       [month.isoformat(), upper.isoformat()])
        cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM inbox_parked")
        cursor.execute("DROP TABLE inbox_parked")
    return True


def ensure_partitions(months_ahead: int = MONTHS_AHEAD, *, now: dt.datetime | None = None,
                      conn: BaseDatabaseWrapper = connection) -> list[str]:
    """Create the partitions of the current month and the `months_ahead` after it that do
    not exist yet (idempotent); returns the names created. Nothing on a plain table."""
    if not is_partitioned(conn):
        return []
    first = month_start(now or timezone.now())
    return [partition_name(add_months(first, n)) for n in range(months_ahead + 1)
            if create_month_partition(add_months(first, n), conn)]


def retention_cutoff(months: int, now: dt.datetime | None = None) -> dt.datetime:
    """The first instant retention keeps: the start of the month `months` before this one."""
    return add_months(month_start(now or timezone.now()), -months)


@dataclasses.dataclass
class PruneResult:
    cutoff: dt.datetime
    partitions: list[str] = dataclasses.field(default_factory=list)
    dropped: int = 0
    kept: int = 0  # rows past the retention kept (moved back into the DEFAULT partition)


def prune(months: int, *, dry_run: bool = False, now: dt.datetime | None = None,
          progress: Callable[[str], Any] = lambda line: None) -> PruneResult:
    """Drop the processed inbox rows received before the retention cutoff, keeping dead
    letters, rows not yet processed and rows a correction names. Idempotency keys stay."""
    result = PruneResult(retention_cutoff(months, now))
    if is_partitioned():
        _prune_partitions(result, dry_run, progress)
    _prune_rows(result, dry_run, progress)
    return result


def _keep_condition() -> str:
    return f"(status <> '{DROPPABLE_STATUS}' OR id IN ({REFERENCED_IDS}))"


def _prune_partitions(result: PruneResult, dry_run: bool,
                      progress: Callable[[str], Any]) -> None:
    """Each monthly partition wholly before the cutoff: detach it, move the rows to keep back
    into the parent (they land in DEFAULT), drop it."""
    for name, month in month_partitions():
        if add_months(month, 1) > result.cutoff:
            continue
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*), count(*) FILTER (WHERE {_keep_condition()}) "
                           f"FROM {name}")
            total, keep = cursor.fetchone()
            if not dry_run:
                cursor.execute(f"ALTER TABLE {TABLE} DETACH PARTITION {name}")
                cursor.execute(f"INSERT INTO {TABLE} SELECT * FROM {name} "
                               f"WHERE {_keep_condition()}")
                # Deferred foreign-key checks still queued on its rows would block the drop.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f"DROP TABLE {name}")
        result.partitions.append(name)
        result.dropped += total - keep
        if dry_run:  # otherwise counted in the DEFAULT partition where they went
            result.kept += keep
        progress(f"{name}: {total - keep} dropped, {keep} kept")


def _prune_rows(result: PruneResult, dry_run: bool, progress: Callable[[str], Any]) -> None:
    """Delete, in batches, the droppable rows left before the cutoff: all of them on SQLite,
    those in the DEFAULT partition on PostgreSQL. Sync attempts keep their own columns."""
    table = DEFAULT_PARTITION if is_partitioned() else TABLE
    where = f"received_at < %s AND NOT {_keep_condition()}"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE {where}", [result.cutoff])
        droppable = cursor.fetchone()[0]
        cursor.execute(f"SELECT count(*) FROM {table} WHERE received_at < %s", [result.cutoff])
        result.kept += cursor.fetchone()[0] - droppable
        if dry_run:
            result.dropped += droppable
            return
        deleted = 0
        while True:
            with transaction.atomic():
                cursor.execute(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} "
                               f"WHERE {where} LIMIT {DELETE_BATCH})", [result.cutoff])
                count = cursor.rowcount
            if count <= 0:
                break
            deleted += count
            progress(f"{table}: {deleted} of {droppable} rows deleted")
        result.dropped += deleted
