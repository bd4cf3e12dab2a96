"""Exception-rule evaluation over a large state: every rule, set-based, timed.

Loads into PostgreSQL (database `opsview_bench_rules`, recreated): 5,000 clients (with
near-duplicates), 20,000 projects (a tenth without rate card), 2,000 people, 100,000 time
entries approved more than a day ago, 10,000 completed milestones, 1,000 blocked invoices and
50,000 sync attempts (2 % failed), then times `evaluate_time_rules` — the first run opens the
cases, the second is the steady state beat sees every five minutes.

    python bench/rules_bench.py
"""
import datetime as dt
import os
import random
import sys
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DB = "opsview_bench_rules"
os.environ.update(DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{DB}",
                  DJANGO_SETTINGS_MODULE="opsview.settings", LOG_LEVEL="ERROR",
                  SECRET_KEY="rules-bench")


def log(message):
    print(message, file=sys.stderr, flush=True)


def main():
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {DB}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from ingestion.models import InboxEvent, Source
    from opsview import models as state

    rng = random.Random(1)
    now = dt.datetime.now(dt.timezone.utc)
    log("loading clients, projects, people")
    state.Client.objects.bulk_create(
        [state.Client(client_id=f"C{i}", name=f"Client {i // 2 if i % 50 == 0 else i} Ltd",
                      tax_id=f"T{i}") for i in range(5000)], batch_size=5000)
    clients = dict(state.Client.objects.values_list("client_id", "pk"))
    state.Project.objects.bulk_create([state.Project(
        project_id=f"P{i}", client_id=clients[f"C{i % 5000}"], name=f"Project {i}",
        practice=f"Practice {i % 5}", legal_entity="US", currency="USD",
        billing_method="time_and_materials", status="active",
        rate_card_id="" if i % 10 == 0 else "rc") for i in range(20000)], batch_size=5000)
    projects = dict(state.Project.objects.values_list("project_id", "pk"))
    state.Person.objects.bulk_create([state.Person(
        person_id=f"U{i}", name=f"Person {i}", practice=f"Practice {i % 5}", cost_rate=60,
        bill_rate=150) for i in range(2000)], batch_size=2000)
    people = list(state.Person.objects.values_list("pk", flat=True))
    log("loading 100,000 time entries")
    approved = now - dt.timedelta(hours=30)
    for start in range(0, 100_000, 10_000):
        state.TimeEntry.objects.bulk_create([state.TimeEntry(
            time_entry_id=f"T{i}", project_id=projects[f"P{i % 20000}"],
            person_id=people[i % 2000], work_date=approved.date(), hours=8, billable=True,
            status="approved" if i % 4 == 0 else "posted", status_rank=2,
            approved_at=approved, posted_at=None if i % 4 == 0 else now)
            for i in range(start, start + 10_000)], batch_size=10_000)
    log("loading milestones, invoices, sync attempts")
    state.Milestone.objects.bulk_create([state.Milestone(
        milestone_id=f"M{i}", project_id=projects[f"P{i}"], name="Go-live", amount=5000,
        status="completed", status_rank=1,
        completed_on=(now - dt.timedelta(days=rng.choice([2, 20]))).date())
        for i in range(10000)], batch_size=10000)
    state.Invoice.objects.bulk_create([state.Invoice(
        invoice_id=f"I{i}", client_id=clients[f"C{i}"], amount=1000, currency="USD",
        status="blocked", status_rank=2, blocked_reason="missing_po") for i in range(1000)])
    source = Source.objects.create(slug="bench", name="bench")
    for start in range(0, 50_000, 10_000):
        rows = InboxEvent.objects.bulk_create([InboxEvent(
            source=source, event_id=f"s{i}", type="sync.succeeded", raw={}, time=now,
            status="processed") for i in range(start, start + 10_000)], batch_size=10_000)
        state.SyncAttempt.objects.bulk_create([state.SyncAttempt(
            inbox_event=row, flow=f"flow-{i % 4}", object_type="time_entry",
            object_id=f"T{start + i}", succeeded=rng.random() > 0.02, latency_ms=800,
            occurred_at=now - dt.timedelta(minutes=rng.randint(1, 600)))
            for i, row in enumerate(rows)], batch_size=10_000)

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    from exceptions import rules
    from exceptions.models import Case

    for label in ("first run (opens the cases)", "steady state", "steady state"):
        started = time.perf_counter()
        result = rules.evaluate_time_rules(now=now)
        elapsed = time.perf_counter() - started
        opened = sum(r.get("opened", 0) for r in result.values() if isinstance(r, dict))
        print(f"evaluate_time_rules, {label}: {elapsed:6.2f} s, opened {opened}, "
              f"open cases {Case.objects.filter(status='open').count()}")
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
