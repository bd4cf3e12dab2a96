"""KPI endpoints at a large firm's volume: load with set-based SQL, then time each endpoint.

Loads into PostgreSQL (database `opsview_bench_kpi`, recreated) 2,000 people, 600 clients,
4,000 projects, `--entries` time entries over a year (default 2.5 million), `--events` inbox
rows (default 15 million), 1 million sync attempts, invoices, milestones and expenses, then
calls each /api/v1/kpis/... endpoint `--runs` times through the Django test client and
prints p50 / p95 in milliseconds.

    python bench/kpi_bench.py                      # the full volume (several minutes to load)
    python bench/kpi_bench.py --entries 250000 --events 1500000
    python bench/kpi_bench.py --entries 2000 --events 5000 --syncs 1000 --runs 1  # CI
"""
import argparse
import os
import statistics
import sys
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DB = "opsview_bench_kpi"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"


def log(message):
    print(message, file=sys.stderr, flush=True)


LOAD = [
    ("people", """
     INSERT INTO opsview_person (person_id, name, practice, cost_rate, bill_rate,
        capacity_hours_per_week, active, is_placeholder, version_event_id, updated_at)
     SELECT 'U' || i, 'Person ' || i, 'Practice ' || (i % 6), 60 + i % 40, 120 + i % 120,
            CASE WHEN i % 10 = 0 THEN 32 ELSE 40 END, true, false, '', now()
     FROM generate_series(1, 2000) i"""),
    ("clients", """
     INSERT INTO opsview_client (client_id, name, tax_id, currency, marked_distinct,
        is_placeholder, version_event_id, updated_at)
     SELECT 'C' || i, 'Client ' || i, 'T' || i, '', false, false, '', now()
     FROM generate_series(1, 600) i"""),
    ("projects", """
     INSERT INTO opsview_project (project_id, client_id, name, practice, legal_entity, currency,
        billing_method, status, rate_card_id, po_required, po_number, is_placeholder,
        version_event_id, updated_at)
     SELECT 'P' || i, (SELECT id FROM opsview_client WHERE client_id = 'C' || (1 + i % 600)),
            'Project ' || i, 'Practice ' || (i % 6), (ARRAY['US','UK','DE'])[1 + i % 3],
            (ARRAY['USD','GBP','EUR'])[1 + i % 3],
            (ARRAY['time_and_materials','time_and_materials','fixed_fee','milestone'])[1 + i % 4],
            'active', CASE WHEN i % 12 = 0 THEN '' ELSE 'rc' END, i % 5 = 0,
            CASE WHEN i % 15 = 0 THEN '' ELSE 'PO' END, false, '', now()
     FROM generate_series(1, 4000) i"""),
    ("time entries", """
     INSERT INTO opsview_timeentry (time_entry_id, project_id, person_id, work_date, hours,
        billable, status, status_rank, status_event_id, field_versions, first_seen_at,
        updated_at, erp_document_id, invoice_id, approved_at, posted_at, invoiced_at)
     SELECT 'T' || i, p.id, u.id, d.work_date, 1 + (i % 8), i % 7 <> 0,
            s.status, 2, '', '{{}}', now(), now(), '', '',
            d.work_date + time '18:00' + (i % 50) * interval '1 hour',
            CASE WHEN s.status IN ('posted','invoiced')
                 THEN d.work_date + time '18:00' + (i % 50 + 3 + i % 40) * interval '1 hour' END,
            CASE WHEN s.status = 'invoiced' THEN d.work_date + 35 END
     FROM generate_series(1, {entries}) i
     JOIN opsview_project p ON p.project_id = 'P' || (1 + i % 4000)
     JOIN opsview_person u ON u.person_id = 'U' || (1 + i % 2000)
     CROSS JOIN LATERAL (SELECT current_date - (i % 365) AS work_date) d
     CROSS JOIN LATERAL (SELECT CASE
         WHEN i % 365 < 30 THEN (ARRAY['approved','posted','posted','submitted'])[1 + i % 4]
         WHEN i % 97 = 0 THEN 'rejected' WHEN i % 89 = 0 THEN 'reversed'
         WHEN i % 365 < 90 THEN (ARRAY['posted','invoiced','invoiced'])[1 + i % 3]
         ELSE 'invoiced' END AS status) s"""),
    ("milestones", """
     INSERT INTO opsview_milestone (milestone_id, project_id, name, amount, completed_on, status,
        status_rank, status_event_id, field_versions, first_seen_at, updated_at, invoice_id)
     SELECT 'M' || i, (SELECT id FROM opsview_project WHERE project_id = 'P' || (1 + i % 4000)),
            'Milestone', 5000 + i % 20 * 1000, current_date - (i % 365),
            CASE WHEN i % 4 = 0 THEN 'completed' ELSE 'invoiced' END, 1, '', '{{}}', now(),
            now(), ''
     FROM generate_series(1, 20000) i"""),
    ("invoices", """
     INSERT INTO opsview_invoice (invoice_id, client_id, project_id, amount, currency,
        issued_on, due_on, paid_on, blocked_reason, detail, status, status_rank,
        status_event_id, field_versions, first_seen_at, updated_at)
     SELECT 'I' || i, (SELECT id FROM opsview_client WHERE client_id = 'C' || (1 + i % 600)),
            (SELECT id FROM opsview_project WHERE project_id = 'P' || (1 + i % 4000)),
            1000 + i % 50 * 500, (ARRAY['USD','GBP','EUR'])[1 + i % 3],
            current_date - (i % 365), current_date - (i % 365) + 30, NULL,
            CASE WHEN i % 200 = 0 THEN 'missing_po' ELSE '' END, '',
            CASE WHEN i % 200 = 0 THEN 'blocked' WHEN i % 3 = 0 THEN 'issued' ELSE 'paid' END,
            3, '', '{{}}', now(), now()
     FROM generate_series(1, 48000) i"""),
    ("inbox events", """
     INSERT INTO ingestion_inboxevent (source_id, event_id, type, time, subject,
        correlation_id, raw, received_at, status, attempts, errors, processed_at)
     SELECT 1, 'e' || i,
            (ARRAY['time_entry.approved','time_entry.posted','time_entry.submitted',
                   'sync.succeeded','invoice.issued','project.upserted'])[1 + i % 6],
            now() - (i % 525600) * interval '1 minute', '', 'T' || (i / 6),
            '{{"specversion": "1.0"}}', now() - (i % 525600) * interval '1 minute',
            CASE WHEN i % 100000 = 0 THEN 'dead' ELSE 'processed' END, 1, '[]', now()
     FROM generate_series(1, {events}) i"""),
    ("sync attempts", """
     INSERT INTO opsview_syncattempt (inbox_event_id, flow, source_system, target_system,
        object_type, object_id, succeeded, latency_ms, attempt, error_code, error_message,
        retryable, occurred_at)
     SELECT e.id, (ARRAY['psa-to-erp','crm-to-psa','erp-to-crm'])[1 + e.id % 3], 'a', 'b',
            'time_entry', e.correlation_id, e.id % 50 <> 0, 200 + e.id % 3000, 1, '', '',
            NULL, e.time
     FROM ingestion_inboxevent e WHERE e.id <= {syncs}"""),
]

ENDPOINTS = [
    "/api/v1/kpis/wip",
    "/api/v1/kpis/wip?practice=Practice%201",
    "/api/v1/kpis/invoice-readiness",
    "/api/v1/kpis/posting-latency",
    "/api/v1/kpis/utilization",
    "/api/v1/kpis/integration-health?window=24h",
    "/api/v1/kpis/margin?group_by=practice",
    "/api/v1/kpis/margin?group_by=project",
    "/api/v1/kpis/receivables",
    "/api/v1/kpis/exceptions",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2_500_000)
    parser.add_argument("--events", type=int, default=15_000_000)
    parser.add_argument("--syncs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    parser.add_argument("--database", default=DB, help="the database to (re)create")
    args = parser.parse_args()
    database = args.database
    url = URL.rsplit("/", 1)[0] + "/" + database

    fresh = True
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                           [database]).fetchone()
        if exists and args.keep:
            fresh = False
        else:
            c.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {database}")
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="opsview.settings",
                      LOG_LEVEL="ERROR", ALLOWED_HOSTS="testserver", SECRET_KEY="kpi-bench",
                      SECURE_SSL_REDIRECT="0")  # the test client speaks plain HTTP
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if fresh:
        from ingestion.models import Source

        Source.objects.create(pk=1, slug="bench", name="bench")
        with psycopg.connect(url, autocommit=True) as conn:
            for name, sql in LOAD:
                started = time.perf_counter()
                conn.execute(sql.format(entries=args.entries, events=args.events,
                                        syncs=args.syncs))
                log(f"loaded {name} in {time.perf_counter() - started:.0f} s")
            conn.execute("VACUUM ANALYZE")
        from exceptions.rules import evaluate_time_rules

        started = time.perf_counter()
        evaluate_time_rules()
        log(f"rules evaluated in {time.perf_counter() - started:.1f} s")

    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    from ingestion.models import InboxEvent
    from opsview.models import SyncAttempt, TimeEntry

    print(f"{TimeEntry.objects.count():,} time entries, {InboxEvent.objects.count():,} inbox "
          f"events, {SyncAttempt.objects.count():,} sync attempts; {args.runs} runs each")
    print(f"{'endpoint':<50} {'p50 ms':>8} {'p95 ms':>8}")
    for url in ENDPOINTS:
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.content[:300])
        timings.sort()
        p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
        print(f"{url:<50} {statistics.median(timings):8.0f} {p95:8.0f}")


if __name__ == "__main__":
    main()
