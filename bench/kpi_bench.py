"""KPI endpoints at a large firm's volume: load with set-based SQL, then time each endpoint.

Loads into PostgreSQL (database `opsview_bench_kpi`, recreated) 2,000 people, 600 clients,
4,000 projects (half time and materials, a quarter fixed fee, a quarter milestone),
`--entries` time entries over a year (default 2.5 million), one expense per twelve entries,
20,000 milestones, one invoice per project and month (drafted, issued, paid, some blocked,
some voided) billing them, a year of fixed-fee revenue, the lifecycle history of all of it,
`--events` inbox rows (default 15 million) and 1 million sync attempts; derives every item's
WIP spans with the product's own code; then calls each /api/v1/kpis/... endpoint `--runs`
times through the Django test client — today's figures and, for WIP and receivables, six
months back — and prints p50 / p95 in milliseconds.

    python bench/kpi_bench.py                      # the full volume (several minutes to load)
    python bench/kpi_bench.py --entries 250000 --events 1500000
    python bench/kpi_bench.py --entries 2000 --events 5000 --syncs 1000 --runs 1  # CI
"""
from __future__ import annotations

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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Month m of the year loaded: m = 0 is this month, 11 eleven months ago. A project's work of
# month m is billed on invoice 'I<project>-<m>', drafted on the 3rd and issued on the 6th of
# the next month (paid 30 days later for two in three; one in 97 voided, one in 200 blocked).
MONTH_START = "(date_trunc('month', current_date) - (m) * interval '1 month')::date"
LOAD = [
    ("people", """
     INSERT INTO opsview_person (person_id, name, practice, cost_rate, bill_rate,
        capacity_hours_per_week, active, is_placeholder, version_event_id, updated_at)
     SELECT 'U' || i, 'Person ' || i, 'Practice ' || (i % 6), 60 + i % 40, 120 + i % 120,
            CASE WHEN i % 10 = 0 THEN 32 ELSE 40 END, true, false, '', now()
     FROM generate_series(1, 2000) i"""),
    ("clients", """
     INSERT INTO opsview_client (client_id, name, tax_id, currency, marked_distinct,
        merged_into, is_placeholder, version_event_id, updated_at)
     SELECT 'C' || i, 'Client ' || i, 'T' || i, '', false, '', false, '', now()
     FROM generate_series(1, 600) i"""),
    ("projects", """
     INSERT INTO opsview_project (project_id, client_id, name, practice, legal_entity, currency,
        billing_method, status, rate_card_id, po_required, po_number, contract_value,
        is_placeholder, version_event_id, updated_at)
     SELECT 'P' || i, (SELECT id FROM opsview_client WHERE client_id = 'C' || (1 + i % 600)),
            'Project ' || i, 'Practice ' || (i % 6), (ARRAY['US','UK','DE'])[1 + i % 3],
            (ARRAY['USD','GBP','EUR'])[1 + i % 3],
            (ARRAY['time_and_materials','time_and_materials','fixed_fee','milestone'])[1 + i % 4],
            'active', CASE WHEN i % 12 = 0 THEN '' ELSE 'rc' END, i % 5 = 0,
            CASE WHEN i % 15 = 0 THEN '' ELSE 'PO' END, 240000, false, '', now()
     FROM generate_series(1, 4000) i"""),
    ("invoices", """
     INSERT INTO opsview_invoice (invoice_id, client_id, project_id, amount, currency,
        issued_on, due_on, paid_on, blocked_reason, detail, status, status_rank,
        status_event_id, field_versions, first_seen_at, updated_at, is_placeholder,
        announced_at, first_drafted_at, issued_date, paid_date, voided_date)
     SELECT 'I' || p.project_id || '-' || m, p.client_id, p.id, 1000 + (p.id + m) % 50 * 500,
            p.currency, v.issued_on, v.issued_on + 30, v.paid_on,
            CASE WHEN v.state = 'blocked' THEN 'missing_po' ELSE '' END, '', v.state,
            CASE v.state WHEN 'drafted' THEN 1 WHEN 'blocked' THEN 2 WHEN 'issued' THEN 3
                         WHEN 'paid' THEN 4 ELSE 5 END, '', '{{}}', now(), now(), false,
            v.drafted, v.drafted, v.issued_on, v.paid_on,
            CASE WHEN v.state = 'voided' THEN v.issued_on + 1 END
     FROM opsview_project p CROSS JOIN generate_series(0, 11) m
     CROSS JOIN LATERAL (SELECT __MONTH_START__ + interval '1 month' AS next) n
     CROSS JOIN LATERAL (SELECT n.next + interval '2 days 9 hours' AS drafted,
                                (n.next + interval '5 days')::date AS issue_day) d
     CROSS JOIN LATERAL (SELECT d.drafted, CASE
            WHEN (p.id * 12 + m) % 200 = 0 THEN 'blocked'
            WHEN d.issue_day > current_date THEN 'drafted'
            WHEN (p.id * 12 + m) % 97 = 0 THEN 'voided'
            WHEN (p.id + m) % 3 <> 0 AND d.issue_day + 30 <= current_date THEN 'paid'
            ELSE 'issued' END AS state, d.issue_day) s
     CROSS JOIN LATERAL (SELECT s.drafted, s.state,
            CASE WHEN s.state IN ('issued', 'paid', 'voided') THEN s.issue_day END AS issued_on,
            CASE WHEN s.state = 'paid' THEN s.issue_day + 30 END AS paid_on) v
     WHERE d.drafted <= now()"""),
    ("time entries", """
     INSERT INTO opsview_timeentry (time_entry_id, project_id, person_id, work_date, hours,
        billable, status, status_rank, status_event_id, field_versions, first_seen_at,
        updated_at, erp_document_id, approved_at, posted_at, invoiced_at, reversed_at,
        rejected_at, invoice_id)
     SELECT 'T' || i, p.id, u.id, d.work_date, 1 + (i % 8), i % 7 <> 0,
            s.status, 2, '', '{{}}', now(), now(), '', a.approved_at,
            CASE WHEN s.status IN ('posted','invoiced','reversed')
                 THEN a.approved_at + (3 + i % 40) * interval '1 hour' END,
            CASE WHEN s.status = 'invoiced' THEN inv.first_drafted_at END,
            CASE WHEN s.status = 'reversed'
                 THEN a.approved_at + (3 + i % 40) * interval '1 hour' + interval '5 days' END,
            CASE WHEN s.status = 'rejected' THEN a.approved_at + interval '2 hours' END,
            CASE WHEN s.status = 'invoiced' THEN inv.id END
     FROM generate_series(1, {entries}) i
     JOIN opsview_project p ON p.project_id = 'P' || (1 + i % 4000)
     JOIN opsview_person u ON u.person_id = 'U' || (1 + i % 2000)
     CROSS JOIN LATERAL (SELECT current_date - (i % 365) AS work_date) d
     CROSS JOIN LATERAL (SELECT d.work_date + time '18:00' + (i % 50) * interval '1 hour'
                         AS approved_at) a
     LEFT JOIN opsview_invoice inv ON inv.invoice_id = 'I' || p.project_id || '-'
         || ((extract(year FROM age(date_trunc('month', current_date),
                                    date_trunc('month', d.work_date))) * 12
              + extract(month FROM age(date_trunc('month', current_date),
                                       date_trunc('month', d.work_date))))::int)
     CROSS JOIN LATERAL (SELECT CASE
         WHEN i % 97 = 0 THEN 'rejected' WHEN i % 89 = 0 THEN 'reversed'
         WHEN i % 365 < 30 THEN (ARRAY['approved','posted','posted','submitted'])[1 + i % 4]
         WHEN p.billing_method <> 'time_and_materials' OR inv.id IS NULL THEN 'posted'
         WHEN i % 365 < 90 THEN (ARRAY['posted','invoiced','invoiced'])[1 + i % 3]
         ELSE 'invoiced' END AS status) s"""),
    ("expenses", """
     INSERT INTO opsview_expense (expense_id, project_id, person_id, incurred_on, amount,
        currency, billable, status, status_rank, status_event_id, field_versions,
        first_seen_at, updated_at, approved_at, posted_at, invoiced_at, invoice_id)
     SELECT 'E' || t.id, t.project_id, t.person_id, t.work_date, 40 + t.id % 400,
            p.currency, t.id % 3 <> 0, t.status, 1, '', '{{}}', now(), now(), t.approved_at,
            t.posted_at, t.invoiced_at, t.invoice_id
     FROM opsview_timeentry t JOIN opsview_project p ON p.id = t.project_id
     WHERE t.id % 12 = 0 AND t.status IN ('approved', 'posted', 'invoiced')"""),
    ("milestones", """
     INSERT INTO opsview_milestone (milestone_id, project_id, name, amount, completed_on, status,
        status_rank, status_event_id, field_versions, first_seen_at, updated_at, completed_at,
        invoiced_at, invoice_id)
     SELECT 'M' || i, p.id, 'Milestone', 5000 + i % 20 * 1000, current_date - (i % 365),
            CASE WHEN i % 4 = 0 OR inv.id IS NULL THEN 'completed' ELSE 'invoiced' END, 1, '',
            '{{}}', now(), now(), current_date - (i % 365) + time '17:00',
            CASE WHEN i % 4 <> 0 THEN inv.first_drafted_at END,
            CASE WHEN i % 4 <> 0 THEN inv.id END
     FROM generate_series(1, 20000) i
     JOIN opsview_project p ON p.project_id = 'P' || (1 + i % 4000)
     LEFT JOIN opsview_invoice inv ON inv.invoice_id = 'I' || p.project_id || '-'
         || ((i % 365) / 31)"""),
    ("revenue", """
     INSERT INTO opsview_revenuerecognition (project_id, period, amount, currency,
        is_placeholder, version_event_id, updated_at)
     SELECT p.id, to_char(__MONTH_START__, 'YYYY-MM'), 20000, p.currency, false,
            '', now()
     FROM opsview_project p CROSS JOIN generate_series(0, 11) m
     WHERE p.billing_method = 'fixed_fee'"""),
    ("lifecycle history", """
     INSERT INTO opsview_stageevent (kind, record_id, stage, rank, at, event_id,
        inbox_event_id, invoice_ref)
     SELECT kind, record_id, stage, rank, at, kind || record_id || stage,
            -(row_number() OVER ()), invoice_ref FROM (
       SELECT 'time_entry' AS kind, t.id AS record_id, 'approved' AS stage, 2 AS rank,
              t.approved_at AS at, '' AS invoice_ref
         FROM opsview_timeentry t WHERE t.approved_at IS NOT NULL
       UNION ALL SELECT 'time_entry', t.id, 'rejected', 2, t.rejected_at, ''
         FROM opsview_timeentry t WHERE t.rejected_at IS NOT NULL
       UNION ALL SELECT 'time_entry', t.id, 'posted', 3, t.posted_at, ''
         FROM opsview_timeentry t WHERE t.posted_at IS NOT NULL
       UNION ALL SELECT 'time_entry', t.id, 'invoiced', 4, t.invoiced_at, i.invoice_id
         FROM opsview_timeentry t JOIN opsview_invoice i ON i.id = t.invoice_id
       UNION ALL SELECT 'time_entry', t.id, 'reversed', 5, t.reversed_at, ''
         FROM opsview_timeentry t WHERE t.reversed_at IS NOT NULL
       UNION ALL SELECT 'expense', e.id, 'approved', 1, e.approved_at, ''
         FROM opsview_expense e
       UNION ALL SELECT 'expense', e.id, 'posted', 2, e.posted_at, ''
         FROM opsview_expense e WHERE e.posted_at IS NOT NULL
       UNION ALL SELECT 'expense', e.id, 'invoiced', 3, e.invoiced_at, i.invoice_id
         FROM opsview_expense e JOIN opsview_invoice i ON i.id = e.invoice_id
       UNION ALL SELECT 'milestone', m.id, 'completed', 1, m.completed_at, ''
         FROM opsview_milestone m
       UNION ALL SELECT 'milestone', m.id, 'invoiced', 2, m.invoiced_at, i.invoice_id
         FROM opsview_milestone m JOIN opsview_invoice i ON i.id = m.invoice_id
       UNION ALL SELECT 'invoice', i.id, 'drafted', 1, i.first_drafted_at, ''
         FROM opsview_invoice i
       UNION ALL SELECT 'invoice', i.id, 'blocked', 2, i.first_drafted_at + interval '1 hour', ''
         FROM opsview_invoice i WHERE i.status = 'blocked'
       UNION ALL SELECT 'invoice', i.id, 'issued', 3, i.issued_date + time '09:00', ''
         FROM opsview_invoice i WHERE i.issued_date IS NOT NULL
       UNION ALL SELECT 'invoice', i.id, 'paid', 4, i.paid_date + time '09:00', ''
         FROM opsview_invoice i WHERE i.paid_date IS NOT NULL
       UNION ALL SELECT 'invoice', i.id, 'voided', 5, i.voided_date + time '09:00', ''
         FROM opsview_invoice i WHERE i.voided_date IS NOT NULL) h"""),
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
# Six months back: the as-of figures rebuilt from the history, through the same endpoints.
BACK = "{back}"
ENDPOINTS = [
    "/api/v1/kpis/wip",
    f"/api/v1/kpis/wip?as_of={BACK}",
    "/api/v1/kpis/wip?practice=Practice%201",
    f"/api/v1/kpis/wip?practice=Practice%201&as_of={BACK}",
    "/api/v1/kpis/invoice-readiness",
    "/api/v1/kpis/invoice-readiness?period={last_month}",
    "/api/v1/kpis/posting-latency",
    "/api/v1/kpis/utilization",
    "/api/v1/kpis/integration-health?window=24h",
    "/api/v1/kpis/margin?group_by=practice",
    "/api/v1/kpis/margin?group_by=project",
    "/api/v1/kpis/receivables",
    f"/api/v1/kpis/receivables?as_of={BACK}",
    "/api/v1/kpis/exceptions",
    # Month end: last month (the default period), the last 90 days, 12 monthly points.
    "/api/v1/kpis/reconciliation",
    "/api/v1/kpis/period-close",
    "/api/v1/kpis/period-close?legal_entity=UK&currency=EUR",
    "/api/v1/kpis/billing",
    "/api/v1/kpis/wip?currency=EUR",
    "/api/v1/kpis/trends?metric=wip&interval=month",
    "/api/v1/kpis/trends?metric=open_ar&interval=month",
]


def derive_spans(chunk: int = 20000) -> None:
    """Each item's WIP spans, computed by the product's own code, chunk by chunk, in the
    order of the items' last events — the order a live worker writes them in, so the spans
    lie on disk as they would in service (a year of rows in one shuffle would not)."""
    from django.db import transaction
    from django.db.models.functions import Coalesce

    from opsview import derived

    for kind, (model, _) in derived.ITEMS.items():
        stamps = [f"{stage}_at" for stage in ("invoiced", "posted", "completed", "approved")
                  if hasattr(model, f"{stage}_at")]
        pks = list(model.objects.order_by(Coalesce(*stamps), "pk")
                   .values_list("pk", flat=True))
        started = time.perf_counter()
        for start in range(0, len(pks), chunk):
            with transaction.atomic():  # as in the worker: the items are locked meanwhile
                derived.refresh_items(kind, pks[start:start + chunk])
            done = min(start + chunk, len(pks))
            rate = done / max(time.perf_counter() - started, 1e-6)
            if done == len(pks) or done % 200_000 < chunk:
                sys.stderr.write(f"  {kind} spans: {done:,}/{len(pks):,} ({rate:,.0f}/s)\n")
            sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=2_500_000)
    parser.add_argument("--events", type=int, default=15_000_000)
    parser.add_argument("--syncs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the database")
    parser.add_argument("--database", default=DB, help="the database to (re)create")
    parser.add_argument("--rederive", action="store_true",
                        help="with --keep: derive the WIP spans again before timing")
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
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings",
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
                conn.execute(sql.replace("__MONTH_START__", MONTH_START).format(
                    entries=args.entries, events=args.events, syncs=args.syncs))
                log(f"loaded {name} in {time.perf_counter() - started:.0f} s")
            conn.execute("VACUUM ANALYZE")
        started = time.perf_counter()
        derive_spans()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        log(f"derived the WIP spans in {time.perf_counter() - started:.0f} s")
        from exceptions.rules import evaluate_time_rules

        started = time.perf_counter()
        evaluate_time_rules()
        log(f"rules evaluated in {time.perf_counter() - started:.1f} s")
    elif args.rederive:
        from opsview.models import WipCell, WipDayChange, WipSpan

        started = time.perf_counter()
        WipDayChange.objects.all().delete()
        WipCell.objects.all().delete()
        WipSpan.objects.all().delete()
        derive_spans()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE opsview_wipspan")
            conn.execute("VACUUM ANALYZE opsview_wipcell")
        log(f"derived the WIP spans again in {time.perf_counter() - started:.0f} s")

    from django.contrib.auth.models import User
    from django.test import Client

    user, _ = User.objects.get_or_create(username="bench")
    client = Client()
    client.force_login(user)
    from ingestion.models import InboxEvent
    from opsview.models import StageEvent, SyncAttempt, TimeEntry, WipCell, WipSpan

    print(f"{TimeEntry.objects.count():,} time entries, {StageEvent.objects.count():,} "
          f"lifecycle events, {WipSpan.objects.count():,} WIP spans in "
          f"{WipCell.objects.count():,} cells, "
          f"{InboxEvent.objects.count():,} inbox events, {SyncAttempt.objects.count():,} sync "
          f"attempts; {args.runs} runs each")
    print(f"{'endpoint':<62} {'p50 ms':>8} {'p95 ms':>8}")
    import datetime as dt

    today = dt.date.today()
    params = {"back": (today - dt.timedelta(days=182)).isoformat(),
              "last_month": (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")}
    for url in [endpoint.format(**params) for endpoint in ENDPOINTS]:
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            response = client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.content[:300])
        timings.sort()
        p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
        print(f"{url:<62} {statistics.median(timings):8.0f} {p95:8.0f}")


if __name__ == "__main__":
    main()
