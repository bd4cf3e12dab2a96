"""The triage list over many open cases: plain, grouped, sorted by money, filtered by
client name, with the saved views' live counts, timed.

Loads into PostgreSQL (database `opsview_bench_triage`, recreated) 20,000 open cases — a
third sync failures over 60 flow and error-code pairs, dead letters, the rest spread over
the other types, money in EUR, GBP and USD — 2,000 clients, and 10 saved views, then times
each page as a signed-in triager gets it (the median of --runs).

    python bench/triage_bench.py
    python bench/triage_bench.py --cases 500 --runs 1   # what CI runs
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from decimal import Decimal

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DB = "opsview_bench_triage"
SERVER = "postgresql://postgres@127.0.0.1:5432/"
PAGES = [("list, due first", "/exceptions/"),
         ("list, grouped", "/exceptions/?view=grouped"),
         ("list, money by currency", "/exceptions/?sort=money"),
         ("list, client by name", "/exceptions/?client=acme"),
         ("my work", "/exceptions/?work=integration&sort=mine"),
         ("saved views panel", "/exceptions/views/")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", default=DB, help="the database to create and drop")
    args = parser.parse_args()
    with psycopg.connect(SERVER + "postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {args.database}")
    os.environ.update(DATABASE_URL=SERVER + args.database,
                      DJANGO_SETTINGS_MODULE="config.settings", LOG_LEVEL="ERROR",
                      SECRET_KEY="triage-bench", ALLOWED_HOSTS="testserver",
                      SECURE_SSL_REDIRECT="0", SECURE_COOKIES="0")
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client as Browser
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from exceptions.models import Case, Queue, SavedView
    from opsview.models import Client

    rng = random.Random(1)
    now = timezone.now()
    clients = [Client(client_id=f"C{i}", name=f"{rng.choice(['Acme', 'Globex', 'Initech'])} "
                                              f"{i}") for i in range(2000)]
    Client.objects.bulk_create(clients, batch_size=2000)
    queues = {q.slug: q for q in Queue.objects.all()}
    others = ["invoice_blocked", "approved_time_unposted", "milestone_not_invoiced",
              "missing_billing_setup", "unknown_reference"]
    cases = []
    for i in range(args.cases):
        kind = "sync_failed" if i % 3 == 0 else "dead_letter" if i % 10 == 1 else rng.choice(
            others)
        detail, fingerprint, object_id = {}, f"F{i}", f"O{i}"
        if kind == "sync_failed":
            detail = {"flow": f"flow-{i % 20}", "error_code": f"E{i % 3}"}
        if kind == "dead_letter":
            object_id = f"source-{i % 4}"
            fingerprint = f"{object_id}|type-{i}|data.field{i % 5}"
        cases.append(Case(
            type=kind, fingerprint=fingerprint, title=f"Case {i} {kind}", object_kind="x",
            object_id=object_id, detail=detail, client_id=f"C{rng.randrange(2000)}",
            queue=queues["integration" if kind in ("sync_failed", "dead_letter")
                         else "finance-ops"],
            severity=rng.choice(["low", "medium", "high"]),
            money_at_stake=Decimal(rng.randrange(0, 200_000)), currency=rng.choice(
                ["EUR", "GBP", "USD"]), began_at=now, opened_at=now,
            resolution_due_at=now + timezone.timedelta(hours=rng.randrange(1, 200))))
    Case.objects.bulk_create(cases, batch_size=2000)
    user = User.objects.create_user("ines", password="x")
    user.groups.add(Group.objects.get(name="integration"))
    for i, query in enumerate(["owner=me", "severity=high", "type=sync_failed", "sort=money",
                               "client=acme", "queue=integration", "sla=breached",
                               "view=grouped", "type=dead_letter&view=grouped", "age=<4h"]):
        SavedView.objects.create(owner=user, name=f"View {i}", query=query, shared=i % 2 == 0)
    browser = Browser()
    browser.force_login(user)
    print(f"{args.cases:,} open cases, 10 saved views; median of {args.runs} run(s):")
    for label, url in PAGES:
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            response = browser.get(url)
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
        print(f"  {label:<26} {url:<44} {statistics.median(timings) * 1000:8.0f} ms")
    with psycopg.connect(SERVER + "postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {args.database} WITH (FORCE)")


if __name__ == "__main__":
    main()
