"""The inbox partition migration and retention at a large firm's volume.

Creates the database `part_big` (`--database`), migrates it to the migration before the
partitioning, fills the inbox with `--rows` events (default 5 million) spread over 36 months
with ~600-byte raw JSON and some dead letters, then runs the partition migration with timing
and checks the row counts per status are equal before and after (exit 1 otherwise), prints
the rows per partition, and runs `prune_inbox` with a 12-month retention.

Usage (PostgreSQL running):
    DEBUG=1 python bench/partition_migration.py --rows 5000000
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG = "postgresql://postgres@127.0.0.1:5432/"
BEFORE = "0009_inbox_key_table"
AFTER = "0010_inbox_partitioned_by_month"
MONTHS = 36
CHUNK = 250_000

# ~600 bytes of JSON a row, varied by the row number; one in 50 rows is a dead letter, one
# in 200 still pending, the rest processed.
FILL = """
INSERT INTO ingestion_inboxevent (source_id, event_source, event_id, type, time, subject,
    correlation_id, raw, content_digest, received_at, status, attempts, errors, processed_at)
SELECT %(source)s, 'urn:relay:psa', 'evt-' || g, 'time_entry.approved', t, 'te-' || g,
    'corr-' || (g / 3),
    jsonb_build_object('specversion', '1.0', 'id', 'evt-' || g, 'source', 'urn:relay:psa',
        'type', 'time_entry.approved', 'time', t, 'subject', 'te-' || g,
        'correlationid', 'corr-' || (g / 3),
        'data', jsonb_build_object('time_entry_id', 'te-' || g, 'project_id',
            'p-' || (g %% 4000), 'person_id', 'u-' || (g %% 20000), 'work_date', t::date,
            'hours', '7.50', 'billable', (g %% 4 <> 0), 'rate', '185.00', 'currency', 'USD',
            'description', 'Client workshop preparation and follow-up notes for engagement '
                || (g %% 997) || ', reviewed with the engagement lead',
            'approver_id', 'u-' || (g %% 311), 'cost_center', 'cc-' || (g %% 57))),
    md5(g::text) || md5((g + 1)::text), t,
    CASE WHEN g %% 50 = 0 THEN 'dead' WHEN g %% 200 = 1 THEN 'pending' ELSE 'processed' END,
    CASE WHEN g %% 50 = 0 THEN 1 ELSE 0 END,
    CASE WHEN g %% 50 = 0 THEN '["data.hours: not a number"]'::jsonb ELSE '[]'::jsonb END,
    CASE WHEN g %% 50 = 0 OR g %% 200 = 1 THEN NULL ELSE t END
FROM (SELECT g, now() - make_interval(secs => (%(total)s::bigint - g) * %(spacing)s::float8) AS t
      FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS g) AS s
"""


def log(message: str) -> None:
    print(message, flush=True)


def manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout


def counts(conn: psycopg.Connection, query: str) -> dict[str, int]:
    return {str(key): count for key, count in conn.execute(query).fetchall()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--database", default="part_big")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": PG + args.database}
    with psycopg.connect(PG + "postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {args.database}")
    manage(env, "migrate", "-v0")
    manage(env, "migrate", "ingestion", BEFORE, "-v0")
    failed = False
    with psycopg.connect(PG + args.database, autocommit=True) as conn:
        source = conn.execute(
            "INSERT INTO ingestion_source (slug, name, secret, previous_secret, enabled, "
            "rate_limit_per_minute, stale_after_minutes, created_at, callback_url, "
            "callback_secret) VALUES ('psa', 'PSA', 'x', '', true, 0, 60, now(), '', '') "
            "RETURNING id").fetchone()[0]
        spacing = MONTHS * 30.44 * 86400 / args.rows
        started = time.monotonic()
        for start in range(1, args.rows + 1, CHUNK):
            stop = min(start + CHUNK - 1, args.rows)
            conn.execute(FILL, {"source": source, "total": args.rows, "spacing": spacing,
                                "start": start, "stop": stop})
            conn.execute("INSERT INTO ingestion_inboxkey (source_id, event_source, event_id) "
                          "SELECT %s, 'urn:relay:psa', 'evt-' || g "
                          "FROM generate_series(%s::bigint, %s::bigint) g", [source, start, stop])
            log(f"filled {stop:,} of {args.rows:,} rows ({time.monotonic() - started:.0f}s)")
        conn.execute("VACUUM ANALYZE ingestion_inboxevent")
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size("
                            "'ingestion_inboxevent'))").fetchone()[0]
        log(f"inbox: {size} with its indexes")
        status_sql = "SELECT status, count(*) FROM ingestion_inboxevent GROUP BY 1 ORDER BY 1"
        before = counts(conn, status_sql)
        max_id = conn.execute("SELECT max(id) FROM ingestion_inboxevent").fetchone()[0]
        log(f"before: {before} (total {sum(before.values()):,}, max id {max_id:,})")

    started = time.monotonic()
    manage(env, "migrate", "ingestion", AFTER, "-v0")
    log(f"partition migration: {time.monotonic() - started:.1f}s")

    with psycopg.connect(PG + args.database, autocommit=True) as conn:
        after = counts(conn, status_sql)
        log(f"after:  {after} (total {sum(after.values()):,})")
        per_partition = counts(conn, "SELECT tableoid::regclass::text, count(*) FROM "
                                     "ingestion_inboxevent GROUP BY 1 ORDER BY 1")
        log(f"{len(per_partition)} partitions: " + ", ".join(
            f"{name.removeprefix('ingestion_inboxevent_')}={count:,}"
            for name, count in per_partition.items()))
        next_id = conn.execute("SELECT nextval('ingestion_inboxevent_id_seq')").fetchone()[0]
        if after != before or sum(per_partition.values()) != sum(before.values()):
            log("MISMATCH: the migration changed the row counts")
            failed = True
        if next_id <= max_id:
            log(f"MISMATCH: the next id {next_id} does not follow {max_id}")
            failed = True
        else:
            log(f"next id {next_id:,} follows max id {max_id:,}")

    started = time.monotonic()
    out = manage(env, "prune_inbox", "--months", "12")
    log(out.strip().splitlines()[-1])
    log(f"prune_inbox --months 12: {time.monotonic() - started:.1f}s")
    with psycopg.connect(PG + args.database, autocommit=True) as conn:
        log(f"left: {counts(conn, status_sql)}")
    if not args.keep:
        with psycopg.connect(PG + "postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
