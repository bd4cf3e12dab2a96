"""Exception-rule evaluation over a large state: every rule, set-based, timed.

Loads into PostgreSQL (database `opsview_bench_rules`, recreated): 5,000 clients (with
near-duplicates), 20,000 projects (a tenth without rate card), 2,000 people, 100,000 time
entries approved more than a day ago, 10,000 completed milestones, 1,000 blocked invoices and
50,000 sync attempts (2 % failed), then times `evaluate_time_rules` — the first run opens the
cases, the second is the steady state beat sees every five minutes.

    python bench/rules_bench.py
    python bench/rules_bench.py --scale 0.01   # every count a hundredth (CI keeps it running)
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DB = "opsview_bench_rules"
SERVER = "postgresql://postgres@127.0.0.1:5432/"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every count by this (1: the sizes above)")
    parser.add_argument("--database", default=DB, help="the database to create and drop")
    args = parser.parse_args()

    def n(count: int) -> int:
        return max(10, round(count * args.scale))

    clients, projects, people = n(5000), n(20_000), n(2000)
    entries, milestones, invoices, syncs = n(100_000), n(10_000), n(1000), n(50_000)
    with psycopg.connect(SERVER + "postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {args.database}")
    os.environ.update(DATABASE_URL=SERVER + args.database,
                      DJANGO_SETTINGS_MODULE="config.settings", LOG_LEVEL="ERROR",
                      SECRET_KEY="rules-bench")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from ingestion.models import InboxEvent, Source
    from opsview import models as state

    rng = random.Random(1)
    now = dt.datetime.now(dt.UTC)
    log(f"loading {clients} clients, {projects} projects, {people} people")
    state.Client.objects.bulk_create(
        [state.Client(client_id=f"C{i}", name=f"Client {i // 2 if i % 50 == 0 else i} Ltd",
                      tax_id=f"T{i}") for i in range(clients)], batch_size=5000)
    client_pks = dict(state.Client.objects.values_list("client_id", "pk"))
    state.Project.objects.bulk_create([state.Project(
        project_id=f"P{i}", client_id=client_pks[f"C{i % clients}"], name=f"Project {i}",
        practice=f"Practice {i % 5}", legal_entity="US", currency="USD",
        billing_method="time_and_materials", status="active",
        rate_card_id="" if i % 10 == 0 else "rc") for i in range(projects)], batch_size=5000)
    project_pks = dict(state.Project.objects.values_list("project_id", "pk"))
    state.Person.objects.bulk_create([state.Person(
        person_id=f"U{i}", name=f"Person {i}", practice=f"Practice {i % 5}", cost_rate=60,
        bill_rate=150) for i in range(people)], batch_size=2000)
    person_pks = list(state.Person.objects.values_list("pk", flat=True))
    log(f"loading {entries:,} time entries")
    approved = now - dt.timedelta(hours=30)
    for start in range(0, entries, 10_000):
        state.TimeEntry.objects.bulk_create([state.TimeEntry(
            time_entry_id=f"T{i}", project_id=project_pks[f"P{i % projects}"],
            person_id=person_pks[i % people], work_date=approved.date(), hours=8,
            billable=True, status="approved" if i % 4 == 0 else "posted", status_rank=2,
            approved_at=approved, posted_at=None if i % 4 == 0 else now)
            for i in range(start, min(start + 10_000, entries))], batch_size=10_000)
    log("loading milestones, invoices, sync attempts")
    state.Milestone.objects.bulk_create([state.Milestone(
        milestone_id=f"M{i}", project_id=project_pks[f"P{i % projects}"], name="Go-live",
        amount=5000, status="completed", status_rank=1,
        completed_on=(now - dt.timedelta(days=rng.choice([2, 20]))).date())
        for i in range(milestones)], batch_size=10000)
    state.Invoice.objects.bulk_create([state.Invoice(
        invoice_id=f"I{i}", client_id=client_pks[f"C{i % clients}"], amount=1000,
        currency="USD", status="blocked", status_rank=2, blocked_reason="missing_po")
        for i in range(invoices)])
    source = Source.objects.create(slug="bench", name="bench")
    for start in range(0, syncs, 10_000):
        rows = InboxEvent.objects.bulk_create([InboxEvent(
            source=source, event_id=f"s{i}", type="sync.succeeded", raw={}, time=now,
            status="processed") for i in range(start, min(start + 10_000, syncs))],
            batch_size=10_000)
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
    with psycopg.connect(SERVER + "postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


if __name__ == "__main__":
    main()
